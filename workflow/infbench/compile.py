"""Ahead-of-time artifact builders: AOTInductor packages and Torch-TensorRT programs.

One artifact per (device,) precision and shape, built once by its rule (workflow/rules/compile.smk)
and loaded by every benchmark job of that cell, so no job recompiles. Files are written atomically.

Where Torch-TensorRT cannot be imported (TensorRT is not installable everywhere), its builder writes
a small JSON stub naming the import error instead of failing the workflow: the cell that loads it
reports `unavailable` with that error, and the rule reruns once torch-tensorrt is installed (its
version is in the rule's params).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from infbench import integrity
from infbench.backends.torch_compile import use_result_caches

DTYPES = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "float32"}
UNAVAILABLE_KIND = "infbench-unavailable-artifact"


def _tmp_for(out: Path, suffix: str) -> Path:
    return out.with_name(f".{out.stem}.{os.getpid()}.tmp{suffix}")


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
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
    dtype = getattr(torch, DTYPES[precision])
    model = load_module(checkpoint, device, dtype)
    example = (_example(batch, size, device, dtype),)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(out, ".pt2")
    started = time.time()
    with torch.inference_mode():
        program = torch.export.export(model, example)
    options = {"max_autotune": True} if max_autotune else {}
    try:
        path = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp), inductor_configs=options)
        os.replace(path, out)
        integrity.record(out)
    finally:
        if tmp.exists():
            tmp.unlink()
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


def torch_tensorrt_import_error() -> str | None:
    """None when torch_tensorrt imports, else the error (type and message)."""
    try:
        import torch_tensorrt  # noqa: F401
    except Exception as exc:  # ImportError, or OSError from a missing libnvinfer
        return f"{type(exc).__name__}: {exc}"
    return None


def write_unavailable(out: Path, backend: str, error: str) -> dict:
    stub = {"kind": UNAVAILABLE_KIND, "backend": backend, "error": error}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(out, ".json")
    tmp.write_text(json.dumps(stub, indent=1))
    os.replace(tmp, out)
    integrity.record(out)
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


def _calibration_batches(dataset: Path, size: int, batch: int, images: int):
    from infbench import data

    calib_x, _ = data.load_split(Path(dataset), "calibration")
    calib_x = calib_x[:images]
    for i in range(0, len(calib_x), batch):
        yield data.to_input(calib_x[i : i + batch], size)


def build_torch_tensorrt(
    checkpoint: Path,
    out: Path,
    precision: str,
    size: int,
    batch: int,
    dataset: Path | None = None,
    calib_images: int = 128,
    workspace_gb: float = 4.0,
) -> dict:
    """Compile with Torch-TensorRT's dynamo path for one static shape and save the ExportedProgram.

    fp32/fp16: the model in that dtype, `use_explicit_typing`-style (weights and input carry the
    precision). int8: post-training quantization with NVIDIA Model Optimizer
    (`mtq.quantize(..., INT8_DEFAULT_CFG)`, calibrated on the dataset's calibration split), exported
    under `export_torch_mode()` and compiled with `enabled_precisions={torch.int8}`.
    """
    error = torch_tensorrt_import_error()
    if error:
        return write_unavailable(out, "torch_tensorrt", error)

    import torch
    import torch_tensorrt

    from infbench.backends.torch_eager import load_module

    if not torch.cuda.is_available():
        return write_unavailable(out, "torch_tensorrt", "no CUDA device visible (torch.cuda.is_available() is False)")
    dtype = torch.float16 if precision == "fp16" else torch.float32
    model = load_module(checkpoint, "cuda", dtype)
    example = _example(batch, size, "cuda", dtype)
    settings = {"workspace_size": int(workspace_gb * 2**30), "min_block_size": 1}
    started = time.time()
    if precision == "int8":
        import modelopt.torch.quantization as mtq
        from modelopt.torch.quantization.utils import export_torch_mode

        if dataset is None:
            raise ValueError("int8 needs --dataset for calibration images")

        def forward_loop(m):
            for chunk in _calibration_batches(dataset, size, batch, calib_images):
                m(torch.from_numpy(chunk).cuda())

        mtq.quantize(model, mtq.INT8_DEFAULT_CFG, forward_loop=forward_loop)
        with torch.no_grad(), export_torch_mode():
            program = torch.export.export(model, (example,))
            compiled = torch_tensorrt.dynamo.compile(
                program, inputs=[example], enabled_precisions={torch.int8}, **settings
            )
    else:
        enabled = {torch.float16} if precision == "fp16" else {torch.float32}
        with torch.no_grad():
            compiled = torch_tensorrt.compile(
                model, ir="dynamo", inputs=[example], enabled_precisions=enabled, **settings
            )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_for(out, ".ep")
    try:
        torch_tensorrt.save(compiled, str(tmp), output_format="exported_program", inputs=[example])
        os.replace(tmp, out)
        integrity.record(out)
    finally:
        if tmp.exists():
            tmp.unlink()
    info = {
        "artifact": str(out),
        "precision": precision,
        "shape": [batch, 3, size, size],
        "compile_s": round(time.time() - started, 2),
        "torch_tensorrt": torch_tensorrt.__version__,
    }
    print(json.dumps(info))
    return info
