"""measure/statistics.py: the ratio of two cells' medians, its Hodges–Lehmann interval and the three
verdicts, on repetitions with known ratios; the intervals' real coverage by a fixed-seed simulation."""

from __future__ import annotations

import numpy as np
import pytest

from infbench.measure import statistics as st

SPREAD = [0.97, 0.99, 1.0, 1.01, 1.03]  # five repetitions' relative spread, ±3%


def reps(centre: float, spread=SPREAD) -> list[float]:
    return [centre * s for s in spread]


def test_five_against_five_takes_the_3rd_to_23rd_pairwise_ratio_with_its_real_coverage():
    k, coverage = st.ratio_rank(5, 5)
    assert k == 3 and coverage == pytest.approx(1 - 2 * 4 / 252)  # 96.8%, from the exact U distribution
    a, b = [10.0, 11, 12, 13, 14], [1.0, 2, 3, 4, 5]
    ratios = sorted(x / y for x in a for y in b)
    interval = st.ratio_interval(a, b)
    assert (interval.low, interval.high) == (ratios[2], ratios[22])


def test_known_ratios_give_each_verdict():
    m = 0.05
    faster = st.compare(reps(2700.0), reps(1000.0), m)
    assert faster.verdict == st.BETTER and faster.ratio == pytest.approx(2.7)
    assert faster.low > 1.05 and faster.low <= 2.7 <= faster.high
    assert "is faster than" in faster.text("A", "B") and "2.70×" in faster.text("A", "B")
    slower = st.compare(reps(1000.0), reps(2700.0), m)
    assert slower.verdict == st.WORSE and slower.text("A", "B").startswith("B is faster than A: 2.70×")
    tight = [0.99, 0.995, 1.0, 1.005, 1.01]
    same = st.compare(reps(1010.0, tight), reps(1000.0, tight), m)
    assert same.verdict == st.SAME and "no meaningful difference" in same.text("A", "B")
    close = st.compare(reps(1080.0), reps(1000.0), m)  # 1.08×, the interval straddles 1.05
    assert close.verdict == st.UNDECIDED and "quieter machine" in close.text("A", "B")


def test_lower_is_better_for_latency():
    c = st.compare([1.0, 1.1, 0.9], [3.0, 3.3, 2.7], 0.05, higher_is_better=False)
    assert c.verdict == st.BETTER and c.ratio == pytest.approx(3.0)


def test_a_wider_margin_turns_a_small_difference_into_none():
    a, b = reps(1050.0), reps(1000.0)
    assert st.compare(a, b, 0.05).verdict == st.UNDECIDED
    assert st.compare(a, b, st.margin_of(0.05, 0.119)).verdict == st.SAME  # the drift (±11.9%) sets m


def test_noisy_cells_are_still_decided_where_their_difference_is_large():
    """The issue's openvino int8 32 px batch 1 against batch 32: each cell ±12–38%, ratio about 2.2×."""
    batch1 = [5762.0, 4029.0, 5842.0, 5500.0, 4900.0]
    batch32 = [12478.0, 11000.0, 13100.0, 9900.0, 12700.0]
    c = st.compare(batch32, batch1, st.margin_of(0.05, 0.119))
    assert c.verdict == st.BETTER


def test_one_repetition_is_never_decided():
    assert st.compare([2000.0], [1000.0], 0.05).verdict == st.UNDECIDED
    assert st.compare([], [1000.0], 0.05) is None


def test_the_intervals_cover_what_they_say_in_a_fixed_seed_simulation():
    """Lognormal repetitions (a process lands slow or fast as a whole): the median interval of 5 covers the
    true median about 93.75% of the time, the ratio interval of 5 against 5 the true ratio about 96.8%."""
    rng = np.random.default_rng(34)
    trials, true_ratio = 4000, 1.3
    median_hits = ratio_hits = 0
    for _ in range(trials):
        a = np.exp(rng.normal(np.log(true_ratio), 0.1, 5))
        b = np.exp(rng.normal(0.0, 0.1, 5))
        interval = st.median_interval(b)
        median_hits += interval.low <= 1.0 <= interval.high
        r = st.ratio_interval(a, b)
        ratio_hits += r.low <= true_ratio <= r.high
    median_cover, ratio_cover = median_hits / trials, ratio_hits / trials
    print(
        f"coverage over {trials} trials: median of 5 {median_cover:.3f} (stated 0.9375), "
        f"ratio 5 vs 5 {ratio_cover:.3f} (stated {st.ratio_rank(5, 5)[1]:.3f})"
    )
    assert median_cover == pytest.approx(0.9375, abs=0.015)
    assert ratio_cover >= 0.95
