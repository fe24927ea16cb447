"""The measurement protocol's statistics: repetitions → value, uncertainty, stability; phases' shape;
interference verdicts. Pure functions on known inputs (nothing here times code for its own sake)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from infbench.measure import interference, repetitions, timing


def test_median_ci_contains_median_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(10, 1, 20), rng.normal(10, 1, 2000)
    lo_s, hi_s = timing.median_ci95(small)
    lo_l, hi_l = timing.median_ci95(large)
    assert lo_s <= np.median(small) <= hi_s and lo_l <= np.median(large) <= hi_l
    assert hi_l - lo_l < hi_s - lo_s


def test_identical_repetitions_are_stable_with_the_within_interval_as_uncertainty():
    tp = repetitions.combine([100.0, 100.0, 100.0], [0.01, 0.02, 0.03])
    assert tp["value"] == 100.0 and tp["between_rel"] == 0.0
    assert tp["uncertainty_rel"] == pytest.approx(0.02)  # the median within-repetition interval
    assert repetitions.verdict(tp, 0.05, 3) == "stable"


def test_between_repetition_interval_predicts_one_later_rerun():
    values = [94.0, 100.0, 106.0]  # s = 6, n = 3: t(0.975, 2) · 6 · sqrt(1 + 1/3) / 100
    tp = repetitions.combine(values, [0.001] * 3)
    assert tp["between_rel"] == pytest.approx(4.303 * 6 * (4 / 3) ** 0.5 / 100, rel=1e-3)
    assert tp["uncertainty_rel"] == tp["between_rel"]


def test_stable_means_every_repetition_within_the_tolerance_of_the_median():
    tp = repetitions.combine([94.0, 100.0, 106.0], [0.001] * 3)
    assert repetitions.verdict(tp, 0.05, 3) == "unstable"  # two repetitions 6% off
    assert repetitions.verdict(tp, 0.07, 3) == "stable"
    noisy_windows = repetitions.combine([100.0, 100.0, 100.0], [0.08] * 3)
    assert repetitions.verdict(noisy_windows, 0.05, 3) == "unstable"  # each repetition's windows disagree


def test_more_agreeing_repetitions_narrow_the_interval():
    few = repetitions.combine([99.0, 101.0, 100.0], [None] * 3)["between_rel"]
    many = repetitions.combine([99.0, 101.0, 100.0, 99.0, 101.0], [None] * 5)["between_rel"]
    assert many < few


def test_too_few_repetitions_are_never_stable():
    tp = repetitions.combine([100.0], [0.001])
    assert tp["between_rel"] is None
    assert repetitions.verdict(tp, 0.05, 2) == "unstable"


def test_disturbance_from_the_canary_or_foreign_cpu_time():
    limits = {"max_slowdown": 1.3, "max_foreign_cores": 0.25}
    assert interference.disturbance(5.0, 5.2, 5.0, 0.02, **limits) is None
    slow = interference.disturbance(5.0, 9.0, 5.0, 0.0, **limits)
    assert "canary at the end 1.8×" in slow
    busy = interference.disturbance(5.0, 5.0, 5.0, 0.9, **limits)
    assert "other processes used 0.90 cores" in busy
    assert interference.disturbance(5.0, 5.0, None, None, **limits) is None  # nothing to hold it against
    # A GPU cell leaves all but two cores idle: load there is no contention, load beyond them is.
    assert interference.disturbance(5.0, 5.0, 5.0, 2.0, **limits, spare=14) is None
    assert "2.30 beyond the 14 the cell leaves idle" in interference.disturbance(
        5.0, 5.0, 5.0, 16.3, **limits, spare=14
    )
    assert interference.spare_cores("cpu", os.cpu_count()) == 0
    assert interference.spare_cores("cuda", os.cpu_count()) == max(0, os.cpu_count() - 2)


def test_cpu_busy_time_grows_with_work():
    before = interference.cpu_busy_s()
    end = time.process_time() + 0.3
    while time.process_time() < end:
        pass
    assert interference.cpu_busy_s() - before >= 0.2


POLICY = timing.TimingPolicy(
    warmup_s=0.05, window_s=0.01, window_iterations=3, windows=3, latency_s=0.01, latency_iterations=5
)


def test_a_repetition_counts_windows_and_latency_batches():
    calls, syncs = [], []
    rep = timing.measure_repetition(lambda: calls.append(1), lambda: syncs.append(len(calls)), POLICY, batch_size=4)
    tp = rep["throughput"]
    assert 3 <= len(tp["windows_img_s"]) <= 6 and tp["iterations_per_window"] >= 3
    assert tp["images"] == 4 * tp["iterations_per_window"] * len(tp["windows_img_s"])
    assert tp["img_s"] == float(np.median(tp["windows_img_s"])) > 0
    assert rep["latency"]["iterations"] >= 5
    assert rep["latency"]["p50_ms"] <= rep["latency"]["p90_ms"] <= rep["latency"]["p99_ms"]


def test_windows_that_come_in_short_are_followed_by_more_until_they_last_their_time():
    """A device that speeds up after the warm-up (10 ms a batch there, 2 ms after): windows sized from
    the warm-up's pace are a fifth of `window_s`; more of them run until they last windows × window_s
    together (at most twice as many), and the images count every one of them."""
    policy = timing.TimingPolicy(
        warmup_s=0.05, window_s=0.05, window_iterations=1, windows=3, latency_s=0.01, latency_iterations=5
    )
    per_batch = 0.01
    out = timing.throughput_windows(lambda: time.sleep(per_batch / 5), lambda: None, policy, per_batch, 2)
    n = len(out["windows_img_s"])
    assert n == 6  # 3 windows of ~10 ms, then 3 more: still short of 150 ms, but no more than twice as many
    assert out["images"] == 2 * out["iterations_per_window"] * n
    slow = timing.throughput_windows(lambda: time.sleep(0.01), lambda: None, policy, 0.01, 2)
    assert len(slow["windows_img_s"]) == 3  # sized right: no extra window
    assert slow["span_end"] - slow["span_start"] >= 0.9 * policy.windows * policy.window_s


def test_latency_synchronises_after_every_batch_and_splits_host_from_device_time():
    """A step that only queues work (returns at once) and a device that takes 5 ms per batch: the
    host's share is small, so the pace is the device's; a step that does the work itself is
    all host time (launch-bound by the same measure)."""
    queued = []

    def device_sync():
        while queued:
            queued.pop()
            time.sleep(0.005)

    lat = timing.latencies(lambda: queued.append(1), device_sync, POLICY)
    assert not queued  # every batch was waited for before the next one started
    assert lat["host_issue_fraction"] < timing.LAUNCH_BOUND_FRACTION
    assert lat["p50_ms"] >= 5.0

    host = timing.latencies(lambda: time.sleep(0.005), lambda: None, POLICY)
    assert host["host_issue_fraction"] >= timing.LAUNCH_BOUND_FRACTION


def test_a_gpu_cells_energy_per_image_carries_the_spread_of_its_repetitions():
    """The cell keeps the median repetition's NVML section whole (energy per image × its window's rate =
    its power) and prints beside it the same rerun interval as the throughput's, from the repetitions."""
    from infbench.backends.base import Cell
    from infbench.bench import cell_figures

    def rep(img_s, mj, watts):
        return {
            "disturbed": None,
            "throughput": {"img_s": img_s, "ci95_rel": 0.001},
            "latency": {"p50_ms": 1.0, "p90_ms": 1.1, "p99_ms": 1.2, "host_issue_fraction": 0.1},
            "synchronous_run": False,
            "load_s": 1.0,
            "first_batch_s": 0.1,
            "memory": {"device_peak_mib": 900.0},
            "nvml": {"energy_mj_per_image": mj, "power_w": watts, "window_img_s": img_s},
        }

    cell = Cell("resnet18", "torch", "fp16", "cuda", 224, 64)
    runs = [rep(20000.0, 20.0, 400.0), rep(20100.0, 22.0, 442.0), rep(19900.0, 18.0, 358.0)]
    figures = cell_figures(cell, runs, tolerance=0.05, min_repetitions=3)
    assert figures["nvml"]["energy_mj_per_image"] == 20.0 and figures["nvml"]["power_w"] == 400.0
    # s = 2 mJ, n = 3: t(0.975, 2) · 2 · sqrt(1 + 1/3) / 20
    assert figures["energy_uncertainty_pct"] == pytest.approx(100 * 4.303 * 2 * (4 / 3) ** 0.5 / 20, rel=1e-3)
    assert figures["power_uncertainty_pct"] == pytest.approx(100 * 4.303 * 42 * (4 / 3) ** 0.5 / 400, rel=1e-3)
    # no NVML (a CPU cell, or NVML missing): no energy, so no interval either
    for r in runs:
        r["nvml"] = {"energy_mj_per_image": None, "power_w": None}
    figures = cell_figures(cell, runs, tolerance=0.05, min_repetitions=3)
    assert figures["energy_uncertainty_pct"] is None and figures["power_uncertainty_pct"] is None
