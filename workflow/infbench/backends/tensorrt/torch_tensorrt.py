"""Torch-TensorRT (dynamo path): a TensorRT-compiled ExportedProgram per precision and shape.

The rule `compile_torch_tensorrt` (`infbench compile-torch-tensorrt`, built below) exports
the model at the cell's fixed shape, compiles it with `torch_tensorrt.dynamo.compile` (strongly
typed: fp16/bf16 are the model's own dtype, int8 is Model Optimizer's Q/DQ, TF32 off) and saves it
with `torch_tensorrt.save`; a cell loads it with `torch.export.load(...).module()` (importing
torch_tensorrt registers the TensorRT runtime ops the program calls), so no engine is built in a
cell. Where Torch-TensorRT cannot be imported, the artifact is a small JSON stub and the cell
reports `unavailable` with the import error and what to install.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import time
from pathlib import Path

from infbench.backends.aotinductor import example_input
from infbench.backends.base import BackendUnavailable, import_or_unavailable
from infbench.backends.tensorrt.modelopt import quantize_module
from infbench.backends.torch_eager import TorchEager, check_torch_device, load_module
from infbench.backends.unavailable import read_unavailable, write_unavailable
from infbench.core import precisions
from infbench.core.arguments import paths, schema_default
from infbench.core.io import atomic_path, check_artifact, write_json
from infbench.stages.model import input_norm
from infbench.stages.quantize import calibration_images


def import_torch_tensorrt():
    """The torch_tensorrt module, or BackendUnavailable naming the import error and what to install."""
    return import_or_unavailable("torch_tensorrt", TORCH_TENSORRT_INSTALL)


class TorchTensorRT(TorchEager):
    def check_available(self) -> None:
        if self.cell.device != "cuda":
            raise BackendUnavailable("Torch-TensorRT runs on CUDA only")
        check_torch_device("cuda")
        import_torch_tensorrt()

    def read_artifact(self) -> None:
        """Nothing ahead: the program is the artifact (no checkpoint), loaded with its TensorRT engines."""

    def load(self) -> None:
        check_artifact(self.artifact, self.artifact_rule)
        self.setup()  # TF32 off for every precision; int8 programs take fp32 inputs
        import_torch_tensorrt()
        stub = read_unavailable(self.artifact)
        if stub:  # built where Torch-TensorRT was missing: rebuild it with the rule once it is installed
            raise BackendUnavailable(f"the artifact {self.artifact} was built without Torch-TensorRT ({stub['error']})")
        try:
            self.model = self.torch.export.load(str(self.artifact)).module()
        except Exception as exc:
            raise ValueError(
                f"cannot load the Torch-TensorRT program {self.artifact} ({exc}); delete it and rerun the rule "
                f"'{self.artifact_rule}'"
            ) from exc


# Where Torch-TensorRT cannot be imported: what to install (its wheels pull TensorRT's libraries from
# NVIDIA's index; Torch-TensorRT 2.x follows the torch minor version).
TORCH_TENSORRT_INSTALL = "pip install torch-tensorrt==<this torch's major.minor>.* nvidia-modelopt huggingface_hub"


def torch_tensorrt_model(
    checkpoint: Path, precision: str, size: int, batch: int, device: str, dataset: Path | None, calib_images: int
):
    """The model Torch-TensorRT compiles, and its example input (the cell's fixed shape).

    Strongly typed (TensorRT 11, Torch-TensorRT ≥ 2.12): the precision is the model's own dtype, so
    fp16/bf16 cast the model and its input; int8 is the fp32 model with Model Optimizer's Q/DQ
    quantisers calibrated on the dataset's calibration split (infbench.stages.expected_accuracy)."""

    dtype = precisions.torch_dtype(precision)
    model = load_module(checkpoint, device, dtype)
    if precision == "int8":
        if dataset is None:
            raise ValueError("int8 needs --dataset (Model Optimizer calibrates on its calibration split)")
        quantize_module(
            model, calibration_images(Path(dataset), size, calib_images, input_norm(checkpoint)), batch, device, dtype
        )
    return model, example_input(batch, size, device, dtype)


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


def _torch_tensorrt_command(a) -> None:
    build_torch_tensorrt(
        a.checkpoint, a.out, a.precision, a.size, a.batch, a.dataset, a.calib_images, a.workspace_gb, a.info
    )


def add_parser(sub) -> None:
    """`infbench compile-torch-tensorrt` (holds a GPU)."""
    help = "checkpoint → Torch-TensorRT ExportedProgram (.ep) for one precision/shape"
    s = sub.add_parser("compile-torch-tensorrt", help=help)
    paths(s, "--checkpoint", "--out")
    s.add_argument("--info", type=Path, default=None, help="build record (time, settings); default: --out as .json")
    s.add_argument("--precision", required=True, choices=["fp32", "fp16", "bf16", "int8"])
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--dataset", type=Path, default=None, help="calibration images for int8")
    s.add_argument("--calib-images", type=int, default=schema_default("compile.trt_calib_images"))
    s.add_argument("--workspace-gb", type=float, default=schema_default("compile.trt_workspace_gb", float))
    s.set_defaults(func=_torch_tensorrt_command, gpu_stage=True)
