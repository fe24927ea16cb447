"""The measurement loop's statistics and stopping rules, on a clock whose readings are known."""

from __future__ import annotations

import itertools

import numpy as np

from infbench.measure.timing import Latency, TimingPolicy, measure, median_ci95


class ScriptedClock:
    """Each `step` advances this clock by the next scripted duration (ms): a deterministic device."""

    def __init__(self, durations):
        self.durations = iter(durations)
        self.now = 0.0

    def step(self):
        self.now += next(self.durations)

    def stamp(self):
        return self.now

    def elapsed_ms(self, stamps):
        return [b - a for a, b in itertools.pairwise(stamps)]


def test_stats_of_known_samples():
    lat = Latency(samples_ms=[float(v) for v in range(1, 101)], tolerance=0.02)
    s = lat.stats()
    assert s["iterations"] == 100
    assert s["median_ms"] == 50.5 and s["min_ms"] == 1 and s["max_ms"] == 100
    assert abs(s["p99_ms"] - 99.01) < 1e-9 and abs(s["mean_ms"] - 50.5) < 1e-9
    assert s["ci95_low_ms"] < 50.5 < s["ci95_high_ms"]


def test_median_ci_contains_median_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(10, 1, 20), rng.normal(10, 1, 2000)
    lo_s, hi_s = median_ci95(small)
    lo_l, hi_l = median_ci95(large)
    assert lo_s <= np.median(small) <= hi_s and lo_l <= np.median(large) <= hi_l
    assert hi_l - lo_l < hi_s - lo_s


def test_measure_converges_on_a_steady_device():
    clock = ScriptedClock([50.0] + [2.0] * 100_000)  # slow first call, then steady 2 ms
    lat = measure(clock.step, clock, TimingPolicy(tolerance=0.02, time_budget_s=30))
    s = lat.stats()
    assert s["converged"] and s["median_ms"] == 2.0
    assert s["iterations"] >= TimingPolicy().min_samples
    assert s["warmup_iterations"] >= 2  # the slow first call is warm-up, never a sample
    assert s["max_ms"] == 2.0


def test_measure_excludes_the_warmup_transient():
    durations = [30.0, 20.0, 10.0, 5.0] + [4.0] * 100_000
    clock = ScriptedClock(durations)
    lat = measure(clock.step, clock, TimingPolicy(tolerance=0.01, time_budget_s=30, round_target_s=0.004))
    assert lat.stats()["median_ms"] == 4.0 and lat.stats()["max_ms"] == 4.0


def test_measure_stops_at_budget_when_noise_never_settles():
    rng = np.random.default_rng(1)
    clock = ScriptedClock(rng.choice([1.0, 100.0], size=10_000_000))  # bimodal: the CI never narrows
    lat = measure(clock.step, clock, TimingPolicy(tolerance=0.001, time_budget_s=0.3, warmup_budget_s=0.1))
    s = lat.stats()
    assert not s["converged"] and "budget" in s["stop_reason"]
    assert s["iterations"] > 0
