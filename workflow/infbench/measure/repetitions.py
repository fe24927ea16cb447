"""Repetitions of a cell → its value, its uncertainty and a stability verdict.

Each repetition runs in a fresh process (bench.py). A figure's cell value is the median over the
undisturbed repetitions. Its uncertainty is the larger of

* the within-repetition 95% interval (the median of the repetitions' own intervals), and
* the between-repetition interval: the half-width of a 95% prediction interval for the value a
  rerun of the cell at some later moment would give, t(0.975, n-1) · s · sqrt(1 + 1/n), with s the
  standard deviation between the repetitions.

The second is what makes a printed ± reproducible: one process cannot show the spread between
processes (the host's state, memory placement, clocks), so only repetitions can measure it. The
repetitions are spread over the run, so s holds the machine's drift over minutes; a rerun by hand
measures its repetitions back to back, at one moment of that drift, so it varies like one new
repetition, not like a median of n (sqrt(1 + 1/n), not sqrt(2/n): measured on the 2-core default,
the narrower form left 2 of 18 reruns outside, benchmarks/reproduce_cells.py).

The verdict asks whether the repetitions agree: a cell is `stable` when every repetition lies within
± tolerance of their median (and the windows inside each repetition agree as closely); a cell whose
repetitions still disagree after the extra repetitions allowed is `unstable`.
"""

from __future__ import annotations

import math
import statistics

# Two-sided 95% quantiles of Student's t by degrees of freedom (1.96 beyond the table).
T975 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def t975(df: int) -> float:
    return T975.get(df, 2.0 if df <= 30 else 1.96)


def rerun_rel(spread_rel: float, df: int, n: int) -> float:
    """Half-width (fraction) of the 95% prediction interval of one later rerun around the median of n
    repetitions, from a relative standard deviation between repetitions with `df` degrees of freedom."""
    return t975(df) * spread_rel * math.sqrt(1 + 1 / n)


def between_rel(values: list[float]) -> float | None:
    """Relative half-width of the 95% prediction interval of a later rerun; None with one repetition."""
    n = len(values)
    if n < 2:
        return None
    centre = statistics.median(values)
    return rerun_rel(statistics.stdev(values) / centre, n - 1, n) if centre > 0 else None


def pooled_spread(cells: list[list[float]]) -> tuple[float, int] | None:
    """(relative standard deviation between repetitions pooled over cells, its degrees of freedom):
    each cell's repetitions relative to their mean, the squared deviations summed over cells;
    None without a cell of two or more repetitions."""
    squares, df = 0.0, 0
    for values in cells:
        mean = statistics.mean(values) if len(values) >= 2 else 0
        if mean <= 0:
            continue
        squares += sum((v / mean - 1) ** 2 for v in values)
        df += len(values) - 1
    return (math.sqrt(squares / df), df) if df else None


def combine(values: list[float], within: list[float | None]) -> dict:
    """One figure over repetitions: value, within and between intervals, uncertainty (fractions)."""
    within_known = [w for w in within if w is not None]
    within_rel = statistics.median(within_known) if within_known else None
    between = between_rel(values)
    parts = [p for p in (within_rel, between) if p is not None]
    return {
        "value": statistics.median(values),
        "repetitions": values,
        "within_rel": within_rel,
        "between_rel": between,
        "uncertainty_rel": max(parts) if parts else None,
    }


def verdict(throughput: dict, tolerance: float, min_repetitions: int) -> str:
    """'stable' when at least `min_repetitions` repetitions all lie within ± `tolerance` of their
    median and their windows agree as closely (within-repetition interval), else 'unstable'."""
    values = throughput["repetitions"]
    if len(values) < min_repetitions:
        return "unstable"
    centre = throughput["value"]
    agree = centre > 0 and all(abs(v - centre) <= tolerance * centre for v in values)
    within = throughput["within_rel"]
    return "stable" if agree and (within is None or within <= tolerance) else "unstable"
