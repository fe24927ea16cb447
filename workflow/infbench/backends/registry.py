"""Which backends exist, what they run on, and which artifact each one loads.

Pure data: importing this module imports no runtime, so the workflow can plan cells anywhere.
Adding a backend = one module in this package + one entry in BACKENDS (with the options it reads:
the config schema's backend_options section, the `--option` parsing and the rules' arguments come
from them) + its name in the schema's grid.backends.
"""

from __future__ import annotations

import importlib
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from infbench.core import precisions
from infbench.core.cell import Cell

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


# Where each artifact lies in the study's folder: the rules' output patterns (wildcards named as the rules
# name them), filled in with a cell's own values by the functions below.
CHECKPOINT_PATH = "checkpoint.pt"
ONNX_PATH = "onnx/{variant}.onnx"
AOTI_PATH = "aoti/{device}/{precision}/{size}x{batch}.pt2"
TORCH_TENSORRT_PATH = "torch_tensorrt/{precision}/{size}x{batch}.ep"
OPENVINO_NNCF_STEM = "openvino/{nncf}"  # .xml (the graph), .bin (the weights), .json (how it was made)
PT2E_PATH = "pt2e/int8.pt2"  # PyTorch's x86 INT8 program (torchao's PT2E), with a .json beside it


def _shape(cell: Cell) -> dict:
    return {"device": cell.device, "precision": cell.precision, "size": cell.image_size, "batch": cell.batch_size}


@dataclass(frozen=True)
class Artifact:
    path: str  # relative to the study's folder (`infbench.study.grid.study_dir`)
    rule: str  # the rule that writes it


def checkpoint_artifact(cell: Cell) -> Artifact:
    return Artifact(CHECKPOINT_PATH, "train")


def onnx_artifact(cell: Cell) -> Artifact:
    variant = ONNX_VARIANT[cell.precision]
    return Artifact(ONNX_PATH.format(variant=variant), ONNX_RULE[variant])


def aoti_artifact(cell: Cell) -> Artifact:
    """An AOTInductor package per device, precision and shape (rule compile_aoti)."""
    return Artifact(AOTI_PATH.format(**_shape(cell)), "compile_aoti")


def torch_tensorrt_artifact(cell: Cell) -> Artifact:
    """A Torch-TensorRT ExportedProgram per precision and shape profile (rule compile_torch_tensorrt)."""
    return Artifact(TORCH_TENSORRT_PATH.format(**_shape(cell)), "compile_torch_tensorrt")


# What the TensorRT EP reads per precision: TensorRT 11 is strongly typed, so the precision is in the
# model (the fp16 ONNX; the symmetric int8 Q/DQ ONNX), never in a builder flag.
ONNX_TRT_VARIANT = {"fp32": "fp32", "fp16": "fp16", "int8": "int8_trt"}


def onnx_trt_artifact(cell: Cell) -> Artifact:
    variant = ONNX_TRT_VARIANT[cell.precision]
    return Artifact(ONNX_PATH.format(variant=variant), ONNX_RULE[variant])


# What the openvino backend reads per precision: the ONNX files ONNX Runtime reads, and NNCF's models
# (OpenVINO IR: the .xml names the graph, the .bin beside it holds the weights; rule quantize_nncf).
OPENVINO_NNCF = ("int8_nncf", "int8_nncf_ac")


def openvino_artifact(cell: Cell) -> Artifact:
    if cell.precision in OPENVINO_NNCF:
        return Artifact(OPENVINO_NNCF_STEM.format(nncf=cell.precision) + ".xml", "quantize_nncf")
    if cell.precision == "bf16":  # an inference precision of the fp32 model
        return onnx_artifact(Cell(**{**vars(cell), "precision": "fp32"}))
    return onnx_artifact(cell)


def pt2e_artifact(cell: Cell) -> Artifact:
    """The PT2E INT8 program, one per model (dynamic batch; rule quantize_pt2e); each cell compiles its shape."""
    return Artifact(PT2E_PATH, "quantize_pt2e")


