"""ONNX Runtime: the CPU execution provider (fp32 and the quantised INT8 variants), the CUDA
execution provider with IO binding (fp32, tf32 and the fp16 model) (its TensorRT execution provider:
backends/tensorrt/onnxruntime_trt.py).

On CUDA, inputs and outputs stay on the device: `prepare` copies the batch to a device OrtValue
and binds it together with a preallocated device output; `run` is `run_with_iobinding`, so no
host copy happens inside the timed region (only in end-to-end mode, where `prepare` and
`to_numpy` are timed too). ORT runs on PyTorch's current CUDA stream (`user_compute_stream`), so
the CUDA events of the measurement bracket exactly its work. A session that silently fell back to
the CPU provider is refused as `unavailable`.

Options of the CUDA execution provider (config `backend_options.onnxruntime`, `--option KEY=VALUE`):
  enable_cuda_graph=true   the EP captures the session's kernels in a CUDA graph and replays it (the input
                           and output stay at fixed device addresses: `prepare` copies into one input buffer)
  prefer_nhwc=true         NHWC convolutions (the EP inserts the layout transposes once, at session creation)
  cudnn_conv_use_max_workspace=true|false   cuDNN may take its largest workspace to pick convolution kernels
  fixed_shape=true         the session's free dimensions (batch, height, width) pinned to the cell's shape, so
                           the graph is optimised for that one shape
"""

from __future__ import annotations

import numpy as np

from infbench.backends.base import Backend, BackendUnavailable
from infbench.backends.registry import spec
from infbench.core.integrity import DamagedInput
from infbench.core.io import check_artifact


