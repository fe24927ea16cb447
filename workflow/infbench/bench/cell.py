"""One benchmark cell: repetitions in fresh processes, separated in time, always a result.

A repetition (`run_repetition`) is a new process (`measure_in_this_process`, run as
`python -m infbench.bench.process`) with its own warm-up. In a workflow each of a cell's first
repetitions is a Snakemake job of its own (`record_repetition`, rule `bench_repetition`),
and jobs are ordered by round, so a cell's repetitions lie minutes apart: a transient state of
the machine (a neighbour's load, a clock, a cache) reaches at most one of them. The cell's job
(`run_cell`) reads them, holds each against the interference signals (measure/interference.py),
re-measures disturbed repetitions and repetitions that disagree, a bounded number of times, and
combines the rest (measure/repetitions.py) into the cell's figures, their uncertainty and its
stability verdict. Run by hand without earlier repetitions, `run_cell` measures all of them.

On CUDA the measuring process takes its GPU slot (infbench/bench/gpu_slots.py) itself, once its imports
are done and its artifact and reference images are read into host memory, before CUDA starts, and
holds it until it ends: several repetition jobs may be under way (`--resources gpu=K`), starting
Python, importing and reading while one of them has the GPU.

It never raises for a failure of the measurement: a crash, an out-of-memory, a timeout or an
exception in a repetition becomes the cell's `status` and `error`, so one bad cell never takes
the grid down.
"""

from __future__ import annotations

import json
import resource
import time
from dataclasses import asdict
from pathlib import Path

from infbench.backends.registry import spec
from infbench.bench.combine import cell_figures
from infbench.bench.gpu_slots import probe_mismatch
from infbench.bench.repeat import repeat, repetition_summary
from infbench.bench.result import SCHEMA_VERSION
from infbench.core.cell import Cell
from infbench.core.integrity import DamagedInput
from infbench.core.io import size_mib, write_json
from infbench.core.packages import installed_version
from infbench.measure import early_stop, environment
from infbench.measure import flops as flop_count
from infbench.measure.budget import Ledger
from infbench.measure.memory import host_peak_mib
from infbench.measure.nvml import empty as nvml_empty


def _read_optional(path) -> dict | None:
    if not path or not Path(path).exists():
        return None
    return json.loads(Path(path).read_text())


def _add_memory(result: dict, artifact: str, earlier: list[dict], runs: list[dict], measured: bool) -> None:
    """The cell's memory section: host peak of every measuring process (this job's and the repetition jobs'),
    the size of what it ran (as its repetitions loaded it; the artifact file where none did); a cell not
    measured gets null device and GPU figures that say why."""
    memory = result.setdefault("memory", {})
    memory["host_peak_mib"] = max(
        [host_peak_mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)]
        + [r["host_peak_mib"] for r in earlier if r.get("host_peak_mib") is not None]
    )
    ran = next((r["artifact_mib"] for r in runs if r.get("artifact_mib") is not None), None)
    memory["artifact_mib"] = ran if ran is not None else size_mib(artifact)
    if not measured:
        memory.setdefault("device_peak_mib", None)
        memory.setdefault("device_note", f"not measured (cell {result['status']})")
        result.setdefault("nvml", nvml_empty(f"not measured (cell {result['status']})"))


def what_ran(cell: Cell, options: dict) -> dict:
    """The backend's options acting on the cell's device (defaults included) and the versions of the runtime it
    imports (and timm for a timm model), with one-line texts of both for the report."""
    backend = spec(cell.backend)
    packages = (*backend.packages_for(cell.precision), *(("timm",) if cell.model.startswith("timm") else ()))
    versions = {name: installed_version(name) for name in packages}
    effective = backend.effective_options(options or {}, cell.device)
    return {
        "options": effective,
        "versions": versions,
        "options_text": ", ".join(f"{k}={v}" for k, v in effective.items()) or "none",
        "versions_text": ", ".join(f"{name} {v}" for name, v in versions.items() if v) or None,
    }


def run_cell(cell: Cell, args: dict, out: Path, timeout_s: float, earlier: list[dict] = ()) -> dict:
    """Measure `cell` in repetitions (fresh processes) and write its result JSON to `out` (atomically).

    `earlier`: repetitions measured by jobs of their own (`record_repetition`), used first.
    """
    result = {
        "schema": SCHEMA_VERSION,
        "cell": asdict(cell),
        "mode": args["mode"],
        "status": "error",
        "stability": None,
        "error": None,
        "environment": environment.fingerprint(args["threads"], cell.device),
        "ran": what_ran(cell, args.get("options")),
        "artifact": args["artifact"],
        "gpu": None,
    }
    started = time.time()
    probe = _read_optional(args.get("probe")) or {}
    budget_s = args.get("extra_budget_s") or 0
    ledger = Ledger(args["budget_ledger"], budget_s) if args.get("budget_ledger") else None
    runs, failure = repeat(cell, args, timeout_s, probe, earlier, ledger)
    # The cell's GPU: the one its (first) repetition held; a probe of another GPU model gives no
    # quiet canary and no peak to compare with.
    gpu = next((r["gpu"] for r in [*runs, failure] if r and r.get("gpu")), None)
    if gpu:
        result["gpu"] = {**gpu, "probe_mismatch": probe_mismatch(probe, gpu)}
        if result["gpu"]["probe_mismatch"]:
            probe = {}
    if failure is not None and failure["status"] == "damaged_input":
        raise DamagedInput(*failure["damaged"])  # no result: the old one stays, the file is rebuilt
    result["repetition_runs"] = [repetition_summary(r) for r in [*runs, *([failure] if failure else [])]]
    if failure is not None:
        result.update(status=failure["status"], error=failure["error"])
    else:
        planned = args["repetitions"]["repetitions"]
        needed = early_stop.repetitions_needed(cell.device, runs, args["tolerance"], planned)
        result.update(cell_figures(cell, runs, args["tolerance"], needed))
        result["status"] = "ok" if result["stability"] == "stable" else "unstable"
        # what the aggregate step judges the cell by again, once the run's drift floor is known
        result["tolerance_pct"] = 100 * args["tolerance"]
        result["planned_repetitions"] = needed  # fewer than bench.repetitions where a GPU cell stopped early
        result["stopped_early"] = needed < planned
        result["agreement"] = next((r["agreement"] for r in runs if r.get("agreement")), None)
        result["canary_quiet_ms"] = probe.get("canary_ms")
    _add_memory(result, args["artifact"], earlier, runs, measured=failure is None)
    # FLOPs per image (counted once per model and size) and utilisation against the device's probe.
    result["flops"] = flop_count.cell_metrics(
        _read_optional(args.get("flops")),
        probe or None,
        cell.precision,
        cell.batch_size,
        result.get("throughput_img_s"),
    )
    # The cell's measuring time: this job's and its repetition jobs' (a plan's estimate per cell).
    result["wall_s"] = round(time.time() - started + sum(r.get("process_s") or 0 for r in earlier), 3)
    write_json(out, result)
    return result
