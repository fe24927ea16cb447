"""The statistics every number and every finding rests on, in one place, on scipy.

* `median_interval`: the distribution-free interval of a median from order statistics, [x(k), x(n+1-k)]
  with the largest k whose coverage 1 - 2·P(Bin(n, ½) < k) reaches 95% (scipy.stats.binom). Below 6
  values no k reaches it and the interval is their range, whose real coverage is 1 - 2^(1-n): 93.75%
  for 5, 75% for 3. The coverage is returned with the interval so that nothing prints "95%" for it.
* `ratio_interval`: the ratio of two cells' medians with the Hodges–Lehmann interval of the pairwise
  ratios a_i / b_j: their k-th smallest to k-th largest, k from the exact null distribution of the
  Mann–Whitney U statistic (scipy.stats.mannwhitneyu): the largest k with P(U < k) ≤ 2.5%. For 5
  repetitions against 5: the 3rd to the 23rd of the 25 ratios, coverage 96.8%. Distribution-free (a
  repetition on a shared CPU lands slow or fast as a whole, not normally), and the repetitions of the
  two cells themselves: two cells of one run share its drift, so no drift floor widens it.
* `compare`: one verdict for a comparison, with the margin m = the larger of `bench.tolerance` and the
  run's measured drift: *better* when the whole interval lies beyond 1 + m, *no meaningful difference*
  when it lies within [1/(1+m), 1+m], *undecided* otherwise (more repetitions or a quieter machine
  would decide it). Criterion.rs, Google Benchmark's compare.py and asv decide a comparison this way,
  none of them by whether each side alone is narrow.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from functools import lru_cache


def _scipy_stats():
    """scipy.stats, imported when first needed: it takes a second to import, and every repetition job's
    process imports this module (bench/cell.py) without computing anything from it."""
    from scipy import stats

    return stats


COVERAGE = 0.95  # the coverage the intervals aim at
DEFAULT_TOLERANCE = 0.05  # bench.tolerance's default, for a summary written without it
MAX_PRINTED = 0.5  # a ± wider than this says nothing a range would not say better


@dataclass(frozen=True)
class Interval:
    low: float
    high: float
    coverage: float  # the real probability that the interval covers what it estimates


@lru_cache(maxsize=256)
def median_rank(n: int, coverage: float = COVERAGE) -> int:
    """k of the interval [x(k), x(n+1-k)] of the median of n values: the largest k whose coverage reaches
    `coverage`, at least 1 (the range) where none does."""
    k = 1
    while k + 1 <= (n + 1) // 2 and 1 - 2 * _scipy_stats().binom.cdf(k, n, 0.5) >= coverage:
        k += 1
    return k


def median_coverage(n: int, k: int) -> float:
    """P(x(k) ≤ median ≤ x(n+1-k)) for n values of any continuous distribution."""
    return float(1 - 2 * _scipy_stats().binom.cdf(k - 1, n, 0.5))


def median_interval(values) -> Interval:
    """The order-statistic interval of the median of `values` (module doc), with its real coverage."""
    ordered = sorted(float(v) for v in values)
    n = len(ordered)
    k = median_rank(n)
    return Interval(ordered[k - 1], ordered[n - k], median_coverage(n, k))


def half_width_rel(values) -> float | None:
    """The median interval's farther end from the median, as a fraction of the median (None: fewer than 2)."""
    if len(values) < 2:
        return None
    centre = statistics.median(values)
    if centre <= 0:
        return None
    interval = median_interval(values)
    return max(centre - interval.low, interval.high - centre) / centre


@lru_cache(maxsize=1024)
def _u_cdf(u: int, n: int, m: int) -> float:
    """P(U ≤ u) under the null for samples of n and m, from scipy's exact Mann–Whitney U distribution:
    two samples are built whose U statistic is u, and its one-sided p-value is that probability."""
    counts, left = [], u
    for _ in range(n):
        counts.append(min(m, left))
        left -= counts[-1]
    x = [c - 0.5 + 1e-3 * i for i, c in enumerate(counts)]  # x_i beats exactly c_i of the y's, no ties
    method = "exact" if n * m <= 400 else "asymptotic"
    return float(_scipy_stats().mannwhitneyu(x, list(range(m)), method=method, alternative="less").pvalue)


@lru_cache(maxsize=256)
def ratio_rank(n: int, m: int, coverage: float = COVERAGE) -> tuple[int, float]:
    """(k, its coverage) of the Hodges–Lehmann interval from the k-th smallest to the k-th largest of the
    n·m pairwise ratios: the largest k with 1 - 2·P(U ≤ k-1) ≥ `coverage`, at least 1 (all of them)."""
    k = 1
    while k + 1 <= (n * m + 1) // 2 and 1 - 2 * _u_cdf(k, n, m) >= coverage:
        k += 1
    return k, max(0.0, 1 - 2 * _u_cdf(k - 1, n, m))


