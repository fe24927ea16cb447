"""The measurement protocol's statistics: repetitions → value, uncertainty, stability; phases' shape;
interference verdicts. Pure functions on known inputs (nothing here times code for its own sake)."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from infbench.measure import interference, repetitions, statistics, timing


def test_median_ci_contains_median_and_narrows_with_n():
    rng = np.random.default_rng(0)
    small, large = rng.normal(10, 1, 20), rng.normal(10, 1, 2000)
    a, b = statistics.median_interval(small), statistics.median_interval(large)
    assert a.low <= np.median(small) <= a.high and b.low <= np.median(large) <= b.high
    assert b.high - b.low < a.high - a.low
    assert a.coverage >= 0.95 and b.coverage >= 0.95
    # the range of 5 covers the median 93.75% of the time, not 95%
    assert statistics.median_interval([1, 2, 3, 4, 5]).coverage == pytest.approx(0.9375)


def test_identical_repetitions_are_stable_with_the_within_interval_as_uncertainty():
    tp = repetitions.combine([100.0, 100.0, 100.0], [0.01, 0.02, 0.03])
    assert tp["value"] == 100.0 and tp["between_rel"] == 0.0
    assert tp["uncertainty_rel"] == pytest.approx(0.02)  # the median within-repetition interval
    assert repetitions.verdict(tp, 0.05, 3) == "stable"


def test_interval_of_the_median_from_order_statistics():
    # Coverage 1 - 2·P(Bin(n, ½) < k) reaches 95% with k = 2 first at n = 9 (96.1%), k = 3 at n = 12 (96.1%).
    assert [statistics.median_rank(n) for n in (3, 5, 8, 9, 11, 12, 15)] == [1, 1, 1, 2, 2, 3, 4]
    tp = repetitions.combine([94.0, 100.0, 106.0], [0.001] * 3)
    assert (tp["low"], tp["high"]) == (94.0, 106.0)  # below 9 repetitions: their range
    assert tp["between_rel"] == pytest.approx(0.06) == tp["uncertainty_rel"]


def test_one_slow_repetition_of_five_no_longer_inflates_the_interval():
    """The issue's quiet torch fp32 64×32 cell: 1177, 1115, 762, then extras 506, 857. The t·s interval
    printed ±97%; the order-statistic one reaches no further than the farthest repetition."""
    tp = repetitions.combine([1177.0, 1115.0, 762.0, 506.0, 857.0], [0.05] * 5)
    assert tp["value"] == 857.0
    assert tp["uncertainty_rel"] == pytest.approx((857 - 506) / 857)  # 41%: no ± above 50%
    assert tp["uncertainty_rel"] <= repetitions.MAX_PRINTED
    assert repetitions.verdict(tp, 0.05, 3) == "unstable"


def test_from_nine_repetitions_one_outlier_moves_the_interval_little():
    calm = [100.0, 101.0, 99.0, 100.5, 99.5, 100.2, 99.8, 100.7, 99.3]
    outlier = [*calm[:-1], 40.0]  # one process landed 60% slow
    assert statistics.half_width_rel(calm) == pytest.approx(0.007)  # [99.3, 100.7]: the extremes drop out (k = 2)
    assert statistics.half_width_rel(outlier) == pytest.approx(0.010)  # [99.0, 100.7]: the 40 is not in it
    assert repetitions.verdict(repetitions.combine(outlier, [0.01] * 9), 0.05, 3) == "stable"


def test_stable_means_the_interval_is_within_the_tolerance():
    tp = repetitions.combine([94.0, 100.0, 106.0], [0.001] * 3)
    assert repetitions.verdict(tp, 0.05, 3) == "unstable"  # ±6%
    assert repetitions.verdict(tp, 0.07, 3) == "stable"
    noisy_windows = repetitions.combine([100.0, 100.0, 100.0], [0.08] * 3)
    assert repetitions.verdict(noisy_windows, 0.05, 3) == "unstable"  # each repetition's windows disagree
    wide = repetitions.combine([100.0, 40.0, 170.0], [0.01] * 3)
    assert wide["uncertainty_rel"] > repetitions.MAX_PRINTED
    assert repetitions.verdict(wide, 1.0, 3) == "unstable"  # never stable with a ± above 50%, whatever the tolerance


def test_drift_floor_is_the_typical_cells_interval_and_one_noisy_cell_does_not_set_it():
    cells = [[100.0, 100.0 + d, 100.0 - d] for d in range(1, 10)]  # intervals ±1% … ±9%
    assert repetitions.drift_floor(cells) == pytest.approx(0.05)
    noisy_torch = [857.0, 1177.0, 506.0]  # ±41%: its own process's noise
    assert repetitions.drift_floor([*cells, noisy_torch]) == pytest.approx(0.05)  # lower median: unchanged
    assert repetitions.drift_floor([[100.0, 102.0, 98.0], noisy_torch]) == pytest.approx(0.02)
    assert repetitions.drift_floor([[100.0]]) is None


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


def test_on_the_cpu_a_slow_canary_alone_is_the_machines_slow_phase_not_a_disturbance():
    limits = {"max_slowdown": 1.3, "max_foreign_cores": 0.25}
    assert interference.disturbance(5.0, 9.0, 5.0, 0.0, **limits, device="cpu") is None  # kept
    assert interference.canary_slowdowns(5.0, 9.0, 5.0, 1.3) == ["canary at the end 1.8× its quiet time"]
    busy = interference.disturbance(5.0, 9.0, 5.0, 0.9, **limits, device="cpu")
    assert busy == "other processes used 0.90 cores"  # what other processes do still is one
    assert "canary at the end 1.8×" in interference.disturbance(5.0, 9.0, 5.0, 0.0, **limits, device="cuda")


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


def test_a_larger_batch_times_latency_s_and_keeps_only_the_percentiles_it_has_batches_for():
    policy = timing.TimingPolicy(
        warmup_s=0.01, window_s=0.01, window_iterations=1, windows=3, latency_s=0.05, latency_iterations=100
    )
    slow = lambda: time.sleep(0.004)  # noqa: E731  (about 12 batches in latency_s)
    one = timing.latencies(slow, lambda: None, policy, batch_size=1)
    assert one["iterations"] >= 100 and one["p99_ms"] is not None  # a request's p99: its 100 batches
    many = timing.latencies(slow, lambda: None, policy, batch_size=32)
    assert 10 <= many["iterations"] < 100  # latency_s, and at least the 10 batches a p90 needs
    assert many["p50_ms"] > 0 and many["p90_ms"] is not None and many["p99_ms"] is None


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
    its power) and prints beside it the same interval as the throughput's, from the repetitions."""
    from infbench.bench.combine import cell_figures
    from infbench.core.cell import Cell

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
    # n = 3: the repetitions' range around the median, its farther end: 2 of 20 mJ, 42 of 400 W
    assert figures["energy_uncertainty_pct"] == pytest.approx(100 * 2 / 20)
    assert figures["power_uncertainty_pct"] == pytest.approx(100 * 42 / 400)
    assert (figures["throughput_min_img_s"], figures["throughput_max_img_s"]) == (19900.0, 20100.0)
    assert figures["stability"] == "stable"  # ±0.5%
    # no NVML (a CPU cell, or NVML missing): no energy, so no interval either
    for r in runs:
        r["nvml"] = {"energy_mj_per_image": None, "power_w": None}
    figures = cell_figures(cell, runs, tolerance=0.05, min_repetitions=3)
    assert figures["energy_uncertainty_pct"] is None and figures["power_uncertainty_pct"] is None


def test_planned_repetitions_replace_disturbed_ones_only():
    """A wide interval draws on the run's adaptive budget, not on a fixed extra share of every cell;
    max_extra only replaces disturbed repetitions."""
    from infbench.bench.repeat import _planned_left

    policy = {"repetitions": 5, "max_extra": 2}
    quiet, disturbed = {"disturbed": False}, {"disturbed": True}
    assert _planned_left([quiet] * 4, policy)
    assert not _planned_left([quiet] * 5, policy)  # however wide: the budget's business (bench._draw)
    assert _planned_left([quiet] * 4 + [disturbed], policy)
    assert not _planned_left([quiet] * 3 + [disturbed] * 4, policy)  # 5 + 2 replacements spent
