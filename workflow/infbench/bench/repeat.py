"""The repetition loop of a cell and its checks: each repetition held against the interference signals
(disturbed ones replaced), more repetitions while a comparison the findings make with this cell is undecided
(measure/statistics.py) and the run's adaptive budget grants their time: a cell whose own interval is wide
but whose comparisons are decided measures no more; undecided headline comparisons draw first."""

from __future__ import annotations

import json
import statistics
from dataclasses import asdict
from pathlib import Path

from infbench.backends.registry import BASELINE
from infbench.bench.combine import combined_throughput
from infbench.bench.gpu_slots import probe_mismatch
from infbench.bench.launch import run_repetition
from infbench.core.cell import Cell
from infbench.core.integrity import DamagedInput
from infbench.measure import early_stop, repetitions
from infbench.measure import statistics as st
from infbench.measure.budget import Ledger
from infbench.measure.interference import canary_slowdowns, disturbance, spare_cores, wait_until_quiet


def load_repetitions(cell: Cell, paths: list[Path]) -> list[dict]:
    """Repetitions measured by earlier jobs (`record_repetition`), in the order they were measured."""
    reps = []
    for path in paths:
        try:
            rep = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise DamagedInput(path, "bench_repetition", f"not a repetition result: {exc}") from exc
        if rep.get("cell") != asdict(cell):
            raise DamagedInput(path, "bench_repetition", f"it is a repetition of another cell ({rep.get('cell')})")
        reps.append(rep)
    return sorted(reps, key=lambda r: r["started"])


def repetition_summary(rep: dict) -> dict:
    """What the result keeps of each repetition (the full detail stays in the cell's log)."""
    keep = ("status", "error", "disturbed", "canary_before_ms", "canary_after_ms", "foreign_cores", "spare_cores")
    keep += ("load_s", "read_s", "gpu_wait_s", "compile_cache", "adaptive", "quiet_wait_s", "reshaped_from", "slowed")
    # where a repetition's time went (benchmarks/wall_time.py): start → load → first batch, warm-up → measured
    keep += ("load_started_at", "first_batch_s", "measure_started_at", "warmup_wall_s", "measure_ended_at")
    out = {k: rep.get(k) for k in (*keep, "started", "ended", "process_s", "repetition")}
    if rep.get("gpu"):
        out["gpu_uuid"] = rep["gpu"].get("uuid")
    if rep.get("status") == "ok":
        out["throughput_img_s"] = rep["throughput"]["img_s"]
        out["throughput_ci95_rel"] = rep["throughput"]["ci95_rel"]
        out["windows_img_s"] = rep["throughput"]["windows_img_s"]
        out["latency_ms_p50"] = rep["latency"]["p50_ms"]
        out["latency_ms_p99"] = rep["latency"]["p99_ms"]
        out["host_issue_fraction"] = rep["latency"]["host_issue_fraction"]
    return out


def _quiet_canary_ms(probe: dict, rep: dict) -> float | None:
    """The probe's quiet canary time, unless the probe ran on another GPU model than `rep`."""
    return None if probe_mismatch(probe, rep.get("gpu")) else probe.get("canary_ms")


def repeat(
    cell: Cell, args: dict, timeout_s: float, probe: dict, earlier: list[dict] = (), ledger: Ledger | None = None
) -> tuple[list[dict], dict | None]:
    """Repetitions until `repetitions` undisturbed ones give an interval within the tolerance:
    (every repetition run, the failure that stopped them or None). `earlier`: repetitions already
    measured (by their own jobs), taken first. A disturbed repetition is replaced (up to `max_extra`);
    a cell still too wide measures more while the run's `ledger` grants their time (adaptive
    repetitions, measure/budget.py), up to MAX_REPETITIONS."""
    policy = args["repetitions"]
    runs: list[dict] = []
    pending = list(earlier)
    while True:
        drawn = None
        if pending:
            rep = pending.pop(0)
        elif _planned_left(runs, policy) or (drawn := _draw(cell, args, runs, ledger)) is not None:
            waited = _wait_for_quiet(cell, args, ledger)
            # agreement once, in the first repetition (an adaptive one always has earlier ones)
            rep = run_repetition(cell, {**args, "check_agreement": not runs}, timeout_s)
            rep["quiet_wait_s"] = waited
            if drawn is not None:
                ledger.settle(cell.key, drawn, rep["process_s"])
                rep["adaptive"] = True
        else:
            break
        if rep["status"] != "ok":
            return runs, rep
        canary = rep["canary_before_ms"], rep["canary_after_ms"], _quiet_canary_ms(probe, rep)
        limits = args["interference"]["canary_slowdown"], args["interference"]["foreign_cores"]
        rep["disturbed"] = disturbance(
            *canary, rep.get("foreign_cores"), *limits, rep.get("spare_cores") or 0, cell.device
        )
        if cell.device == "cpu":  # the machine's own slow phase: kept, said (measure/interference.py)
            rep["slowed"] = "; ".join(canary_slowdowns(*canary, limits[0])) or None
        runs.append(rep)
        good = [r for r in runs if not r["disturbed"]]
        # a GPU cell whose first two agree well inside the tolerance needs no third (measure/early_stop.py);
        # otherwise the cell stops once its comparisons are decided (undecided())
        needed = early_stop.repetitions_needed(cell.device, runs, args["tolerance"], policy["repetitions"])
        if not pending and len(good) >= needed:
            if needed < policy["repetitions"] or not undecided(cell, good, args):
                break
    return runs, None


