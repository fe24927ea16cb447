"""`infbench <stage> …`: the only entry the workflow's rules call.

Each stage is defined beside its code: the module STAGES names has `add_parser(sub)`, which adds the
stage's arguments and the function that runs it (`func`; `gpu_stage=True` where it holds a GPU of its
own on --device cuda). Only the module of the stage that runs is imported.

Every rule's log starts with the exact command line, so a user can rerun one step (one
benchmark cell, say) by hand with the same arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import shlex
import sys

from infbench.bench.gpu_slots import slot
from infbench.core import integrity

# Stage → the module that defines it, in the order `infbench --help` lists them.
STAGES = {
    "prepare-data": "infbench.stages.data",
    "train": "infbench.stages.train",
    "import-onnx": "infbench.stages.model_onnx",
    "export-onnx": "infbench.stages.export",
    "quantize-int8": "infbench.stages.quantize",
    "convert-fp16": "infbench.stages.quantize",
    "quantize-nncf": "infbench.backends.openvino_nncf",
    "compile-aoti": "infbench.backends.aotinductor",
    "quantize-pt2e": "infbench.backends.torch_pt2e",
    "compile-torch-tensorrt": "infbench.backends.tensorrt.torch_tensorrt",
    "reference": "infbench.stages.reference",
    "flops": "infbench.measure.flops",
    "probe": "infbench.measure.probe",
    "bench": "infbench.bench.command",
    "serve": "infbench.serving.command",
    "accuracy": "infbench.stages.accuracy",
    "expected-accuracy": "infbench.stages.expected_accuracy",
    "aggregate": "infbench.report.aggregate",
    "report": "infbench.report.build",
    "plan": "infbench.flow.plan",
    "gpu-slot": "infbench.bench.gpu_slots",
}


def parser(stage: str | None = None) -> argparse.ArgumentParser:
    """The command line of every stage, or of `stage` alone (then only its module is imported)."""
    p = argparse.ArgumentParser(prog="infbench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="stage", required=True)
    modules = [STAGES[stage]] if stage in STAGES else STAGES.values()
    for module in dict.fromkeys(modules):
        importlib.import_module(module).add_parser(sub)
    return p


def _uses_gpu(a) -> bool:
    """A GPU stage on --device cuda (Torch-TensorRT builds have no --device: always) holds a GPU of its own."""
    return getattr(a, "gpu_stage", False) and getattr(a, "device", "cuda") == "cuda"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["plan"]:  # a rule's log starts with its command; `plan` is for people
        print("command: infbench " + shlex.join(argv), flush=True)
    args = parser(argv[0] if argv else None).parse_args(argv)

    integrity.WRITER["stage"] = args.stage
    try:
        # GPU jobs: a GPU slot for the whole stage, exported before any measuring process starts.
        label = f"{args.stage} {getattr(args, 'out', '')}".strip()
        with slot(label) if _uses_gpu(args) else contextlib.nullcontext() as args.gpu:
            args.func(args)
    except integrity.DamagedInput as exc:  # never a result made of a damaged input: fail, rebuild it next run
        integrity.remove(exc.path)
        print(
            f"infbench {args.stage}: error: {exc}; removed it, the next `snakemake --cores all report` rebuilds it",
            file=sys.stderr,
        )
        return 1
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"infbench {args.stage}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