@dataclass(frozen=True)
class Option:
    """A setting of a backend, from config `backend_options.<backend>.<name>` (`--option name=value`)."""

    name: str
    type: type  # bool, int, float or str
    default: object
    meaning: str  # one line, shown in the config's error messages
    # keyword-only, so that neither can be taken for the other
    choices: tuple = field(default=(), kw_only=True)  # the values allowed, where only some are
    # the devices it acts on (None: every device of its backend); elsewhere it is neither passed nor hashed
    devices: tuple[str, ...] | None = field(default=None, kw_only=True)

    def applies_to(self, device: str | None) -> bool:
        return device is None or self.devices is None or device in self.devices

    def value(self, raw):
        """`raw` as this option's type (see `typed`), one of `choices` where the option has them."""
        value = self.typed(raw)
        if self.choices and value not in self.choices:
            raise ValueError(f"option {self.name}={raw!r}: expected one of {', '.join(map(str, self.choices))}")
        return value

    def typed(self, raw):
        """`raw` (a config value, or the text of `--option name=text`) as this option's type; an
        option whose default is None (the backend's own choice) also takes None."""
        if raw is None and self.default is None:
            return None
        if isinstance(raw, str) and self.type is not str:
            text = raw.strip().lower()
            if self.type is bool and text in ("true", "false"):
                return text == "true"
            if self.type is not bool:
                try:
                    return self.type(text)
                except ValueError:
                    pass
            raise ValueError(f"option {self.name}={raw!r}: expected {self.type.__name__} ({self.meaning})")
        if self.type is float and isinstance(raw, int) and not isinstance(raw, bool):
            return float(raw)
        if type(raw) is not self.type:
            raise ValueError(f"option {self.name}={raw!r}: expected {self.type.__name__} ({self.meaning})")
        return raw

    def text(self, value) -> str:
        """How `value` is written on the command line (`--option name=text`)."""
        return str(value).lower() if isinstance(value, bool) else str(value)


