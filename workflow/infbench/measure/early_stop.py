"""A GPU cell that needs no third repetition (issue 36).

GPU-bound cells agree within 0.1-1% between processes on the H100 (2026-11-25), while launch-bound eager
cells spread 13-32%. So a cell on a GPU plans two repetition jobs (rules/bench.smk); where those two and
their windows agree well inside the tolerance (their interval and each one's windows' at most AGREE_SHARE
of it), the cell stops there. Otherwise it measures the rest of `bench.repetitions` and, still too wide, the adaptive
extras, as every CPU cell does. The CPU keeps all its planned repetitions: its processes share the
machine's drift, so two that agree by chance say little about the next.
"""

from __future__ import annotations

EARLY_DEVICES = frozenset({"cuda"})
EARLY_REPETITIONS = 2
# "Well inside": the interval of two repetitions is half their range, so at a 5% tolerance they agree
# within about 4% of each other (and each one's windows within 2%).
AGREE_SHARE = 0.4


def planned_jobs(device: str, repetitions: int) -> int:
    """Repetition jobs planned for a cell on `device`, before its cell job judges them."""
    return min(repetitions, EARLY_REPETITIONS) if device in EARLY_DEVICES else repetitions


def repetitions_needed(device: str, runs: list[dict], tolerance: float, planned: int) -> int:
    """Undisturbed repetitions the cell needs: EARLY_REPETITIONS on a GPU whose first two (none
    disturbed, none after them) agree within AGREE_SHARE of `tolerance`, else `planned`."""
    if device not in EARLY_DEVICES or len(runs) != EARLY_REPETITIONS or any(r["disturbed"] for r in runs):
        return planned
    from infbench.measure.statistics import half_width_rel  # scipy: not at parse time (grid imports this)

    between = half_width_rel([r["throughput"]["img_s"] for r in runs])
    # each repetition's own windows, not their median: one noisy process is reason enough for a third
    within = [r["throughput"]["ci95_rel"] for r in runs]
    spreads = [between, *within]
    agree = None not in spreads and max(spreads) <= AGREE_SHARE * tolerance
    return min(EARLY_REPETITIONS, planned) if agree else planned
