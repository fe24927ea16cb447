"""The fingerprint every result carries: machine, software versions, threads."""

from __future__ import annotations

import os
import platform
import socket
from importlib import metadata

PACKAGES = ("torch", "torchvision", "onnx", "onnxruntime", "onnxruntime-gpu", "torch-tensorrt", "tensorrt",
            "numpy", "nvidia-ml-py")


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def fingerprint(threads: int, device: str) -> dict:
    env = {
        "hostname": socket.gethostname(),
        "machine": os.environ.get("INFBENCH_MACHINE") or socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "threads": threads,
        "versions": versions(),
        "gpu": None,
        "driver": None,
        "cuda": None,
    }
    if device == "cuda":
        try:
            import torch

            if torch.cuda.is_available():
                env["gpu"] = torch.cuda.get_device_name()
                env["cuda"] = torch.version.cuda
        except ImportError:
            pass
        try:
            import pynvml

            pynvml.nvmlInit()
            env["driver"] = pynvml.nvmlSystemGetDriverVersion()
        except Exception:  # no NVML here: the driver stays unknown
            pass
    return env
