"""Timing of one repetition: warm-up, throughput windows, then latency.

Two metrics, never mixed (DESIGN.md, "Measuring honestly"):

* throughput: batches issued back to back, ONE synchronisation at the end of a window, images per
  wall-clock second of that window. A repetition runs several windows; their median is the
  repetition's figure and their spread its within-repetition confidence interval.
* latency: one batch at a time, synchronised after each, per-batch wall times (p50/p90/p99). The
  host time spent inside `step` before the synchronise is recorded too: when it is nearly the
  whole batch time, the host, not the device, sets the pace (launch-bound).

Host clocks only: every reading follows a synchronise, so no device work is timed asynchronously.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from infbench.measure.statistics import median_interval

# A backend whose host spends at least this fraction of a batch's latency issuing its work is
# launch-bound: the device waits on the host for much of the batch. (On the H100, eager fp16 at
# 224×64 issues for 74% of its 2.8 ms and loses 9% to its CUDA-graph replay; at 224×256 for about
# a fifth of its 9 ms.)
LAUNCH_BOUND_FRACTION = 0.6


@dataclass(frozen=True)
class TimingPolicy:
    """How long each phase of a repetition lasts. Defaults live in config/schema.yaml (`bench:`)."""

    warmup_s: float
    window_s: float
    window_iterations: int
    windows: int
    latency_s: float
    latency_iterations: int
    warmup_tolerance: float = 0.05  # successive warm-up windows must agree this closely


def _span(step: Callable[[], None], synchronize: Callable[[], None], iterations: int) -> tuple[float, float]:
    """(start, end) perf_counter seconds of `iterations` batches back to back, synchronised before and after only."""
    synchronize()
    start = time.perf_counter()
    for _ in range(iterations):
        step()
    synchronize()
    return start, time.perf_counter()


def _window(step: Callable[[], None], synchronize: Callable[[], None], iterations: int) -> float:
    """Seconds for `iterations` batches back to back."""
    start, end = _span(step, synchronize, iterations)
    return end - start


def warm_up(step, synchronize, policy: TimingPolicy) -> tuple[int, float]:
    """Run until two successive short windows agree (or the warm-up budget ends).

    Returns (batches run, seconds per batch of the last window), the latter sizing the windows.
    """
    start = time.perf_counter()
    per_batch = _window(step, synchronize, 1)  # first call: lazy init, autotuning
    batches, previous = 1, None
    while True:
        n = max(1, int(policy.window_s / 4 / max(per_batch, 1e-6)))
        per_batch = _window(step, synchronize, n) / n
        batches += n
        stable = previous is not None and abs(per_batch - previous) <= policy.warmup_tolerance * previous
        if stable or time.perf_counter() - start > policy.warmup_s:
            return batches, per_batch
        previous = per_batch


def throughput_windows(step, synchronize, policy: TimingPolicy, per_batch_s: float, batch_size: int) -> dict:
    """`policy.windows` windows (or more, up to twice as many, until they last `windows × window_s`
    together) of at least `window_s` and `window_iterations` batches each, back to back.

    `span_start`/`span_end` (perf_counter seconds) and `images` describe the windows together: the
    energy window of a GPU cell (bench.py reads NVML's counters over exactly this span).
    """
    iterations = max(policy.window_iterations, math.ceil(policy.window_s / max(per_batch_s, 1e-6)))
    spans = [_span(step, synchronize, iterations) for _ in range(policy.windows)]
    # The windows are sized from the warm-up's last batches; where the device sped up since (clocks
    # rising), they come in short. More of the same size until they last windows × window_s together
    # (the energy window needs it), at most twice as many.
    while spans[-1][1] - spans[0][0] < policy.windows * policy.window_s and len(spans) < 2 * policy.windows:
        spans.append(_span(step, synchronize, iterations))
    rates = [batch_size * iterations / (end - start) for start, end in spans]
    median = float(np.median(rates))
    between = median_interval(rates)  # the windows' order-statistic interval (measure/statistics.py)
    return {
        "img_s": median,
        "windows_img_s": rates,
        "iterations_per_window": iterations,
        "ci95_rel": (between.high - between.low) / 2 / median,
        "ci_coverage": between.coverage,  # the interval's real coverage (the range of 5 windows: 93.75%)
        "span_start": spans[0][0],
        "span_end": spans[-1][1],
        "images": batch_size * iterations * len(spans),
    }


# A percentile needs samples: p90 about 10 batches, p99 about 100. A batch-1 cell (a request's latency: the
# findings' "lowest batch-1 latency", its p99) times `latency_iterations` batches whatever they take; a larger
# batch times `latency_s` and at least MIN_SAMPLES["p90_ms"] batches, and keeps its p99 only where it reached
# 100. On a 2-core VM, 100 batches of 32 at 64 px took 6 s a repetition: 80 s of the default run over its
# 10 minutes, for a per-batch p99 no finding reads.
MIN_SAMPLES = {"p90_ms": 10, "p99_ms": 100}


def latencies(step, synchronize, policy: TimingPolicy, batch_size: int = 1) -> dict:
    """One batch at a time, synchronised after each: per-batch times and the host's share of them."""
    totals, issues = [], []
    least = policy.latency_iterations if batch_size == 1 else min(policy.latency_iterations, MIN_SAMPLES["p90_ms"])
    synchronize()
    start = time.perf_counter()
    while len(totals) < least or time.perf_counter() - start < policy.latency_s:
        t0 = time.perf_counter()
        step()
        t1 = time.perf_counter()
        synchronize()
        t2 = time.perf_counter()
        totals.append((t2 - t0) * 1000)
        issues.append((t1 - t0) * 1000)
    s = np.asarray(totals)
    # a larger batch's percentiles only where it timed enough batches (a batch-1 cell times what it is told)
    enough = {q: batch_size == 1 or len(s) >= n for q, n in MIN_SAMPLES.items()}
    return {
        "iterations": len(totals),
        "p50_ms": float(np.percentile(s, 50)),
        "p90_ms": float(np.percentile(s, 90)) if enough["p90_ms"] else None,
        "p99_ms": float(np.percentile(s, 99)) if enough["p99_ms"] else None,
        "mean_ms": float(s.mean()),
        "min_ms": float(s.min()),
        "max_ms": float(s.max()),
        # median host time issuing a batch over its median total time (1.0 for a runtime whose
        # call returns only when the work is done)
        "host_issue_fraction": float(np.median(issues) / np.median(s)),
    }


def measure_repetition(step, synchronize, policy: TimingPolicy, batch_size: int, during_windows=nullcontext) -> dict:
    """Warm-up, throughput windows, latency: the timing part of one repetition.

    `during_windows()`: a context entered just before the throughput windows and left just after
    them (a GPU cell's NVML sampler: running during the latency phase it would jitter it)."""
    started = time.perf_counter()
    warmup_batches, per_batch = warm_up(step, synchronize, policy)
    warmed = time.perf_counter()
    with during_windows():
        throughput = throughput_windows(step, synchronize, policy, per_batch, batch_size)
    latency = latencies(step, synchronize, policy, batch_size)
    return {
        "warmup_batches": warmup_batches,
        "warmup_wall_s": round(warmed - started, 3),
        "throughput": throughput,
        "latency": latency,
        "wall_s": round(time.perf_counter() - started, 3),
    }