CHANNELS_LAST = Option("channels_last", bool, False, "NHWC (channels-last) memory format for weights and inputs")
CUDA = ("cuda",)  # an option of the GPU alone
# torch.compile's settings that matter at the peak (issue 14)
COMPILE_OPTIONS = (
    CHANNELS_LAST,
    Option("freezing", bool, False, "Inductor freezing: weights become constants folded into the compiled graph"),
    Option(
        "cudagraphs", bool, None, "CUDA graphs inside the compiled module; null: the mode's own choice", devices=CUDA
    ),
)
# ONNX Runtime's: the CUDA execution provider's (the CPU provider has none of them) and the session's
ORT_OPTIONS = (
    Option(
        "enable_cuda_graph",
        bool,
        False,
        "the CUDA EP captures the session in a CUDA graph and replays it",
        devices=CUDA,
    ),
    Option("prefer_nhwc", bool, False, "NHWC convolutions in the CUDA EP", devices=CUDA),
    Option(
        "cudnn_conv_use_max_workspace", bool, True, "cuDNN may use its largest workspace (ORT's default)", devices=CUDA
    ),
    Option("fixed_shape", bool, False, "the session's free dimensions pinned to the cell's batch and size"),
)
# OpenVINO's CPU plugin; the defaults measure it like every other backend: one stream, the cell's threads
OPENVINO_OPTIONS = (
    Option("hint", str, "latency", "performance hint (latency or throughput)", choices=("latency", "throughput")),
    Option("streams", int, 1, "inference streams (requests run at once); 0: the hint's own choice"),
    Option("inference_threads", int, 0, "inference threads; 0: the cell's threads (bench.cpu_threads)"),
    Option("pinning", bool, None, "pin inference threads to cores; null: OpenVINO's own choice"),
)
# JSON schema type of each option type (the config schema's backend_options section is built from these)
JSON_TYPE = {bool: "boolean", int: "integer", float: "number", str: "string"}


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
    options: tuple[Option, ...] = ()  # the settings it reads; any other is an error
    # precision -> distributions only that precision's cells import (NNCF for OpenVINO's NNCF models): another
    # precision's cells neither record nor rerun for them
    precision_packages: dict[str, tuple[str, ...]] = field(default_factory=dict)

    def packages_for(self, precision: str) -> tuple[str, ...]:
        """The distributions a cell of `precision` imports: whose installed versions invalidate it."""
        return (*self.packages, *self.precision_packages.get(precision, ()))

    def unsupported_reason(self, device: str, precision: str) -> str | None:
        if device not in self.support:
            return f"{self.name} does not run on {device} (runs on: {', '.join(self.support)})"
        if precision not in self.support[device]:
            allowed = ", ".join(self.support[device])
            return f"{self.name} on {device} has no {precision} (has: {allowed})"
        return self.load_class().unsupported_here(device, precision)  # what this machine lacks (bf16 instructions)

    def load_class(self) -> type:  # a subclass of backends.base.Backend
        return getattr(importlib.import_module(f"infbench.backends.{self.module}"), self.cls)

    def instance(self, cell: Cell, artifact, threads: int, options: dict | None = None):
        """This backend for `cell`, on `artifact` (the error messages name the rule that rebuilds it)."""
        return self.load_class()(cell, Path(artifact), threads, self.artifact(cell).rule, options)

    def option_values(self, given: dict, device: str | None = None) -> dict:
        """Every option of this backend, typed: `given` (config values or command-line text) over the defaults;
        on `device`, an option of other devices keeps its default. An option the backend does not declare is a
        ValueError naming it and the ones it has."""
        declared = {o.name: o for o in self.options}
        unknown = sorted(set(given) - set(declared))
        if unknown:
            has = ", ".join(declared) or "none"
            raise ValueError(f"backend {self.name} has no option {', '.join(unknown)} (its options: {has})")
        values = {name: o.value(given[name]) if name in given else o.default for name, o in declared.items()}
        return {name: v if declared[name].applies_to(device) else declared[name].default for name, v in values.items()}

    def effective_options(self, given: dict, device: str) -> dict:
        """The options that act on `device`, with the values a cell there runs (`given` over the defaults): what
        its result records and its rules hash, so that a changed default reruns the cells it acts on."""
        values = self.option_values(given, device)
        return {name: value for name, value in values.items() if self.option(name).applies_to(device)}

    def parse_options(self, pairs: list[str], device: str | None = None) -> dict:
        """`--option KEY=VALUE` arguments → every option, typed (see `option_values`)."""
        bad = [p for p in pairs if "=" not in p]
        if bad:
            raise ValueError(f"--option {bad[0]}: expected KEY=VALUE")
        return self.option_values(dict(p.split("=", 1) for p in pairs), device)

    def option_args(self, given: dict, device: str | None = None) -> str:
        """The `--option KEY=VALUE` arguments of a rule for config `given` on `device`: only values that differ
        from the defaults and act there, so that a default, or another device's option, reruns nothing."""
        values = self.option_values(given, device)
        pairs = (f"{name}={self.option(name).text(values[name])}" for name in self.changed(values))
        return " ".join(f"--option {shlex.quote(pair)}" for pair in pairs)

    def option(self, name: str) -> Option:
        return next(o for o in self.options if o.name == name)

    def changed(self, values: dict) -> list[str]:
        """The names of the options whose value in `values` (typed, see `option_values`) is not the default."""
        return [o.name for o in self.options if values.get(o.name, o.default) != o.default]

    def options_schema(self) -> dict:
        """The JSON schema of config `backend_options.<name>`."""
        properties = {
            o.name: {
                "description": o.meaning,
                "type": JSON_TYPE[o.type] if o.default is not None else [JSON_TYPE[o.type], "null"],
                "default": o.default,
                **({"enum": list(o.choices)} if o.choices else {}),
            }
            for o in self.options
        }
        about = f"Settings of {self.name}." if self.options else f"{self.name} has no settings."
        return {"description": about, "type": "object", "additionalProperties": False, "properties": properties}


TORCH = ("torch", "torchvision")
INDUCTOR = (*TORCH, "triton")
CPU_FLOAT = ("fp32", "bf16")
CUDA_FLOAT = ("fp32", "tf32", "fp16", "bf16")


def _torch(name: str, module: str, cls: str, support: dict, packages=TORCH, options=(CHANNELS_LAST,), **more):
    """A PyTorch-based backend: by default it runs the checkpoint's model and reads channels_last."""
    return BackendSpec(name, module, cls, support, packages, options=options, **more)