# After a wait that found no quiet moment, the run's repetitions start at once for this long (Ledger.busy_recently).
BUSY_MEMORY_S = 60.0


def _wait_for_quiet(cell: Cell, args: dict, ledger: Ledger | None) -> float:
    """Seconds waited for other processes to leave the cores this cell measures on (a repetition the
    cell's job runs itself: a replacement of a disturbed one, an adaptive one), 0 where the run found the
    machine busy for good a moment ago."""
    if ledger is not None and ledger.busy_recently(BUSY_MEMORY_S):
        return 0.0
    spare = spare_cores(cell.device, args["threads"])
    waited, quiet = wait_until_quiet(args["interference"]["foreign_cores"], spare)
    if not quiet and ledger is not None:
        ledger.note_busy()
    return round(waited, 3)


def _planned_left(runs: list[dict], policy: dict) -> bool:
    """Whether a planned repetition is still owed: fewer than `repetitions` undisturbed ones, and a
    disturbed one is replaced at most `max_extra` times. A wide interval is no reason here: the run's
    adaptive budget decides that (`_draw`), so a noisy cell cannot take a fixed extra share of every run."""
    good = sum(not r["disturbed"] for r in runs)
    return good < policy["repetitions"] and len(runs) < policy["repetitions"] + policy["max_extra"]


# At 12 repetitions the median's interval leaves out the three extreme ones at each end (k = 3): a cell
# still wider than the tolerance there has a spread of its own that more repetitions will not narrow.
MAX_REPETITIONS = 12


def _draw(cell: Cell, args: dict, runs: list[dict], ledger: Ledger | None) -> float | None:
    """Seconds drawn from the run's budget for one more repetition of `cell` (its median repetition
    time so far), or None: no budget, the cap reached, or the budget (its part of it) spent."""
    if ledger is None or not runs or len(runs) >= MAX_REPETITIONS:
        return None
    cost = statistics.median(r["process_s"] for r in runs)
    good = [r for r in runs if not r["disturbed"]] or runs
    priority = undecided(cell, good, args) == HEADLINE
    return cost if ledger.draw(cell.key, cost, priority) else None


HEADLINE, OTHER = "headline", "other"


def undecided(cell: Cell, runs: list[dict], args: dict) -> str | None:
    """Whether a comparison the findings make with this cell is still undecided, given the repetitions of
    the cells of its device on disk under `repetitions_root` (the other cells' planned rounds ran before
    this job, rules/common.smk `repetition_priority`): HEADLINE where one of the headline comparisons is
    (this cell against the fastest cell, or at batch 1 the quickest, where it could be either), OTHER where
    only its comparison with the baseline of its size and batch is, None where all are decided. Without
    other cells to compare, the cell's own interval decides (wider than the tolerance: HEADLINE)."""
    own_tput = [r["throughput"]["img_s"] for r in runs]
    others = _device_repetitions(Path(args["repetitions_root"]), cell.device) if args.get("repetitions_root") else {}
    others.pop(cell_key(cell), None)
    if not others:
        stable = repetitions.verdict(combined_throughput(runs), args["tolerance"], len(runs)) == "stable"
        return None if stable else HEADLINE
    tput = {k: [r["throughput"]["img_s"] for r in reps] for k, reps in others.items()}
    # the margin the report will use: the tolerance, or the drift of the run's cells where wider (CPU)
    drift = st.drift_floor([*tput.values(), own_tput]) if cell.device == "cpu" else None
    m = st.margin_of(args["tolerance"], drift)
    if _open(own_tput, max(tput.values(), key=statistics.median), m, True):
        return HEADLINE
    if cell.batch_size == 1:
        p50 = {k: [r["latency"]["p50_ms"] for r in reps] for k, reps in others.items() if k.endswith("x1")}
        own_p50 = [r["latency"]["p50_ms"] for r in runs]
        if p50 and _open(own_p50, min(p50.values(), key=statistics.median), m, False):
            return HEADLINE
    base = f"{BASELINE['backend']}/{BASELINE['precision']}/{cell.device}/{cell.image_size}x{cell.batch_size}"
    if base in tput and _open(own_tput, tput[base], m, True):
        return OTHER
    return None


def _open(own: list[float], leader: list[float], margin: float, higher_is_better: bool) -> bool:
    """Whether the comparison of `own` with the leader's repetitions is undecided (a cell clearly behind the
    leader, or clearly ahead of it, has nothing to gain from more repetitions)."""
    c = st.compare(own, leader, margin, higher_is_better)
    return c is not None and c.verdict == st.UNDECIDED


def cell_key(cell: Cell) -> str:
    """The cell's folder under the repetitions root: backend/precision/device/<size>x<batch>."""
    return f"{cell.backend}/{cell.precision}/{cell.device}/{cell.image_size}x{cell.batch_size}"


def _device_repetitions(root: Path, device: str) -> dict[str, list[dict]]:
    """Every measured repetition under `root` (…/repetitions) of the cells on `device`, by cell folder."""
    out: dict[str, list[dict]] = {}
    for path in root.glob(f"*/*/{device}/*/*.json"):
        try:
            rep = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a damaged repetition is its own cell's business (load_repetitions)
        if rep.get("status") == "ok":
            out.setdefault(str(path.parent.relative_to(root)), []).append(rep)
    return out
