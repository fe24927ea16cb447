"""OpenVINO Runtime on the CPU: the ONNX files the other backends read, and NNCF's INT8 models.

Precisions (the artifact each reads: backends/registry.py, `openvino_artifact`):
  fp32          onnx/fp32.onnx, inference precision pinned to f32 (OpenVINO otherwise runs bf16 on CPUs that
                have it: the same trap as TF32 on a GPU)
  bf16          onnx/fp32.onnx with the bf16 inference precision; only where the CPU plugin lists BF16 among
                its capabilities (else dropped at grid expansion, with the reason)
  int8          onnx/int8_static.onnx, the calibrated Q/DQ model ONNX Runtime runs (OpenVINO turns its Q/DQ
                pairs into int8 kernels)
  int8_nncf     openvino/int8_nncf.xml: NNCF's post-training quantisation on the calibration split
  int8_nncf_ac  openvino/int8_nncf_ac.xml: NNCF's accuracy-controlled quantisation (layers that cost accuracy
                kept in float; infbench.backends.openvino_nncf builds both)
The float parts of every int8 model run in f32 too.

A cell reads the model (`read_artifact`), reshapes it to the cell's static shape and compiles it
(`load`): both before anything is timed, together the load figure. Options (config
`backend_options.openvino`, `--option KEY=VALUE`; declared in backends/registry.py): `hint`
(latency|throughput), `streams` (1; 0 = the hint's own choice), `inference_threads` (0 = the cell's
threads), `pinning` (CPU pinning; null = OpenVINO's own choice).
"""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import threading

import numpy as np

from infbench.backends.base import Backend, BackendUnavailable, import_or_unavailable
from infbench.backends.unavailable import read_unavailable
from infbench.core.integrity import DamagedInput
from infbench.core.io import check_artifact
from infbench.serving.batching import batches
from infbench.serving.runners import Runner

INSTALL = "pip install openvino nncf (or pip install -e '.[openvino]')"
# The inference precision each precision runs its float parts in.
INFERENCE_PRECISION = {"bf16": "bf16"}  # every other precision: f32
CAPABILITIES_CODE = "import openvino; print(' '.join(openvino.Core().get_property('CPU', 'OPTIMIZATION_CAPABILITIES')))"


