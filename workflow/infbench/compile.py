"""Ahead-of-time artifact builders: AOTInductor packages and Torch-TensorRT programs.

One artifact per (device,) precision and shape, built once by its rule (workflow/rules/compile.smk)
and loaded by every benchmark job of that cell, so no job recompiles. Files are written atomically.

Where Torch-TensorRT cannot be imported (TensorRT is not installable everywhere), its builder writes
a small JSON stub naming the import error and what to install instead of failing the workflow: the
cell that loads it reports `unavailable` with that message, and the rule reruns once torch-tensorrt
is installed (its version is in the rule's params).
"""

from __future__ import annotations

import contextlib
import importlib
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from infbench import precisions
from infbench.arguments import paths
from infbench.backends.base import BackendUnavailable
from infbench.backends.torch_compile import use_result_caches
from infbench.io import atomic_path, write_json

UNAVAILABLE_KIND = "infbench-unavailable-artifact"


def _example(batch: int, size: int, device: str, dtype):
    import torch

    return torch.randn(batch, 3, size, size, device=device, dtype=dtype)


def build_aoti(
    checkpoint: Path,
    out: Path,
    device: str,
    precision: str,
    size: int,
    batch: int,
    max_autotune: bool = False,
    threads: int | None = None,
) -> dict:
    """torch.export the model at (batch, 3, size, size) and AOT-compile it into a .pt2 package."""
    import torch

    from infbench.backends.torch_eager import load_module

    use_result_caches()
    if threads:
        torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("compile_aoti for cuda needs a CUDA device (torch.cuda.is_available() is False)")
    precisions.allow_tf32(precision)
    dtype = precisions.torch_dtype(precision)
    model = load_module(checkpoint, device, dtype)
    example = (_example(batch, size, device, dtype),)
    started = time.time()
    with torch.inference_mode():
        program = torch.export.export(model, example)
    options = {"max_autotune": True} if max_autotune else {}
    with atomic_path(out, ".pt2") as tmp:
        torch._inductor.aoti_compile_and_package(program, package_path=str(tmp), inductor_configs=options)
        crash = aoti_fresh_load(tmp, device, str(dtype).removeprefix("torch."), batch, size)
    if crash:  # every cell would die the same way: say so once, as 'unavailable' with the reason
        return write_unavailable(out, "aotinductor", f"{crash}; {AOTI_CRASH_NOTE}")
    info = {
        "artifact": str(out),
        "device": device,
        "precision": precision,
        "shape": [batch, 3, size, size],
        "compile_s": round(time.time() - started, 2),
        "torch": torch.__version__,
    }
    print(json.dumps(info))
    return info


# Where torch's package loader crashes in a fresh process (seen on the H100 with torch 2.11 cu130).
AOTI_CRASH_NOTE = (
    "the package was built, but torch's AOTInductor loader (aoti_load_package) crashes in a fresh process on "
    "this machine; no upstream fix known (closest report: https://github.com/pytorch/pytorch/issues/141042); "
    "reproducer and other ways of loading: python benchmarks/aoti_load_check.py --device cuda"
)
_FRESH_LOAD = """
import sys, torch
path, device, batch, size, dtype = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
model = torch._inductor.aoti_load_package(path)
with torch.inference_mode():
    model(torch.randn(batch, 3, size, size, device=device, dtype=getattr(torch, dtype)))
if device == "cuda":
    torch.cuda.synchronize()
"""


def aoti_fresh_load(package: Path, device: str, dtype: str, batch: int, size: int, timeout_s: float = 600):
    """Load the package and run one batch in a fresh process, as a benchmark repetition does.

    None when it ran; the signal and faulthandler's innermost frame when a signal killed the process
    (the loader crashed). Any other failure raises: that is a broken package, not an unusable loader.
    """
    cmd = [sys.executable, "-X", "faulthandler", "-c", _FRESH_LOAD, str(package), device, str(batch), str(size), dtype]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    if proc.returncode < 0:
        current = next((i for i, line in enumerate(lines) if line.startswith("Current thread")), 0)
        frames = [line.strip() for line in lines[current:] if line.strip().startswith("File ")]
        where = f" at {frames[0]}" if frames else ""
        return f"loading it in a fresh process was killed by {signal.Signals(-proc.returncode).name}{where}"
    last = lines[-1] if lines else f"exit code {proc.returncode}"
    raise RuntimeError(f"the AOTInductor package does not load in a fresh process: {last}")


