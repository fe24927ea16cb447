"""What keeps several requests in flight for LoadGen: a runner takes batches from the sample queue
(batching.py), runs them and reports each batch done.

`ThreadRunner` serves every backend: `requests` instances of the cell's backend, each loaded and run on a
thread of its own (its own ONNX Runtime session, OpenVINO infer request or PyTorch module; on a GPU its own
CUDA stream, on which it is loaded too, so an ONNX Runtime CUDA session runs on it). The runtimes release
the GIL while they compute, so the threads run at once. A runtime with an async API of its own serves
through that instead, by overriding `Backend.serving_runner` in its module (OpenVINO's AsyncInferQueue).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import numpy as np

from infbench.serving.batching import SampleQueue, batches, stack


class Sample:
    """A sample of the warm-up (LoadGen's QuerySample has the same two fields)."""

    def __init__(self, index: int):
        self.id = index
        self.index = index


class Runner:
    """Serves `images` from `samples`; `on_done(batch)` is called from a worker once a batch's outputs are on the
    host. Subclasses start their workers in `start` and stop them in `stop`."""

    requests = 1  # requests in flight
    takers = 1  # threads that take from the queue (each is sent one CLOSED to stop)

    def __init__(self, samples: SampleQueue, images: np.ndarray):
        self.samples = samples
        self.images = images
        self.on_done: Callable[[list], None] = lambda batch: None
        self.failure: BaseException | None = None

    def start(self) -> None:
        raise NotImplementedError

    def join(self) -> None:
        raise NotImplementedError

    def issuer(self, scenario: str) -> Callable[[list], None]:
        """What LoadGen's issue_queries calls in `scenario`: by default the samples join the queue, where the
        runner's takers find them."""
        return self.samples.put

    def stop(self) -> None:
        self.samples.close(self.takers)
        self.join()
        self.raise_failure()

    def raise_failure(self) -> None:
        if self.failure is not None:
            raise RuntimeError(f"a serving request failed: {self.failure!r}") from self.failure

    def describe(self) -> dict:
        """What runs: requests in flight and how (recorded with every result)."""
        return {"requests_in_flight": self.requests}

    def batch(self, samples: list):
        return stack(self.images, [s.index for s in samples], self.samples.max_batch)

    def warm_up(self, seconds: float) -> float:
        """Full batches through every request for about `seconds`, the way the runner serves Offline; the samples
        per second of the second half (an estimate that sets LoadGen's expected rates, so that its runs last their
        minimum duration, and the Server search's first rate)."""
        done = [0]
        lock = threading.Lock()
        finished = threading.Condition(lock)

        def count(batch):
            with finished:
                done[0] += len(batch)
                finished.notify()

        self.on_done = count
        issue = self.issuer("Offline")
        per_round = self.requests * self.samples.max_batch * 16  # long enough that draining it is a small part
        start = time.perf_counter()
        half_at = half_done = None
        while True:
            with finished:
                target = done[0] + per_round
            issue([Sample(i % len(self.images)) for i in range(per_round)])
            with finished:
                while done[0] < target:
                    if not finished.wait(timeout=1.0):
                        self.raise_failure()
            now = time.perf_counter()
            if half_at is None and now - start >= seconds / 2:
                half_at, half_done = now, done[0]
            if now - start >= seconds and half_at is not None and now > half_at:
                return (done[0] - half_done) / (now - half_at)


class ThreadRunner(Runner):
    """`requests` instances of a backend, each on a thread of its own (see the module doc)."""

    def __init__(self, samples, images, make_backend: Callable[[], object], requests: int, threads_each: int):
        super().__init__(samples, images)
        self.make_backend = make_backend
        self.requests = self.takers = requests
        self.threads_each = threads_each
        self.threads: list[threading.Thread] = []

    def describe(self) -> dict:
        return {"requests_in_flight": self.requests, "how": "threads", "threads_per_request": self.threads_each}

    def start(self) -> None:
        loaded = threading.Barrier(self.requests + 1)
        self.threads = [threading.Thread(target=self._serve, args=(loaded,), daemon=True) for _ in range(self.requests)]
        for t in self.threads:
            t.start()
        try:
            loaded.wait()
        except threading.BrokenBarrierError:  # a request failed to load
            self.samples.close(self.takers)
            self.join()
        self.raise_failure()

    def join(self) -> None:
        for t in self.threads:
            t.join()

    def _serve(self, loaded: threading.Barrier) -> None:
        backend = self.make_backend()
        try:
            with device_stream(backend.cell.device):  # on a GPU: this request's own CUDA stream
                backend.load()
                loaded.wait()
                while (samples := self.samples.take()) is not None:
                    out = backend.to_numpy(backend.run(backend.prepare(self.batch(samples))))  # on the host: done
                    del out
                    self.on_done(samples)
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:  # noqa: BLE001 (reported by the main thread: LoadGen's thread must not die)
            self.failure = exc
            loaded.abort()
            while (samples := self.samples.take()) is not None:  # keep answering, so LoadGen's test ends
                self.on_done(samples)


class DirectRunner(Runner):
    """One query at a time, answered in LoadGen's own issue thread (SingleStream): the cell's backend, loaded as
    its one-at-a-time cell loads it, runs each query's batch and reports it done before issue_queries returns.
    No queue and no thread hands the query on, so its latency is the backend's plus LoadGen's own bookkeeping
    (through a taker thread, each query paid two thread switches: +0.3-0.4 ms a query on a 2-core VM)."""

    takers = 0

    def __init__(self, samples, images, backend):
        super().__init__(samples, images)
        self.backend = backend

    def describe(self) -> dict:
        return {
            "requests_in_flight": 1,
            "how": "one query at a time, answered in LoadGen's issue thread",
            "threads_per_request": self.backend.threads,
        }

    def start(self) -> None:
        self.backend.load()

    def join(self) -> None:
        pass

    def _answer(self, samples: list) -> None:
        """Each batch of `samples` (a query's one sample; the warm-up's several) run and reported done in turn."""
        b = self.backend
        for batch in batches(samples, self.samples.max_batch):
            try:
                if self.failure is None:
                    b.to_numpy(b.run(b.prepare(self.batch(batch))))  # on the host: done
            except Exception as exc:  # noqa: BLE001 (reported by the main thread: LoadGen's thread must not die)
                self.failure = exc
            self.on_done(batch)

    def issuer(self, scenario: str) -> Callable[[list], None]:
        return self._answer


def device_stream(device: str):
    """A CUDA stream of this thread's own, current for the block (the CPU: nothing)."""
    import contextlib

    if device != "cuda":
        return contextlib.nullcontext()
    import torch

    return torch.cuda.stream(torch.cuda.Stream())
