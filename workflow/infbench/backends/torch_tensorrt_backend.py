"""Torch-TensorRT (dynamo path): a TensorRT-compiled ExportedProgram per precision and shape.

The rule `compile_torch_tensorrt` (`infbench compile-torch-tensorrt`, see infbench.compile) exports
the model at the cell's fixed shape, compiles it with `torch_tensorrt.dynamo.compile` (strongly
typed: fp16/bf16 are the model's own dtype, int8 is Model Optimizer's Q/DQ, TF32 off) and saves it
with `torch_tensorrt.save`; a cell loads it with `torch.export.load(...).module()` (importing
torch_tensorrt registers the TensorRT runtime ops the program calls), so no engine is built in a
cell. Where Torch-TensorRT cannot be imported, the artifact is a small JSON stub and the cell
reports `unavailable` with the import error and what to install.
"""

from __future__ import annotations

from infbench.backends.base import BackendUnavailable, check_artifact
from infbench.backends.torch_eager import TorchEager, check_torch_device, setup_precision, to_input

# Precision → dtype of the compiled program's input (int8 programs take fp32 and quantize inside).
INPUT_DTYPE = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "float32"}


def import_torch_tensorrt():
    """The torch_tensorrt module, or BackendUnavailable naming the import error."""
    from infbench.compile import TORCH_TENSORRT_INSTALL

    try:
        import torch_tensorrt
    except Exception as exc:  # ImportError, or an OSError from a missing libnvinfer
        raise BackendUnavailable(
            f"torch_tensorrt cannot be imported ({type(exc).__name__}: {exc}); {TORCH_TENSORRT_INSTALL}"
        ) from exc
    return torch_tensorrt


class TorchTensorRT(TorchEager):
    def check_available(self) -> None:
        if self.cell.device != "cuda":
            raise BackendUnavailable("Torch-TensorRT runs on CUDA only")
        check_torch_device("cuda")
        import_torch_tensorrt()

    def load(self) -> None:
        import torch

        check_artifact(self.artifact, self.artifact_rule)
        self.torch = torch
        setup_precision("fp32", self.threads)
        self.dtype = getattr(torch, INPUT_DTYPE[self.cell.precision])
        self.device = torch.device("cuda")
        self.channels_last = False
        self.graph = None
        import_torch_tensorrt()
        from infbench.compile import read_unavailable

        stub = read_unavailable(self.artifact)
        if stub:  # built where Torch-TensorRT was missing: rebuild it with the rule once it is installed
            raise BackendUnavailable(f"the artifact {self.artifact} was built without Torch-TensorRT ({stub['error']})")
        try:
            self.model = torch.export.load(str(self.artifact)).module()
        except Exception as exc:
            raise ValueError(
                f"cannot load the Torch-TensorRT program {self.artifact} ({exc}); delete it and rerun the rule "
                f"'{self.artifact_rule}'"
            ) from exc

    def prepare(self, batch):
        return to_input(batch, "cuda", self.dtype)

    def run(self, inputs):
        with self.torch.inference_mode():
            out = self.model(inputs)
        return out[0] if isinstance(out, (list, tuple)) else out