class OnnxRuntime(Backend):
    synchronous_run = True  # Run() returns when the outputs are ready
    host_modules = ("torch", "onnxruntime")  # torch first: its CUDA/cuDNN libraries serve the CUDA EP

    def provider_for(self) -> str:
        return "CUDAExecutionProvider" if self.cell.device == "cuda" else "CPUExecutionProvider"

    @property
    def provider(self) -> str:
        return self.provider_for()

    def check_available(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"onnxruntime is not installed ({exc})") from exc
        if self.provider not in ort.get_available_providers():
            raise BackendUnavailable(
                f"{self.provider} is not in this onnxruntime build (has: {', '.join(ort.get_available_providers())})"
            )
        if self.cell.device == "cuda":
            try:
                import torch
            except ImportError as exc:
                raise BackendUnavailable(f"PyTorch (for the CUDA stream and events) is not installed ({exc})") from exc
            if not torch.cuda.is_available():
                raise BackendUnavailable("no CUDA device visible (torch.cuda.is_available() is False)")

    def session_options(self):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.options.get("fixed_shape"):  # the names export.py gives the dynamic axes
            c = self.cell
            for name, value in (("batch", c.batch_size), ("height", c.image_size), ("width", c.image_size)):
                opts.add_free_dimension_override_by_name(name, value)
        return opts

    def cuda_stream_options(self) -> dict:
        import torch

        torch.cuda.init()
        stream = torch.cuda.current_stream().cuda_stream
        if not stream:  # PyTorch's legacy default stream: ORT keeps its own and Run waits for it
            return {"device_id": "0"}
        return {"device_id": "0", "has_user_compute_stream": "1", "user_compute_stream": str(stream)}

    def cuda_ep_options(self) -> dict:
        # The CUDA EP computes fp32 convolutions and GEMMs in TF32 unless told otherwise (use_tf32
        # defaults to 1): its "fp32" cells would be TF32 cells, twice as fast as PyTorch's fp32.
        tf32 = "1" if self.cell.precision == "tf32" else "0"
        return {**self.cuda_stream_options(), "use_tf32": tf32, **self.cuda_option_overrides()}

    def cuda_option_overrides(self) -> dict:
        """The CUDA EP's settings whose option differs from its default (the rest: ONNX Runtime's own)."""
        keys = ("enable_cuda_graph", "prefer_nhwc", "cudnn_conv_use_max_workspace")
        changed = [k for k in spec(self.cell.backend).changed(self.options) if k in keys]
        return {k: "1" if self.options[k] else "0" for k in changed}

    def providers(self) -> list:
        if self.cell.device == "cuda":
            return [(self.provider, self.cuda_ep_options())]
        return [self.provider]

    def load(self) -> None:
        import onnxruntime as ort

        check_artifact(self.artifact, self.artifact_rule)
        if self.cell.device == "cuda" and hasattr(ort, "preload_dlls"):
            import torch  # noqa: F401  (loads the CUDA/cuDNN libraries of the nvidia-* wheels first)

            try:
                ort.preload_dlls()
            except Exception:  # best effort: the libraries may come from the system instead
                pass
        try:
            self.session = ort.InferenceSession(str(self.artifact), self.session_options(), providers=self.providers())
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf types
            if self.cell.device == "cuda" and "onnx" not in str(exc).lower():
                raise BackendUnavailable(f"{self.provider} could not start ({exc})") from exc
            raise DamagedInput(self.artifact, self.artifact_rule, f"ONNX Runtime cannot load it: {exc}") from exc
        active = self.session.get_providers()
        if not active or active[0] != self.provider:
            raise BackendUnavailable(
                f"{self.provider} did not load (the session runs on {', '.join(active)}; see the log for the reason)"
            )
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.num_classes = None
        if self.cell.device == "cuda":
            dims = self.session.get_outputs()[0].shape
            self.num_classes = dims[-1] if isinstance(dims[-1], int) else None
            self._output_buffer = None
            self._input_buffer = None  # CUDA graph: one input at a fixed device address, refilled in place
            self.cuda_graph = self.options.get("enable_cuda_graph", False)

    # -- CPU: plain numpy in, numpy out ------------------------------------------------------
    # -- CUDA: device OrtValues bound to an IOBinding ------------------------------------------
    def _device_output(self, batch: int):
        import onnxruntime as ort

        if self._output_buffer is None or self._output_buffer.shape()[0] != batch:
            if self.num_classes is None:  # unknown output width: let ORT allocate on the device
                return None
            self._output_buffer = ort.OrtValue.ortvalue_from_shape_and_type(
                [batch, self.num_classes], np.float32, "cuda", 0
            )
        return self._output_buffer

    def prepare(self, batch: np.ndarray):
        host = np.ascontiguousarray(batch, dtype=np.float32)
        if self.cell.device != "cuda":
            return host
        import onnxruntime as ort

        if self.cuda_graph and self._input_buffer is not None:
            self._input_buffer.update_inplace(host)  # the captured graph reads this address
            device_in = self._input_buffer
        else:
            device_in = ort.OrtValue.ortvalue_from_numpy(host, "cuda", 0)
            if self.cuda_graph:
                self._input_buffer = device_in
        binding = self.session.io_binding()
        binding.bind_ortvalue_input(self.input_name, device_in)
        out = self._device_output(len(host))
        if out is None:
            binding.bind_output(self.output_name, "cuda", 0)
        else:
            binding.bind_ortvalue_output(self.output_name, out)
        binding._infbench_input = device_in  # keep the device input alive as long as the binding
        return binding

    def run(self, inputs):
        if self.cell.device != "cuda":
            return self.session.run(None, {self.input_name: inputs})[0]
        self.session.run_with_iobinding(inputs)
        return inputs.get_outputs()[0]

    def synchronize(self) -> None:
        if self.cell.device == "cuda":
            import torch

            torch.cuda.synchronize()

    def to_numpy(self, outputs) -> np.ndarray:
        if hasattr(outputs, "numpy"):  # an OrtValue on the device: copy to the host
            return np.asarray(outputs.numpy(), dtype=np.float32)
        return np.asarray(outputs, dtype=np.float32)
