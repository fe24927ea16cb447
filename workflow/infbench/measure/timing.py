"""Timing: warm up until stable, then measure in rounds until the median is known well enough.

Each iteration is bracketed by clock stamps taken back to back (the end stamp of one iteration is
the start of the next), so the per-iteration samples add up to the wall time of the round,
gaps included. On CUDA the stamps are CUDA events recorded in the stream and read after one
synchronise per round: the host never stalls the GPU inside a round and no host clock is read
while device work is in flight.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


class HostClock:
    """perf_counter stamps, for backends whose `run` returns when the work is done."""

    def stamp(self):
        return time.perf_counter_ns()

    def elapsed_ms(self, stamps: list) -> list[float]:
        return [(b - a) / 1e6 for a, b in itertools.pairwise(stamps)]


class CudaClock:
    """CUDA events on the current stream; read after a synchronise."""

    def __init__(self):
        import torch

        self._torch = torch

    def stamp(self):
        event = self._torch.cuda.Event(enable_timing=True)
        event.record()
        return event

    def elapsed_ms(self, stamps: list) -> list[float]:
        stamps[-1].synchronize()
        return [a.elapsed_time(b) for a, b in itertools.pairwise(stamps)]


def median_ci95(samples: np.ndarray) -> tuple[float, float]:
    """Distribution-free 95% confidence interval of the median (order statistics)."""
    s = np.sort(samples)
    n = len(s)
    half = 1.96 * math.sqrt(n) / 2
    lo = max(0, math.floor(n / 2 - half) - 1)
    hi = min(n - 1, math.ceil(n / 2 + half))
    return float(s[lo]), float(s[hi])


@dataclass
class Latency:
    """Per-iteration latencies (ms) of one cell and how they were obtained."""

    samples_ms: list[float]
    warmup_iterations: int = 0
    rounds: int = 0
    converged: bool = False
    wall_s: float = 0.0
    tolerance: float = 0.02
    stop_reason: str = ""
    notes: list[str] = field(default_factory=list)

    def stats(self) -> dict:
        s = np.asarray(self.samples_ms, dtype=np.float64)
        median = float(np.median(s))
        lo, hi = median_ci95(s)
        return {
            "iterations": int(len(s)),
            "warmup_iterations": self.warmup_iterations,
            "rounds": self.rounds,
            "mean_ms": float(s.mean()),
            "median_ms": median,
            "p90_ms": float(np.percentile(s, 90)),
            "p95_ms": float(np.percentile(s, 95)),
            "p99_ms": float(np.percentile(s, 99)),
            "min_ms": float(s.min()),
            "max_ms": float(s.max()),
            "std_ms": float(s.std(ddof=1)) if len(s) > 1 else 0.0,
            "ci95_low_ms": lo,
            "ci95_high_ms": hi,
            "ci95_rel": (hi - lo) / 2 / median if median > 0 else None,
            "tolerance": self.tolerance,
            "converged": self.converged,
            "stop_reason": self.stop_reason,
            "wall_s": round(self.wall_s, 3),
        }


@dataclass
class TimingPolicy:
    tolerance: float = 0.02  # stop when the 95% CI half-width of the median is within this fraction
    time_budget_s: float = 10.0  # ... or when the measurement has run this long
    warmup_tolerance: float = 0.05  # successive warm-up round medians must agree this closely
    warmup_budget_s: float = 5.0
    min_warmup_rounds: int = 2
    round_target_s: float = 0.05  # a round lasts about this long (at least one iteration)
    min_samples: int = 10


def _round(step: Callable[[], None], clock, iterations: int) -> list[float]:
    stamps = [clock.stamp()]
    for _ in range(iterations):
        step()
        stamps.append(clock.stamp())
    return clock.elapsed_ms(stamps)


def measure(step: Callable[[], None], clock, policy: TimingPolicy) -> Latency:
    """Time `step` (one batch through the model) under `policy`."""
    start = time.perf_counter()
    # First call: may be slow (lazy init, autotuning); it also sizes the rounds.
    first = _round(step, clock, 1)[0]
    per_round = max(1, int(policy.round_target_s * 1000 / max(first, 1e-3)))
    warmup_iterations, previous, rounds = 1, None, 0
    while True:
        samples = _round(step, clock, per_round)
        warmup_iterations += per_round
        rounds += 1
        median = float(np.median(samples))
        per_round = max(1, int(policy.round_target_s * 1000 / max(median, 1e-3)))
        stable = previous is not None and abs(median - previous) <= policy.warmup_tolerance * previous
        if (stable and rounds >= policy.min_warmup_rounds) or time.perf_counter() - start > policy.warmup_budget_s:
            break
        previous = median

    latency = Latency([], warmup_iterations=warmup_iterations, tolerance=policy.tolerance)
    measure_start = time.perf_counter()
    while True:
        latency.samples_ms += _round(step, clock, per_round)
        latency.rounds += 1
        elapsed = time.perf_counter() - measure_start
        if len(latency.samples_ms) >= policy.min_samples:
            rel = latency.stats()["ci95_rel"]
            if rel is not None and rel <= policy.tolerance:
                latency.converged, latency.stop_reason = True, f"95% CI of the median within {policy.tolerance:.1%}"
                break
        if elapsed > policy.time_budget_s:
            latency.stop_reason = f"time budget of {policy.time_budget_s} s reached"
            break
    latency.wall_s = time.perf_counter() - start
    return latency
