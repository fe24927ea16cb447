"""Which backends exist, what they run on, and which artifact each one loads.

Pure data: importing this module imports no runtime, so the workflow can plan cells anywhere.
Adding a backend = one module in this package + one entry in BACKENDS + its name in the schema.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from infbench.backends.base import Backend, Cell

# The artifact every precision of an ONNX-consuming backend reads (see workflow/rules/export.smk
# and quantize.smk for the rules that write them).
ONNX_VARIANT = {"fp32": "fp32", "tf32": "fp32", "fp16": "fp16", "int8": "int8_static", "int8_dynamic": "int8_dynamic"}


# The rule that writes each ONNX variant, named in "missing or corrupt artifact" messages.
ONNX_RULE = {
    "fp32": "export_onnx",
    "fp16": "convert_fp16",
    "int8_static": "quantize_int8",
    "int8_dynamic": "quantize_int8",
    "int8_trt": "quantize_int8",
}


@dataclass(frozen=True)
class Artifact:
    path: str  # relative to the study's folder (`infbench.grid.study_dir`)
    rule: str  # the rule that writes it


def checkpoint_artifact(cell: Cell) -> Artifact:
    return Artifact("checkpoint.pt", "train")


def onnx_artifact(cell: Cell) -> Artifact:
    variant = ONNX_VARIANT[cell.precision]
    return Artifact(f"onnx/{variant}.onnx", ONNX_RULE[variant])


def aoti_artifact(cell: Cell) -> Artifact:
    """An AOTInductor package per device, precision and shape (rule compile_aoti)."""
    return Artifact(f"aoti/{cell.device}/{cell.precision}/{cell.image_size}x{cell.batch_size}.pt2", "compile_aoti")


def torch_tensorrt_artifact(cell: Cell) -> Artifact:
    """A Torch-TensorRT ExportedProgram per precision and shape profile (rule compile_torch_tensorrt)."""
    return Artifact(f"torch_tensorrt/{cell.precision}/{cell.image_size}x{cell.batch_size}.ep", "compile_torch_tensorrt")


# What the TensorRT EP reads per precision: TensorRT 11 is strongly typed, so the precision is in the
# model (the fp16 ONNX; the symmetric int8 Q/DQ ONNX), never in a builder flag.
ONNX_TRT_VARIANT = {"fp32": "fp32", "fp16": "fp16", "int8": "int8_trt"}


def onnx_trt_artifact(cell: Cell) -> Artifact:
    variant = ONNX_TRT_VARIANT[cell.precision]
    return Artifact(f"onnx/{variant}.onnx", ONNX_RULE[variant])


@dataclass(frozen=True)
class BackendSpec:
    name: str
    module: str  # module under infbench.backends holding the class
    cls: str
    # device -> the precisions this backend supports there
    support: dict[str, tuple[str, ...]]
    # distributions whose installed versions invalidate this backend's cells
    packages: tuple[str, ...]
    artifact: Callable[[Cell], Artifact] = checkpoint_artifact  # what a cell of it loads

    def unsupported_reason(self, device: str, precision: str) -> str | None:
        if device not in self.support:
            return f"{self.name} does not run on {device} (runs on: {', '.join(self.support)})"
        if precision not in self.support[device]:
            allowed = ", ".join(self.support[device])
            return f"{self.name} on {device} has no {precision} (has: {allowed})"
        return None

    def load_class(self) -> type[Backend]:
        return getattr(importlib.import_module(f"infbench.backends.{self.module}"), self.cls)


BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in [
        BackendSpec(
            name="torch",
            module="torch_eager",
            cls="TorchEager",
            support={"cpu": ("fp32", "bf16"), "cuda": ("fp32", "tf32", "fp16", "bf16")},
            packages=("torch", "torchvision"),
        ),
        BackendSpec(
            name="torch_cudagraphs",
            module="torch_eager",
            cls="TorchCudaGraphs",
            support={"cuda": ("fp32", "tf32", "fp16", "bf16")},
            packages=("torch", "torchvision"),
        ),
        BackendSpec(
            name="onnxruntime",
            module="onnxruntime_ep",
            cls="OnnxRuntime",
            support={"cpu": ("fp32", "int8", "int8_dynamic"), "cuda": ("fp32", "tf32", "fp16")},
            packages=("onnxruntime", "onnxruntime-gpu"),
            artifact=onnx_artifact,
        ),
        BackendSpec(
            name="torchscript",
            module="torchscript",
            cls="TorchScript",
            support={"cpu": ("fp32", "bf16"), "cuda": ("fp32", "tf32", "fp16", "bf16")},
            packages=("torch", "torchvision"),
        ),
        BackendSpec(
            name="torch_compile",
            module="torch_compile",
            cls="TorchCompile",
            support={"cpu": ("fp32", "bf16"), "cuda": ("fp32", "tf32", "fp16", "bf16")},
            packages=("torch", "torchvision", "triton"),
        ),
        BackendSpec(
            name="torch_compile_max_autotune",
            module="torch_compile",
            cls="TorchCompileMaxAutotune",
            support={"cuda": ("fp32", "tf32", "fp16", "bf16")},
            packages=("torch", "torchvision", "triton"),
        ),
        BackendSpec(
            name="torch_compile_reduce_overhead",
            module="torch_compile",
            cls="TorchCompileReduceOverhead",
            # reduce-overhead is CUDA graphs: nothing to reduce on the CPU
            support={"cuda": ("fp32", "tf32", "fp16", "bf16")},
            packages=("torch", "torchvision", "triton"),
        ),
        BackendSpec(
            name="aotinductor",
            module="aotinductor",
            cls="AOTInductor",
            support={"cpu": ("fp32", "bf16"), "cuda": ("fp32", "fp16", "bf16")},
            packages=("torch", "torchvision", "triton"),
            artifact=aoti_artifact,
        ),
        BackendSpec(
            name="onnxruntime_trt",
            module="onnxruntime_ep",
            cls="OnnxRuntimeTensorRT",
            support={"cuda": ("fp32", "fp16", "int8")},
            packages=("onnxruntime-gpu", "tensorrt"),
            artifact=onnx_trt_artifact,
        ),
        BackendSpec(
            name="torch_tensorrt",
            module="torch_tensorrt_backend",
            cls="TorchTensorRT",
            support={"cuda": ("fp32", "fp16", "bf16", "int8")},
            packages=("torch", "torch-tensorrt", "tensorrt", "nvidia-modelopt"),
            artifact=torch_tensorrt_artifact,
        ),
    ]
}

ALL_PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "int8", "int8_dynamic")
ALL_DEVICES = ("cpu", "cuda")


def spec(name: str) -> BackendSpec:
    try:
        return BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown backend '{name}'; known: {', '.join(sorted(BACKENDS))}") from None
