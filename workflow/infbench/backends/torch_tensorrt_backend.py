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

from infbench.backends.base import BackendUnavailable, check_artifact, import_or_unavailable
from infbench.backends.torch_eager import TorchEager, check_torch_device


def import_torch_tensorrt():
    """The torch_tensorrt module, or BackendUnavailable naming the import error and what to install."""
    from infbench.compile import TORCH_TENSORRT_INSTALL

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
        from infbench.compile import read_unavailable

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