@functools.cache
def cpu_capabilities() -> tuple[str, ...] | None:
    """The OPTIMIZATION_CAPABILITIES of OpenVINO's CPU plugin (FP32, BF16, INT8, …); None where OpenVINO does
    not start. Asked once per process, in a child process: the grid is expanded in Snakemake's own process,
    which should not hold OpenVINO's libraries and thread pool for the whole run."""
    try:
        proc = subprocess.run([sys.executable, "-c", CAPABILITIES_CODE], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return tuple(proc.stdout.split()) if proc.returncode == 0 else None


def bf16_reason(capabilities: tuple[str, ...] | None) -> str | None:
    """Why bf16 cannot run on a CPU with these capabilities (None: it can, or OpenVINO is missing, which the
    cells then report as unavailable with what to install)."""
    if capabilities is None or "BF16" in capabilities:
        return None
    return f"this CPU has no bf16 instructions (OpenVINO's CPU capabilities: {', '.join(capabilities)})"


class OpenVINO(Backend):
    synchronous_run = True  # infer() returns when the outputs are ready

    @classmethod
    def unsupported_here(cls, device: str, precision: str) -> str | None:
        if device == "cpu" and precision == "bf16":
            return bf16_reason(cpu_capabilities())
        return None

    def check_available(self) -> None:
        if self.cell.device != "cpu":
            raise BackendUnavailable("the openvino backend runs on the CPU only")
        import_or_unavailable("openvino", INSTALL, "OpenVINO")

    def read_artifact(self) -> None:
        """The model read into host memory (not yet compiled)."""
        try:
            import openvino as ov
        except ImportError:  # check_available says so, with what to install
            return
        check_artifact(self.artifact, self.artifact_rule)

        stub = read_unavailable(self.artifact)
        if stub:  # built where NNCF or OpenVINO was missing: the rule reruns once they are installed
            raise BackendUnavailable(f"the artifact {self.artifact} was built without them ({stub['error']})")
        self.core = ov.Core()
        try:
            self.model = self.core.read_model(str(self.artifact))
        except RuntimeError as exc:
            raise DamagedInput(self.artifact, self.artifact_rule, f"OpenVINO cannot read it: {exc}") from exc

    def compile_config(self) -> dict:
        """The CPU plugin's settings for this cell (every figure measured on one stream and the cell's threads
        unless the options say otherwise)."""
        o = self.options
        config = {
            "INFERENCE_PRECISION_HINT": INFERENCE_PRECISION.get(self.cell.precision, "f32"),
            "PERFORMANCE_HINT": o["hint"].upper(),
            "INFERENCE_NUM_THREADS": o["inference_threads"] or self.threads,
        }
        if o["streams"]:
            config["NUM_STREAMS"] = o["streams"]
        if o["pinning"] is not None:
            config["ENABLE_CPU_PINNING"] = o["pinning"]
        return config

    def compile(self, config: dict):
        """The model compiled for the cell's static shape with the CPU plugin's `config`, checked to run in the
        cell's precision."""
        if not hasattr(self, "model"):
            self.read_artifact()
        c = self.cell
        own = self.model.inputs[0].get_partial_shape()
        if own.is_static and list(own.to_shape()) != list(c.input_shape):  # a file exported with a fixed shape
            self.reshaped_from = list(own.to_shape())
            print(f"openvino: reshaped the model's static input {self.reshaped_from} to {list(c.input_shape)}")
        self.model.reshape({self.model.inputs[0].any_name: list(c.input_shape)})  # static: one shape, one kernel set
        compiled = self.core.compile_model(self.model, "CPU", config)
        got = compiled.get_property("INFERENCE_PRECISION_HINT").to_string()  # an openvino.Type: f32, bf16
        wanted = INFERENCE_PRECISION.get(c.precision, "f32")
        if got != wanted:  # e.g. bf16 asked of a CPU without it: never report one precision as another
            raise BackendUnavailable(f"OpenVINO compiled the model for {got}, not {wanted}")
        streams = compiled.get_property("NUM_STREAMS")
        threads = compiled.get_property("INFERENCE_NUM_THREADS")
        print(f"openvino: compiled for {c.input_shape}, {got}, {streams} stream(s), {threads} thread(s)", flush=True)
        return compiled

    def load(self) -> None:
        self.compiled = self.compile(self.compile_config())
        streams = self.compiled.get_property("NUM_STREAMS")
        if int(streams) > 1:  # the timing loop issues one request at a time: the other streams would idle
            raise BackendUnavailable(
                f"OpenVINO compiled {streams} streams; a multi-stream throughput needs as many requests in flight, "
                "which infbench's timing loop (one batch at a time, like every backend) does not issue, so its "
                "figure would be one stream's under another name: measure it as a serving cell (README "
                '"Serving": OpenVINO\'s infer queue with one request per stream), or keep '
                "backend_options.openvino.streams: 1"
            )
        info = self.artifact_info() or {}
        if info.get("tolerance_met") is False:
            print(f"openvino: NNCF missed the tolerance by {info['missed_by_points']} points (validation split)")
        self.request = self.compiled.create_infer_request()
        self._bound = None

    def serving_runner(self, samples, images: np.ndarray, requests: int):
        """OpenVINO's own way of serving (what benchmark_app -hint throughput measures): the throughput hint,
        `requests` streams (0: the hint's own choice), and an AsyncInferQueue of the compiled model's optimal
        number of infer requests."""
        config = {**self.compile_config(), "PERFORMANCE_HINT": "THROUGHPUT"}
        config.pop("NUM_STREAMS", None)
        if requests:
            config["NUM_STREAMS"] = requests
        return AsyncQueueRunner(samples, images, self.compile(config))

    def artifact_info(self) -> dict | None:
        """The .json NNCF's builder wrote beside its model (None for the ONNX files)."""
        info = self.artifact.with_suffix(".json")
        return json.loads(info.read_text()) if self.artifact.suffix == ".xml" and info.is_file() else None

    def prepare(self, batch: np.ndarray):
        import openvino as ov

        return ov.Tensor(np.ascontiguousarray(batch, dtype=np.float32))  # a copy: the tensor owns its data

    def run(self, inputs):
        if inputs is not self._bound:  # the timed loop feeds one tensor: bound once
            self.request.set_input_tensor(inputs)
            self._bound = inputs
        self.request.infer()
        return self.request.get_output_tensor(0)

    def to_numpy(self, outputs) -> np.ndarray:
        return np.array(outputs.data, dtype=np.float32, copy=True)  # the request reuses its output buffer


class AsyncQueueRunner(Runner):
    """LoadGen's batches through an `openvino.AsyncInferQueue`: one thread takes batches and starts them on the
    next idle infer request (start_async waits for one); the request's callback reports the batch done.

    Offline, where LoadGen issues every sample at once, runs benchmark_app's own loop in LoadGen's issue thread
    instead: wait for the next idle request, report the batch it ran done, start the next batch on it; no
    callback. A Python callback per batch, on OpenVINO's worker thread, contends for the GIL and the cores with
    the inference itself: on a 2-core VM at batch 1 it cost 20-30% of benchmark_app's throughput."""

    def __init__(self, samples, images, compiled):
        import openvino as ov

        super().__init__(samples, images)
        self.streams = int(compiled.get_property("NUM_STREAMS"))
        self.requests = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
        self.threads_total = int(compiled.get_property("INFERENCE_NUM_THREADS"))
        self.queue = ov.AsyncInferQueue(compiled, self.requests)
        self.queue.set_callback(self._done)
        self.plain = ov.AsyncInferQueue(compiled, self.requests)  # Offline's (and the warm-up's): no callback
        self.taker = None

    def describe(self) -> dict:
        return {
            "requests_in_flight": self.requests,
            "how": "openvino AsyncInferQueue, throughput hint",
            "streams": self.streams,
            "inference_threads": self.threads_total,
        }

    def _done(self, request, samples) -> None:
        self.on_done(samples)

    def issuer(self, scenario: str):
        return self._offline if scenario == "Offline" else super().issuer(scenario)

    def _offline(self, samples: list) -> None:
        import openvino as ov

        running: list = [None] * len(self.plain)  # each request's batch (and the tensor it reads), till reused
        for batch in batches(samples, self.samples.max_batch):
            if self.failure is not None:  # keep answering, so LoadGen's test ends
                self.on_done(batch)
                continue
            try:
                idle = self.plain.get_idle_request_id()  # waits for one, the GIL released
                if running[idle] is not None:
                    self.on_done(running[idle][0])
                    running[idle] = None
                tensor = ov.Tensor(self.batch(batch), shared_memory=True)
                self.plain[idle].set_input_tensor(tensor)
                self.plain.start_async()  # on that idle request
                running[idle] = (batch, tensor)
            except Exception as exc:  # noqa: BLE001 (reported by the main thread: LoadGen's thread must not die)
                self.failure = exc
                self.on_done(batch)
        try:
            self.plain.wait_all()
        except Exception as exc:  # noqa: BLE001
            self.failure = self.failure or exc
        for entry in running:
            if entry is not None:
                self.on_done(entry[0])

    def start(self) -> None:
        self.taker = threading.Thread(target=self._take, daemon=True)
        self.taker.start()

    def _take(self) -> None:
        while (samples := self.samples.take()) is not None:
            if self.failure is not None:  # keep answering, so LoadGen's test ends
                self.on_done(samples)
                continue
            try:
                self.queue.start_async(self.batch(samples), samples)
            except Exception as exc:  # noqa: BLE001 (reported by the main thread)
                self.failure = exc
                self.on_done(samples)

    def join(self) -> None:
        self.taker.join()
        self.queue.wait_all()
