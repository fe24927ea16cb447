"""Repetitions of a cell → its value, its interval and the cell's own stability label.

Each repetition runs in a fresh process (bench.py). A figure's cell value is the median over the
undisturbed repetitions. Its uncertainty is the larger of

* the within-repetition interval (the median of the repetitions' own windows' intervals), and
* the between-repetition interval: the distribution-free interval of the median from the repetitions'
  order statistics (measure/statistics.py `median_interval`; for 5 repetitions their range, which
  covers the median 93.75% of the time). Printed as ±, the farther end from the median.

Why order statistics, not t·s: the noise of a repetition on a shared CPU is not normal (a process
lands slow or fast as a whole: a bare PyTorch loop in six fresh processes gave 622 to 856 img/s),
and one slow repetition among five inflated the t interval to ±97%. The order-statistic interval
never reaches past the farthest repetition, and once adaptive repetitions bring n to 9 the extreme
ones drop out (k = 2).

A rerun measures its repetitions back to back at one moment of the machine's drift, so it varies
like one new repetition: on the CPU the aggregate step adds the run's drift floor (`drift_floor`) to
the printed ±, so that a cell whose repetitions agreed by chance still prints the drift that a rerun
will see. The label `stable`/`unstable` says whether that ± is within the tolerance: it informs the
reader (a noisy cell), it never gates a finding, which is decided by its comparison
(measure/statistics.py `compare`).
"""

from __future__ import annotations

import statistics

from infbench.measure.statistics import MAX_PRINTED, drift_floor, half_width_rel, median_interval

__all__ = ["MAX_PRINTED", "combine", "drift_floor", "verdict"]


def combine(values: list[float], within: list[float | None]) -> dict:
    """One figure over repetitions: value, within and between intervals, uncertainty (fractions),
    the median interval's ends and coverage, and the repetitions' range."""
    within_known = [w for w in within if w is not None]
    within_rel = statistics.median(within_known) if within_known else None
    between = half_width_rel(values)
    parts = [p for p in (within_rel, between) if p is not None]
    interval = median_interval(values) if values else None
    return {
        "value": statistics.median(values),
        "repetitions": values,
        "within_rel": within_rel,
        "between_rel": between,
        "uncertainty_rel": max(parts) if parts else None,
        "low": interval.low if interval else None,
        "high": interval.high if interval else None,
        "coverage": interval.coverage if interval and len(values) > 1 else None,
        "min": min(values),
        "max": max(values),
    }


def verdict(figure: dict, tolerance: float, min_repetitions: int) -> str:
    """'stable' when at least `min_repetitions` repetitions give an interval (the median's, and the windows'
    within each repetition) no wider than ± `tolerance` (and never wider than MAX_PRINTED)."""
    u = figure["uncertainty_rel"]
    if len(figure["repetitions"]) < min_repetitions or figure["between_rel"] is None or u is None:
        return "unstable"
    return "stable" if u <= min(tolerance, MAX_PRINTED) else "unstable"
