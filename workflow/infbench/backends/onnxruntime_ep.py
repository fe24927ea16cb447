"""ONNX Runtime: the CPU execution provider (fp32 and the quantised INT8 variants)."""

from __future__ import annotations

import numpy as np

from infbench.backends.base import Backend, BackendUnavailable, check_artifact


class OnnxRuntime(Backend):
    provider = "CPUExecutionProvider"

    def check_available(self) -> None:
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"onnxruntime is not installed ({exc})") from exc
        if self.provider not in ort.get_available_providers():
            raise BackendUnavailable(
                f"{self.provider} is not in this onnxruntime build (has: {', '.join(ort.get_available_providers())})"
            )

    def session_options(self):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        return opts

    def load(self) -> None:
        import onnxruntime as ort

        check_artifact(self.artifact, self.artifact_rule)
        try:
            self.session = ort.InferenceSession(str(self.artifact), self.session_options(), providers=[self.provider])
        except Exception as exc:  # ORT raises its own Fail/InvalidProtobuf types
            raise ValueError(
                f"cannot load {self.artifact} ({exc}); it may be truncated or corrupt: delete it and rerun "
                f"the rule '{self.artifact_rule}'"
            ) from exc
        self.input_name = self.session.get_inputs()[0].name

    def prepare(self, batch: np.ndarray):
        return np.ascontiguousarray(batch, dtype=np.float32)

    def run(self, inputs):
        return self.session.run(None, {self.input_name: inputs})[0]

    def to_numpy(self, outputs) -> np.ndarray:
        return np.asarray(outputs, dtype=np.float32)