def write_unavailable(out: Path, backend: str, error: str) -> dict:
    stub = {"kind": UNAVAILABLE_KIND, "backend": backend, "error": error}
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(stub, indent=1))
    print(f"{backend} is unavailable here ({error}); wrote a stub to {out}")
    return stub


def read_unavailable(path: Path) -> dict | None:
    """The stub's content when `path` is an 'unavailable' stub, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        stub = json.loads(head)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return stub if isinstance(stub, dict) and stub.get("kind") == UNAVAILABLE_KIND else None


# Where Torch-TensorRT cannot be imported: what to install (its wheels pull TensorRT's libraries from
# NVIDIA's index; Torch-TensorRT 2.x follows the torch minor version).
TORCH_TENSORRT_INSTALL = "pip install torch-tensorrt==<this torch's major.minor>.* nvidia-modelopt huggingface_hub"


def torch_tensorrt_model(
    checkpoint: Path, precision: str, size: int, batch: int, device: str, dataset: Path | None, calib_images: int
):
    """The model Torch-TensorRT compiles, and its example input (the cell's fixed shape).

    Strongly typed (TensorRT 11, Torch-TensorRT ≥ 2.12): the precision is the model's own dtype, so
    fp16/bf16 cast the model and its input; int8 is the fp32 model with Model Optimizer's Q/DQ
    quantisers calibrated on the dataset's calibration split (infbench.tensorrt_int8)."""

    from infbench.backends.torch_eager import load_module

    dtype = precisions.torch_dtype(precision)
    model = load_module(checkpoint, device, dtype)
    if precision == "int8":
        from infbench.model import input_norm
        from infbench.quantize import calibration_images
        from infbench.tensorrt_int8 import quantize_module

        if dataset is None:
            raise ValueError("int8 needs --dataset (Model Optimizer calibrates on its calibration split)")
        quantize_module(
            model, calibration_images(Path(dataset), size, calib_images, input_norm(checkpoint)), batch, device, dtype
        )
    return model, _example(batch, size, device, dtype)


def torch_tensorrt_settings(compile_fn, precision: str, workspace_gb: float) -> dict:
    """Keyword settings of `torch_tensorrt.dynamo.compile` for one precision.

    No `enabled_precisions` (deprecated, ignored by the dynamo path since 2.13): the model's dtypes
    decide. `use_explicit_typing=True` only where this Torch-TensorRT still has the switch (2.5–2.12;
    from 2.13 strong typing is always on and the argument is gone). TF32 is off for every precision
    but tf32: fp32 means IEEE fp32, and int8's float layers then match the CPU simulation."""
    settings = {
        "workspace_size": int(workspace_gb * 2**30),
        "min_block_size": 1,  # the whole ResNet in TensorRT, no PyTorch islands
        "disable_tf32": precision != "tf32",
    }
    import inspect

    if "use_explicit_typing" in inspect.signature(compile_fn).parameters:
        settings["use_explicit_typing"] = True
    return settings


def build_torch_tensorrt(
    checkpoint: Path,
    out: Path,
    precision: str,
    size: int,
    batch: int,
    dataset: Path | None = None,
    calib_images: int = 128,
    workspace_gb: float = 4.0,
    info_out: Path | None = None,
) -> dict:
    """Compile with Torch-TensorRT's dynamo path for one fixed shape and save the ExportedProgram;
    `info_out` (default: `out` as .json) records the build (seconds, settings, versions) or why it
    could not run.

    int8 follows Torch-TensorRT's "Quantization (INT8 / FP8 / FP4)" guide: Model Optimizer quantises
    and calibrates, `torch.export` runs under `export_torch_mode()` so the quantisers become
    `tensorrt::quantize_op` nodes, and `torch_tensorrt.dynamo.compile` turns those into TensorRT
    Q/DQ layers."""
    info_out = Path(info_out) if info_out else Path(out).with_suffix(".json")
    shape = {"precision": precision, "shape": [batch, 3, size, size]}
    try:
        torch_tensorrt = _torch_tensorrt_on_cuda()
    except BackendUnavailable as exc:  # a stub the cell reads as 'unavailable'; rebuilt once installed
        stub = write_unavailable(out, "torch_tensorrt", str(exc))
        write_json(info_out, {**stub, **shape})
        return stub
    model, example = torch_tensorrt_model(checkpoint, precision, size, batch, "cuda", dataset, calib_images)
    settings = torch_tensorrt_settings(torch_tensorrt.dynamo.compile, precision, workspace_gb)
    started = time.time()
    compiled = _compile_program(torch_tensorrt, model, example, precision, settings)
    build_s = time.time() - started
    with atomic_path(out, ".ep") as tmp:
        torch_tensorrt.save(compiled, str(tmp), output_format="exported_program", arg_inputs=[example])
    info = {
        "artifact": str(out),
        **shape,
        "compile_s": round(build_s, 2),
        "settings": settings,
        "calibration_images": calib_images if precision == "int8" else None,
        "versions": _trt_versions(),
    }
    write_json(info_out, info)
    print(json.dumps(info))
    return info


def _torch_tensorrt_on_cuda():
    """The torch_tensorrt module where it imports and a GPU is visible, else BackendUnavailable saying why."""
    from infbench.backends.torch_tensorrt_backend import import_torch_tensorrt

    torch_tensorrt = import_torch_tensorrt()
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("no CUDA device visible (torch.cuda.is_available() is False)")
    return torch_tensorrt


def _compile_program(torch_tensorrt, model, example, precision: str, settings: dict):
    """`model` exported at `example`'s shape and compiled by Torch-TensorRT's dynamo path."""
    import torch

    with torch.no_grad(), _export_mode(precision):
        program = torch.export.export(model, (example,), strict=False)
        return torch_tensorrt.dynamo.compile(program, arg_inputs=[example], **settings)


def _export_mode(precision: str):
    """Model Optimizer's export mode for int8 (its quantisers trace as tensorrt::quantize_op), else nothing."""
    if precision != "int8":
        return contextlib.nullcontext()
    from modelopt.torch.quantization.utils import export_torch_mode

    return export_torch_mode()


def _trt_versions() -> dict:
    """Versions of what a Torch-TensorRT build used (those installed)."""
    versions = {}
    for name in ("torch", "torch_tensorrt", "tensorrt", "modelopt"):
        try:
            versions[name] = importlib.import_module(name).__version__
        except Exception:  # not installed: nothing to record
            pass
    return versions


def add_parser(sub) -> None:
    """`infbench compile-aoti` and `infbench compile-torch-tensorrt` (each holds a GPU on CUDA)."""
    s = sub.add_parser("compile-aoti", help="checkpoint → AOTInductor package (.pt2) for one device/precision/shape")
    paths(s, "--checkpoint", "--out")
    s.add_argument("--device", required=True, choices=["cpu", "cuda"])
    s.add_argument("--precision", required=True, choices=["fp32", "tf32", "fp16", "bf16"])
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--max-autotune", action="store_true", help="Inductor max_autotune while compiling")
    s.add_argument("--threads", type=int, default=0, help="intra-op threads while exporting; 0 = default")
    s.set_defaults(func=_aoti_command, gpu_stage=True)

    help = "checkpoint → Torch-TensorRT ExportedProgram (.ep) for one precision/shape"
    s = sub.add_parser("compile-torch-tensorrt", help=help)
    paths(s, "--checkpoint", "--out")
    s.add_argument("--info", type=Path, default=None, help="build record (time, settings); default: --out as .json")
    s.add_argument("--precision", required=True, choices=["fp32", "fp16", "bf16", "int8"])
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--dataset", type=Path, default=None, help="calibration images for int8")
    s.add_argument("--calib-images", type=int, default=128)
    s.add_argument("--workspace-gb", type=float, default=4.0)
    s.set_defaults(func=_torch_tensorrt_command, gpu_stage=True)


def _aoti_command(a) -> None:
    build_aoti(a.checkpoint, a.out, a.device, a.precision, a.size, a.batch, a.max_autotune, a.threads)


def _torch_tensorrt_command(a) -> None:
    build_torch_tensorrt(
        a.checkpoint, a.out, a.precision, a.size, a.batch, a.dataset, a.calib_images, a.workspace_gb, a.info
    )