BACKENDS: dict[str, BackendSpec] = {
    spec.name: spec
    for spec in [
        _torch("torch", "torch_eager", "TorchEager", {"cpu": CPU_FLOAT, "cuda": CUDA_FLOAT}),
        _torch("torch_cudagraphs", "torch_eager", "TorchCudaGraphs", {"cuda": CUDA_FLOAT}),
        BackendSpec(
            name="onnxruntime",
            module="onnxruntime",
            cls="OnnxRuntime",
            support={"cpu": ("fp32", "int8", "int8_dynamic"), "cuda": ("fp32", "tf32", "fp16")},
            packages=("onnxruntime", "onnxruntime-gpu"),
            artifact=onnx_artifact,
            options=ORT_OPTIONS,
        ),
        _torch("torchscript", "torchscript", "TorchScript", {"cpu": CPU_FLOAT, "cuda": CUDA_FLOAT}),
        _torch(
            "torch_compile",
            "torch_compile",
            "TorchCompile",
            {"cpu": CPU_FLOAT, "cuda": CUDA_FLOAT},
            INDUCTOR,
            options=COMPILE_OPTIONS,
        ),
        _torch(
            "torch_compile_max_autotune",
            "torch_compile",
            "TorchCompileMaxAutotune",
            {"cuda": CUDA_FLOAT},
            INDUCTOR,
            options=COMPILE_OPTIONS,
        ),
        # reduce-overhead is CUDA graphs: nothing to reduce on the CPU
        _torch(
            "torch_compile_reduce_overhead",
            "torch_compile",
            "TorchCompileReduceOverhead",
            {"cuda": CUDA_FLOAT},
            INDUCTOR,
            options=COMPILE_OPTIONS,
        ),
        _torch(
            "aotinductor",
            "aotinductor",
            "AOTInductor",
            {"cpu": CPU_FLOAT, "cuda": ("fp32", "fp16", "bf16")},
            INDUCTOR,
            options=(),  # the layout is compiled into the package
            artifact=aoti_artifact,
        ),
        BackendSpec(
            name="onnxruntime_trt",
            module="tensorrt.onnxruntime_trt",
            cls="OnnxRuntimeTensorRT",
            support={"cuda": ("fp32", "fp16", "int8")},
            packages=("onnxruntime-gpu", "tensorrt"),
            artifact=onnx_trt_artifact,
        ),
        BackendSpec(
            name="openvino",
            module="openvino",
            cls="OpenVINO",
            support={"cpu": ("fp32", "bf16", "int8", *OPENVINO_NNCF)},
            packages=("openvino",),
            precision_packages={p: ("nncf",) for p in OPENVINO_NNCF},
            artifact=openvino_artifact,
            options=OPENVINO_OPTIONS,
        ),
        # PyTorch's own x86 INT8: PT2E (torchao's X86InductorQuantizer) compiled by Inductor, CPU only
        _torch(
            "torch_pt2e",
            "torch_pt2e",
            "TorchPT2E",
            {"cpu": ("int8",)},
            (*TORCH, "torchao"),
            options=(),  # the program is quantised for the CPU; freezing is always on
            artifact=pt2e_artifact,
        ),
        _torch(
            "torch_tensorrt",
            "tensorrt.torch_tensorrt",
            "TorchTensorRT",
            {"cuda": ("fp32", "fp16", "bf16", "int8")},
            ("torch", "torch-tensorrt", "tensorrt", "nvidia-modelopt"),
            options=(),  # the layout is compiled into the program
            artifact=torch_tensorrt_artifact,
        ),
    ]
}

ALL_PRECISIONS = precisions.ALL

# The cell every speedup is measured against: same machine, device, image size and batch size.
BASELINE = {"backend": "torch", "precision": "fp32"}
BASELINE_TEXT = "torch fp32 (plain eager) on the same machine, device, image size and batch size"


def spec(name: str) -> BackendSpec:
    try:
        return BACKENDS[name]
    except KeyError:
        raise KeyError(f"unknown backend '{name}'; known: {', '.join(sorted(BACKENDS))}") from None