def ratio_interval(a, b) -> Interval:
    """The interval of median(a) / median(b) from the pairwise ratios a_i / b_j (module doc)."""
    ratios = sorted(float(x) / float(y) for x in a for y in b)
    k, coverage = ratio_rank(len(a), len(b))
    return Interval(ratios[k - 1], ratios[len(ratios) - k], coverage)


def margin_of(tolerance: float | None, drift: float | None) -> float:
    """m (a fraction): the larger of the tolerance and the run's measured drift; a difference within it is
    not one the user should act on, and on this machine a rerun may not reproduce one below the drift."""
    return max(tolerance or 0.0, drift or 0.0)


BETTER, WORSE, SAME, UNDECIDED = "better", "worse", "same", "undecided"


@dataclass(frozen=True)
class Comparison:
    """A against B: `ratio` how many times better A is (higher throughput, lower latency), its interval,
    the margin and the verdict (BETTER: A is better, WORSE: B is, SAME: within ±margin, UNDECIDED)."""

    ratio: float
    low: float
    high: float
    coverage: float
    margin: float
    verdict: str
    n_a: int
    n_b: int

    @property
    def decided(self) -> bool:
        return self.verdict != UNDECIDED

    def interval_text(self, inverse: bool = False) -> str:
        """'2.70× (2.50–2.90×)', from B's side where `inverse`; the coverage where it is below 95%."""
        r, lo, hi = (1 / self.ratio, 1 / self.high, 1 / self.low) if inverse else (self.ratio, self.low, self.high)
        cover = "" if self.coverage >= COVERAGE else f", a {100 * self.coverage:.0f}% interval"
        return f"{times(r)} ({times(lo, False)}–{times(hi)}{cover})"

    def text(self, a: str, b: str, better: str = "faster") -> str:
        """The verdict as a reader sees it, naming A and B."""
        m = f"±{100 * self.margin:.3g}%"
        if self.verdict == BETTER:
            return f"{a} is {better} than {b}: {self.interval_text()}"
        if self.verdict == WORSE:
            return f"{b} is {better} than {a}: {self.interval_text(inverse=True)}"
        if self.verdict == SAME:
            return f"no meaningful difference between {a} and {b} (within {m}: {self.interval_text()})"
        if min(self.n_a, self.n_b) < MIN_REPETITIONS:
            why = "more repetitions would decide it"
        else:
            why = "more repetitions or a quieter machine would decide it"
        return f"undecided between {a} and {b}: {self.interval_text()} ({why}; margin {m})"


def times(x: float, unit: bool = True) -> str:
    text = f"{x:.1f}" if x >= 10 else f"{x:.2f}"
    return text + ("×" if unit else "")


MIN_REPETITIONS = 2  # a side with one repetition has no spread: its comparisons stay undecided


def decide(low: float, high: float, margin: float) -> str:
    """The verdict of an interval of a ratio (A over B, >1: A better) against the margin."""
    if low > 1 + margin:
        return BETTER
    if high < 1 / (1 + margin):
        return WORSE
    if low >= 1 / (1 + margin) and high <= 1 + margin:
        return SAME
    return UNDECIDED


def compare(a, b, margin: float, higher_is_better: bool = True) -> Comparison | None:
    """A's repetitions against B's (module doc); None where a side has none."""
    a = [float(x) for x in a or [] if x is not None and math.isfinite(x) and x > 0]
    b = [float(x) for x in b or [] if x is not None and math.isfinite(x) and x > 0]
    if not a or not b:
        return None
    if higher_is_better:
        ratio, interval = statistics.median(a) / statistics.median(b), ratio_interval(a, b)
    else:  # lower is better (latency, energy): B's over A's
        ratio, interval = statistics.median(b) / statistics.median(a), ratio_interval(b, a)
    verdict = decide(interval.low, interval.high, margin)
    if min(len(a), len(b)) < MIN_REPETITIONS:
        verdict = UNDECIDED
    return Comparison(ratio, interval.low, interval.high, interval.coverage, margin, verdict, len(a), len(b))


def drift_floor(cells: list[list[float]]) -> float | None:
    """The drift every cell of a machine shares (fraction): the lower median over cells of their own
    intervals (`half_width_rel`). A shared drift widens every cell's interval, so the typical cell shows
    it; one cell's own noise (a noisy torch process, seen on the 2-core machine with a CV of 18% beside
    ONNX Runtime's 5%) does not set every other cell's floor, as a pooled spread would. None without a
    cell of two or more repetitions."""
    own = [u for u in (half_width_rel(values) for values in cells) if u is not None]
    return statistics.median_low(own) if own else None
