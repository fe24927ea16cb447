"""The precisions a cell can run in, and the PyTorch dtype each one means: one place for both."""

from __future__ import annotations

ALL = ("fp32", "tf32", "fp16", "bf16", "int8", "int8_dynamic", "int8_nncf", "int8_nncf_ac")
# int8_nncf and int8_nncf_ac: NNCF's INT8 models for OpenVINO (plain, and accuracy-controlled)

# Precision → torch dtype of a PyTorch model's weights and inputs. tf32 is fp32 storage with TF32
# tensor-core math; an int8 program (Torch-TensorRT, Model Optimizer) takes fp32 inputs and
# quantises inside.
TORCH_DTYPE = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16", "int8": "float32"}


def torch_dtype(precision: str):
    """The torch dtype of `precision` (imports torch)."""
    import torch

    return getattr(torch, TORCH_DTYPE[precision])


def allow_tf32(precision: str) -> None:
    """TF32 tensor-core math for tf32 only: every other precision keeps full fp32 math."""
    import torch

    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    torch.backends.cudnn.allow_tf32 = precision == "tf32"
