"""`grid.devices: auto`: the devices this machine has, and the grid's GPU backends that are installed.

The CPU is always there; CUDA counts when PyTorch sees a GPU (CUDA_VISIBLE_DEVICES is respected). With
`auto`, a backend whose GPU packages are not installed is dropped from the CUDA cells at grid expansion,
with the command that installs it as the reason, so the report says what was left out and how to get it.
An explicit device list keeps every cell: a device or backend that is missing gives 'unavailable' cells.
"""

from __future__ import annotations

import ctypes.util
from functools import cache
from pathlib import Path

from infbench.backends.registry import BACKENDS
from infbench.core.packages import installed_version

AUTO = "auto"

# What a backend needs on CUDA beyond a CUDA build of PyTorch: any one of the distributions of each group,
# and the command that installs them (pyproject extras).
GPU_NEEDS: dict[str, tuple[tuple[tuple[str, ...], ...], str]] = {
    "onnxruntime": ((("onnxruntime-gpu",),), "pip uninstall -y onnxruntime && pip install -e '.[gpu]'"),
    "onnxruntime_trt": (
        (("onnxruntime-gpu",), ("tensorrt", "tensorrt-cu12", "tensorrt-cu13")),
        "pip uninstall -y onnxruntime && pip install -e '.[ort-tensorrt]'",  # TensorRT 10, not torch-tensorrt's
    ),
    "torch_tensorrt": ((("torch-tensorrt", "torch_tensorrt"),), "pip install -e '.[tensorrt]'"),
    "torch_compile": ((("triton",),), "pip install triton"),
    "torch_compile_max_autotune": ((("triton",),), "pip install triton"),
    "torch_compile_reduce_overhead": ((("triton",),), "pip install triton"),
    "aotinductor": ((("triton",),), "pip install triton"),
}


@cache
def cuda_visible() -> bool:
    """Whether PyTorch sees a CUDA GPU (no CUDA context is created). Without an NVIDIA driver (no kernel
    module, no libcuda) it cannot, and the workflow asks as it is parsed: importing torch to hear "no"
    would cost seconds of every `snakemake` call."""
    if not Path("/proc/driver/nvidia").exists() and ctypes.util.find_library("cuda") is None:
        return False
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def found() -> list[str]:
    return ["cpu", "cuda"] if cuda_visible() else ["cpu"]


def resolve(devices) -> list[str]:
    """The grid's device list: `auto` → the devices found here; a list stays as it is."""
    return found() if devices == AUTO else list(devices)


def missing_on_cuda(backend: str) -> str | None:
    """Why `backend` cannot run on CUDA here for want of a package, with the install command; None when it can."""
    needs = GPU_NEEDS.get(backend)
    if needs is None:
        return None
    groups, command = needs
    absent = [group[0] for group in groups if not any(installed_version(name) for name in group)]
    if not absent:
        return None
    return f"{backend} on cuda needs {' and '.join(absent)}, not installed (install: {command})"


def unmeasurable_on_cuda(backends) -> list[str]:
    """The precisions the grid asks of no backend on CUDA that no backend installed here could run there
    (INT8 on a GPU needs TensorRT): said in the report, with why, rather than left as a silent gap.
    A precision some installed backend runs on CUDA is a choice of the grid, not a gap."""
    asked = {p for b, precisions in backends.items() for p in precisions if p in BACKENDS[b].support.get("cuda", ())}
    capable: dict[str, list[str]] = {}
    for name, spec in BACKENDS.items():
        for precision in spec.support.get("cuda", ()):
            capable.setdefault(precision, []).append(name)
    gaps = []
    for precision, names in capable.items():
        reasons = [missing_on_cuda(name) for name in names]
        if precision not in asked and all(reasons):
            gaps.append(f"{precision} on cuda, which only {' and '.join(names)} run: " + "; ".join(reasons))
    return gaps


def summary(requested, backends) -> dict:
    """What the report says about devices: what was asked, what was found, which GPU backends are missing,
    and which precisions no installed backend could measure on the GPU."""
    meta = {"requested": requested if requested == AUTO else list(requested), "found": found()}
    if requested == AUTO and cuda_visible():
        meta["not_installed"] = [r for r in (missing_on_cuda(b) for b in backends) if r]
    if "cuda" in resolve(requested):
        gaps = unmeasurable_on_cuda(backends)
        if gaps:
            meta["unmeasurable"] = gaps
    return meta


def note(meta: dict) -> str:
    """One sentence for the report's header."""
    found_here = ", ".join(meta.get("found") or []) or "none"
    text = f"found here: {found_here}"
    if meta.get("requested") == AUTO:
        text = f"auto ({text}; CUDA counts when PyTorch sees a GPU)"
    else:
        text = f"{', '.join(meta.get('requested') or [])} as configured ({text})"
    missing = meta.get("not_installed") or []
    if missing:
        text += "; not installed: " + "; ".join(missing)
    gaps = meta.get("unmeasurable") or []
    if gaps:
        text += "; not measured, no backend here can: " + "; ".join(gaps)
    return text
