"""The fingerprint every result carries: machine, software versions, threads."""

from __future__ import annotations

import os
import platform
import socket

from infbench.core import cpus
from infbench.core.packages import installed_version
from infbench.measure.nvml import Nvml

PACKAGES = (
    "torch",
    "torchvision",
    "onnx",
    "onnxruntime",
    "onnxruntime-gpu",
    "torch-tensorrt",
    "tensorrt",
    "openvino",
    "nncf",
    "timm",
    "triton",
    "numpy",
    "nvidia-ml-py",
)


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
    installed = {name: installed_version(name) for name in PACKAGES}
    return out | {name: v for name, v in installed.items() if v}


def fingerprint(threads: int, device: str) -> dict:
    env = {
        "hostname": socket.gethostname(),
        "machine": os.environ.get("INFBENCH_MACHINE") or socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        # what this job was given (its affinity and cgroup quota, issue 35) and the threads it ran
        "cpus_allowed": cpus.allowed_cpus(),
        "cpu_quota": cpus.cgroup_cpu_quota(),
        "threads": threads,
        # Other work on the machine disturbs CPU timings: the 1/5/15-minute load averages at the start.
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "versions": versions(),
        "gpu": None,
        "driver": None,
        "cuda": None,
    }
    if device == "cuda":
        env.update(gpu_fingerprint())
    return env


def gpu_fingerprint() -> dict:
    """GPU name, memory, driver and CUDA versions, read through NVML where it can be.

    NVML first: it creates no CUDA context in this (parent) process, which would hold device
    memory while the cell's own process measures. PyTorch names the GPU only where NVML cannot.
    """
    out = {"gpu": None, "gpu_memory_mib": None, "driver": None, "cuda_driver": None, "cuda": None, "cudnn": None}
    try:
        import torch

        out["cuda"] = torch.version.cuda  # the CUDA runtime PyTorch was built with
        if torch.backends.cudnn.is_available():
            out["cudnn"] = torch.backends.cudnn.version()
    except ImportError:
        torch = None

    session, _ = Nvml.open(use_torch=False)
    if session is not None:
        pynvml = session.pynvml
        try:
            out["gpu"] = session.name()
            total = session.total_bytes()
            out["gpu_memory_mib"] = None if total is None else total / 2**20
            driver = pynvml.nvmlSystemGetDriverVersion()
            out["driver"] = driver.decode() if isinstance(driver, bytes) else driver
            version = pynvml.nvmlSystemGetCudaDriverVersion()  # e.g. 12040 → "12.4"
            out["cuda_driver"] = f"{version // 1000}.{version % 1000 // 10}"
        except Exception:  # a field this driver does not report stays unknown
            pass
        finally:
            session.close()
    if out["gpu"] is None and torch is not None:
        try:
            if torch.cuda.is_available():
                out["gpu"] = torch.cuda.get_device_name()
        except Exception:
            pass
    return out
