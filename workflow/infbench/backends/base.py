"""The interface every runtime backend implements.

A backend knows how to load one artifact for one cell and run a batch through it. It does not
time anything (that is `infbench.measure`) and does not write results (that is `infbench.bench`).
Heavy imports (torch, onnxruntime, tensorrt) happen inside the methods, never at module import,
so that the workflow can plan cells without them.
"""

from __future__ import annotations

import functools
import importlib
from pathlib import Path
from typing import Any

import numpy as np

from infbench.backends.registry import spec
from infbench.core.cell import Cell
from infbench.core.io import size_mib


class BackendUnavailable(RuntimeError):
    """The backend or the device cannot run here (not installed, no GPU); the message says why."""


class Backend:
    """Runs one artifact on one device in one precision.

    Life cycle, as `infbench.bench` drives it: `check_available()`, `load()`, then for each batch
    `prepare()` (host array → backend input; not timed unless in end-to-end mode), `run()`,
    `synchronize()`, and `to_numpy()` on the output.
    """

    # True where `run` returns only when the device's work is done (ONNX Runtime's Run): then the
    # host's share of a batch's time cannot tell whether the host sets the pace (launch-bound).
    synchronous_run = False
    # Modules a measuring process imports before it takes its GPU (`prepare_host`): several seconds
    # of a fresh process that need no device, done while another repetition holds the GPU.
    host_modules: tuple[str, ...] = ()
    # the model file's own static input shape where the backend ran it at another (OpenVINO reshapes)
    reshaped_from: list[int] | None = None

    def __init__(self, cell: Cell, artifact: Path, threads: int, artifact_rule: str = "", options: dict | None = None):
        self.cell = cell
        self.artifact = Path(artifact)
        self.artifact_rule = artifact_rule  # the rule that rebuilds the artifact, for error messages
        self.threads = threads
        # every option the backend declares (backends/registry.py), typed, the defaults filled in
        self.options = spec(cell.backend).option_values(options or {}, cell.device)

    def prepare_host(self) -> None:
        """The host-only part of starting up (imports; nothing that touches a device or CUDA)."""
        for name in self.host_modules:
            try:
                importlib.import_module(name)
            except ImportError:  # check_available says why, once the cell has its device
                pass

    # -- availability -------------------------------------------------------------------------
    @classmethod
    def unsupported_here(cls, device: str, precision: str) -> str | None:
        """Why this machine can never run `precision` on `device` (an instruction set it lacks), asked at grid
        expansion so the combination is dropped with the reason; None: it can (or only a cell can tell)."""
        return None

    def check_available(self) -> None:
        """Raise BackendUnavailable with the reason when this backend cannot run the cell here."""

    # -- artifact -----------------------------------------------------------------------------
    def read_artifact(self) -> None:
        """The host-only part of `load`: the artifact read into host memory (no device, no CUDA), done
        before a GPU cell takes its GPU, while another repetition may be measuring. `load` works
        without it too (it reads what was not read); a backend with nothing to read ahead keeps this."""

    def load(self) -> None:
        raise NotImplementedError

    # -- running ------------------------------------------------------------------------------
    def prepare(self, batch: np.ndarray) -> Any:
        """Turn a float32 NCHW host array into what `run` takes, on the backend's device."""
        raise NotImplementedError

    def run(self, inputs: Any) -> Any:
        raise NotImplementedError

    def synchronize(self) -> None:
        """Block until the work queued by `run` is done (no-op for synchronous backends)."""

    def to_numpy(self, outputs: Any) -> np.ndarray:
        """Copy the logits back to the host as float32 (outside the timed region)."""
        raise NotImplementedError

    # -- serving (infbench/serving) -------------------------------------------------------------
    def serving_runner(self, samples, images: np.ndarray, requests: int):
        """What serves LoadGen's queries with `requests` in flight (0: one per core on the CPU, two on a GPU):
        by default that many instances of this backend, each on a thread of its own (serving/runners.py);
        a runtime with an async API of its own overrides this in its module."""
        from infbench.serving.runners import ThreadRunner

        cores = max(1, self.threads)
        requests = requests or (cores if self.cell.device == "cpu" else 2)
        each = max(1, cores // requests) if self.cell.device == "cpu" else self.threads
        make = functools.partial(type(self), self.cell, self.artifact, each, self.artifact_rule, self.options)
        return ThreadRunner(samples, images, make, requests, each)

    # -- probes -------------------------------------------------------------------------------
    def device_memory_peak_mib(self) -> float | None:
        """Peak device memory this backend's allocator saw, or None where it cannot tell.

        On CUDA, None makes the cell fall back to NVML's device-level used-memory delta around
        session creation and the timed run (`infbench.measure.memory`); a figure from here wins.
        """
        return None

    def reset_device_memory_peak(self) -> None:
        pass

    def artifact_mib(self) -> float | None:
        """The size of what this backend runs, after `load` (here: its artifact file, as a compiled program
        or an ONNX model is run as it is written)."""
        return size_mib(self.artifact)

    def artifact_info(self) -> dict | None:
        """How the artifact was made, where its builder recorded it (NNCF: whether the tolerance was met)."""
        return None

    def compile_cache(self) -> dict | None:
        """Which of its compiler's on-disk caches this process hit or missed so far (None: no compiler)."""
        return None


def import_or_unavailable(module: str, install: str, what: str | None = None):
    """`module`, imported; else BackendUnavailable naming the import error and what to install."""
    try:
        return importlib.import_module(module)
    except Exception as exc:  # ImportError, or an OSError from a missing native library (libnvinfer)
        raise BackendUnavailable(
            f"{what or module} cannot be imported ({type(exc).__name__}: {exc}); {install}"
        ) from exc


def run_batches(backend: Backend, images: np.ndarray, batch: int) -> np.ndarray:
    """Logits of `images` through the backend in batches of exactly `batch` (a short last batch is
    padded with its own first image and the padding's outputs discarded, so shape-pinned
    artifacts such as TensorRT engines and AOTInductor packages see their one shape)."""
    outputs = []
    for i in range(0, len(images), batch):
        chunk = images[i : i + batch]
        n = len(chunk)
        if n < batch:
            chunk = np.concatenate([chunk, np.repeat(chunk[:1], batch - n, axis=0)])
        out = backend.run(backend.prepare(np.ascontiguousarray(chunk)))
        backend.synchronize()
        outputs.append(backend.to_numpy(out)[:n])
    return np.concatenate(outputs).astype(np.float32)
