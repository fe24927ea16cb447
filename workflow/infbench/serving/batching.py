"""The queue LoadGen's samples wait in until a request is free, and how a request takes its batch.

A free request takes the oldest waiting sample and then whatever else waits, up to `max_batch`; where
fewer wait, it waits at most `timeout_s` for more (0: it takes what is there and waits for nothing, so
a lone query is never held back). Offline queues everything at once: full batches. Server batches as
its arrivals pile up. SingleStream has one sample in flight: batches of one.
"""

from __future__ import annotations

import queue
import time

CLOSED = object()  # put once per taker when the test is over


def max_batch(scenario: str, configured: int) -> int:
    """The batch a scenario's requests take at most: SingleStream's one sample a query at batch 1 (the batch-1
    cell's variant, its latency), `serving.max_batch` for the others."""
    return 1 if scenario == "SingleStream" else configured


class SampleQueue:
    def __init__(self, max_batch: int, timeout_s: float):
        if max_batch < 1:
            raise ValueError(f"serving.max_batch={max_batch}: expected at least 1")
        self.max_batch = max_batch
        self.timeout_s = timeout_s
        self._queue: queue.SimpleQueue = queue.SimpleQueue()

    def put(self, samples) -> None:
        for s in samples:
            self._queue.put(s)

    def close(self, takers: int) -> None:
        for _ in range(takers):
            self._queue.put(CLOSED)

    def take(self) -> list | None:
        """The next batch (1 to max_batch samples), or None once the queue is closed."""
        first = self._queue.get()
        if first is CLOSED:
            return None
        batch = [first]
        deadline = time.perf_counter() + self.timeout_s
        while len(batch) < self.max_batch:
            try:
                wait = deadline - time.perf_counter()
                item = self._queue.get(timeout=wait) if wait > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if item is CLOSED:  # another taker's: hand it back, serve what we have
                self._queue.put(CLOSED)
                break
            batch.append(item)
        return batch


def batches(samples: list, size: int):
    """`samples` in batches of at most `size`, in order (an Offline issue, the warm-up's rounds)."""
    return (samples[at : at + size] for at in range(0, len(samples), size))


def stack(images, indices: list[int], max_batch: int):
    """The batch of the images at `indices`, padded to `max_batch` with its own first image (one shape for every
    batch, as shape-pinned artifacts need: the padding is computed and its outputs dropped)."""
    import numpy as np

    if max_batch == 1:  # a view, no copy
        return images[indices[0] : indices[0] + 1]
    rows = list(indices) + [indices[0]] * (max_batch - len(indices))
    return np.ascontiguousarray(images[rows])
