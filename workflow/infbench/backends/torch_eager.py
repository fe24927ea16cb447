"""PyTorch eager: the baseline every speedup is measured against (fp32 on the same device)."""

from __future__ import annotations

import numpy as np

from infbench.backends.base import Backend, BackendUnavailable

DTYPES = {"fp32": "float32", "tf32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class TorchEager(Backend):
    def check_available(self) -> None:
        import torch

        if self.cell.device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable("no CUDA device visible to PyTorch (torch.cuda.is_available() is False)")

    def load(self) -> None:
        import torch

        from infbench.model import load_checkpoint

        torch.set_num_threads(self.threads)
        # tf32 is fp32 storage with TF32 tensor-core math; every other precision keeps full fp32 math.
        torch.backends.cuda.matmul.allow_tf32 = self.cell.precision == "tf32"
        torch.backends.cudnn.allow_tf32 = self.cell.precision == "tf32"
        self.torch = torch
        self.dtype = getattr(torch, DTYPES[self.cell.precision])
        self.device = torch.device(self.cell.device)
        self.model = load_checkpoint(self.artifact).to(self.device, self.dtype)

    def prepare(self, batch: np.ndarray):
        return self.torch.from_numpy(batch).to(self.device, self.dtype)

    def run(self, inputs):
        with self.torch.inference_mode():
            return self.model(inputs)

    def synchronize(self) -> None:
        if self.cell.device == "cuda":
            self.torch.cuda.synchronize()

    def to_numpy(self, outputs) -> np.ndarray:
        return outputs.float().cpu().numpy()

    def device_memory_peak_mb(self) -> float | None:
        if self.cell.device != "cuda":
            return None
        return self.torch.cuda.max_memory_allocated() / 2**20

    def reset_device_memory_peak(self) -> None:
        if self.cell.device == "cuda":
            self.torch.cuda.reset_peak_memory_stats()
