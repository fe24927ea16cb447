"""PyTorch eager (`torch`): the baseline every speedup is measured against (fp32 on the same device),
and its CUDA-graph replay (`torch_cudagraphs`), a technique of its own at every batch size: the
baseline stays plain eager, so a speedup never hides which of the two it is against.

Options: `channels_last` (declared in backends/registry.py; NHWC memory format, tensor cores like it).

The helpers here (`setup_precision`, `load_module`, `to_input`), `TorchEager.setup` (the start of
every `load`) and `TorchEager.eager_module` (the checkpoint's module, read ahead by `read_artifact`)
are shared by the other PyTorch-based backends (torchscript, torch_compile, aotinductor,
torch_tensorrt).
"""

from __future__ import annotations

import numpy as np

from infbench.backends.base import Backend, BackendUnavailable
from infbench.core import precisions
from infbench.stages.model import load_checkpoint


def check_torch_device(device: str) -> None:
    try:
        import torch
    except ImportError as exc:
        raise BackendUnavailable(f"PyTorch is not installed ({exc})") from exc
    if device == "cuda" and not torch.cuda.is_available():
        raise BackendUnavailable("no CUDA device visible to PyTorch (torch.cuda.is_available() is False)")


def setup_precision(precision: str, threads: int):
    """Thread count and TF32 switches for `precision`; returns the torch dtype of weights and inputs."""
    import torch

    torch.set_num_threads(threads)
    precisions.allow_tf32(precision)
    torch.backends.cudnn.benchmark = True  # fixed shapes per cell: let cuDNN pick its fastest kernels
    return precisions.torch_dtype(precision)


def load_module(checkpoint, device: str, dtype, channels_last: bool = False):
    """The trained model, in eval mode, on `device` in `dtype` (NHWC weights if `channels_last`)."""
    return place_module(load_checkpoint(checkpoint), device, dtype, channels_last)


def place_module(model, device: str, dtype, channels_last: bool = False):
    """A host module (from `load_checkpoint`) moved to `device` in `dtype` (NHWC weights if `channels_last`)."""
    import torch

    model = model.to(torch.device(device), dtype)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def to_input(batch: np.ndarray, device: str, dtype, channels_last: bool = False):
    """Host float32 NCHW array → tensor on `device` in `dtype` (NHWC strides if `channels_last`)."""
    import torch

    tensor = torch.from_numpy(batch).to(torch.device(device), dtype)
    return tensor.contiguous(memory_format=torch.channels_last) if channels_last else tensor


class TorchEager(Backend):
    host_modules = ("torch", "torchvision.models", "infbench.stages.model")
    host_model = None  # the checkpoint's module on the host, once `read_artifact` has read it
    weights_mib = None  # the weights it runs, cast to the cell's dtype (once `eager_module` placed them)

    def check_available(self) -> None:
        check_torch_device(self.cell.device)

    def setup(self) -> None:
        """The start of every PyTorch backend's `load`: torch, threads, TF32, dtype, memory format."""
        import torch

        self.torch = torch
        self.dtype = setup_precision(self.cell.precision, self.threads)
        self.device = torch.device(self.cell.device)
        self.channels_last = self.options.get("channels_last", False)
        self.graph = None

    def read_artifact(self) -> None:
        """The checkpoint → module on the host (torch.load, torchvision's constructor): 0.1-0.2 s a process."""
        self.host_model = load_checkpoint(self.artifact)

    def eager_module(self):
        """The trained model on the cell's device, in its dtype and memory format (after `setup`)."""
        if self.host_model is None:
            self.read_artifact()
        model, self.host_model = self.host_model, None  # moved, not copied: the host copy is gone
        model = place_module(model, self.cell.device, self.dtype, self.channels_last)
        tensors = [*model.parameters(), *model.buffers()]
        self.weights_mib = sum(t.numel() * t.element_size() for t in tensors) / 2**20
        return model

    def artifact_mib(self) -> float | None:
        """The checkpoint's weights as the cell runs them (fp16/bf16: half the fp32 checkpoint); a backend that
        loads a compiled file instead (AOTInductor, Torch-TensorRT) runs that file."""
        return self.weights_mib if self.weights_mib is not None else super().artifact_mib()

    def load(self) -> None:
        self.setup()
        self.model = self.eager_module()

    def zeros_input(self):
        """A batch of zeros of the cell's shape on its device, in its dtype and layout (for tracing, capture)."""
        return to_input(np.zeros(self.cell.input_shape, np.float32), self.cell.device, self.dtype, self.channels_last)

    def prepare(self, batch: np.ndarray):
        return to_input(batch, self.cell.device, self.dtype, self.channels_last)

    def run(self, inputs):
        with self.torch.inference_mode():
            out = self.model(inputs)
        return out[0] if isinstance(out, (list, tuple)) else out  # compiled programs return a tuple

    def synchronize(self) -> None:
        if self.cell.device == "cuda":
            self.torch.cuda.synchronize()

    def to_numpy(self, outputs) -> np.ndarray:
        return outputs.float().cpu().numpy()

    def device_memory_peak_mib(self) -> float | None:
        if self.cell.device != "cuda":
            return None
        return self.torch.cuda.max_memory_allocated() / 2**20

    def reset_device_memory_peak(self) -> None:
        if self.cell.device == "cuda":
            import torch

            torch.cuda.reset_peak_memory_stats()


class TorchCudaGraphs(TorchEager):
    """One forward pass captured in a CUDA graph and replayed: one launch per batch instead of ~60."""

    def load(self) -> None:
        super().load()
        self._capture()

    def _capture(self) -> None:
        """Record one forward pass into a CUDA graph over a static input buffer."""
        torch = self.torch
        self.static_in = self.zeros_input()
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):  # warm-up outside the graph: cuDNN autotuning, workspace allocation
                self.model(self.static_in)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.inference_mode():
            self.static_out = self.model(self.static_in)
        torch.cuda.synchronize()

    def prepare(self, batch: np.ndarray):
        tensor = super().prepare(batch)
        self.static_in.copy_(tensor)  # the graph reads its own buffer: fill it (device → device)
        return self.static_in

    def run(self, inputs):
        if inputs is not self.static_in:
            self.static_in.copy_(inputs)
        self.graph.replay()
        return self.static_out
