"""Repetitions of a cell → its value, its interval and a stability verdict.

Each repetition runs in a fresh process (bench.py). A figure's cell value is the median over the
undisturbed repetitions. Its uncertainty is the larger of

* the within-repetition 95% interval (the median of the repetitions' own intervals), and
* the between-repetition interval: the distribution-free 95% confidence interval of the median from
  the repetitions' order statistics, [x(k), x(n+1-k)] with the largest k whose binomial coverage
  1 - 2·P(Bin(n, ½) < k) is at least 95%; below 6 repetitions no k reaches it and the interval is
  their range (coverage 1 - 2^(1-n)). Printed as ±, the farther end from the median.

Why order statistics, not t·s: the noise of a repetition on a shared CPU is not normal (a process
lands slow or fast as a whole: a bare PyTorch loop in six fresh processes gave 622 to 856 img/s),
and one slow repetition among five inflated the t interval to ±97% (t·s grows with the outlier's
square and a t of 2.8-4.3). The order-statistic interval never reaches past the farthest
repetition, and once adaptive repetitions bring n to 9 the extreme ones drop out (k = 2): one
outlier then moves it little. It is exact and deterministic (no resampling), which a bootstrap of
the median is not, and for n < 9 a bootstrap's percentile interval is the range anyway.

A rerun measures its repetitions back to back at one moment of the machine's drift, so it varies
like one new repetition: on the CPU the aggregate step adds the run's drift floor, the interval of the
typical CPU cell of the run (`drift_floor`), so that a cell whose repetitions agreed by chance still
prints the drift that a rerun will see.

The verdict asks whether the interval is narrow: a cell is `stable` when it has enough repetitions
and its interval (the larger of the two above) is within the tolerance; an interval wider than
MAX_PRINTED is never printed as ± (the report shows the repetitions' range) and is `unstable`.
"""

from __future__ import annotations

import math
import statistics

COVERAGE = 0.95
MAX_PRINTED = 0.5  # a ± wider than this says nothing a range would not say better


def median_rank(n: int, coverage: float = COVERAGE) -> int:
    """k of the distribution-free interval [x(k), x(n+1-k)] of the median of n values: the largest k
    whose coverage reaches `coverage`, at least 1 (the range) where none does."""
    k = 1
    while k + 1 <= (n + 1) // 2:
        below = sum(math.comb(n, i) for i in range(k + 1)) / 2**n  # P(Bin(n, ½) ≤ k)
        if 1 - 2 * below < coverage:
            break
        k += 1
    return k


def robust_interval(values: list[float]) -> tuple[float, float]:
    """(low, high): the order-statistic 95% interval of the median of `values` (module doc)."""
    ordered = sorted(values)
    k = median_rank(len(ordered))
    return ordered[k - 1], ordered[len(ordered) - k]


def between_rel(values: list[float]) -> float | None:
    """Relative half-width of the robust interval (the farther end from the median); None with one repetition."""
    if len(values) < 2:
        return None
    centre = statistics.median(values)
    if centre <= 0:
        return None
    low, high = robust_interval(values)
    return max(centre - low, high - centre) / centre


def drift_floor(cells: list[list[float]]) -> float | None:
    """The drift every cell of a machine shares (fraction): the lower median over cells of their own
    intervals (`between_rel`). A shared drift widens every cell's interval, so the typical cell shows
    it; one cell's own noise (a noisy torch process, seen on the 2-core machine with a CV of 18% beside
    ONNX Runtime's 5%) does not set every other cell's floor, as a pooled spread or a pooled largest
    deviation would. None without a cell of two or more repetitions."""
    own = [u for u in (between_rel(values) for values in cells) if u is not None]
    return statistics.median_low(own) if own else None


def combine(values: list[float], within: list[float | None]) -> dict:
    """One figure over repetitions: value, within and between intervals, uncertainty (fractions),
    the robust interval's ends and the repetitions' range."""
    within_known = [w for w in within if w is not None]
    within_rel = statistics.median(within_known) if within_known else None
    between = between_rel(values)
    parts = [p for p in (within_rel, between) if p is not None]
    low, high = robust_interval(values) if values else (None, None)
    return {
        "value": statistics.median(values),
        "repetitions": values,
        "within_rel": within_rel,
        "between_rel": between,
        "uncertainty_rel": max(parts) if parts else None,
        "low": low,
        "high": high,
        "min": min(values),
        "max": max(values),
    }


def verdict(figure: dict, tolerance: float, min_repetitions: int) -> str:
    """'stable' when at least `min_repetitions` repetitions give an interval (robust, and the windows'
    within each repetition) no wider than ± `tolerance` (and never wider than MAX_PRINTED)."""
    u = figure["uncertainty_rel"]
    if len(figure["repetitions"]) < min_repetitions or figure["between_rel"] is None or u is None:
        return "unstable"
    return "stable" if u <= min(tolerance, MAX_PRINTED) else "unstable"
