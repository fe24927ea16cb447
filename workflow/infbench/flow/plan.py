"""The plan before a run: cells per device and backend, how many already have a result, and the time the
rest should take (`infbench plan`; a run and `snakemake -n` print it too).

The time of a cell still to measure is the mean `wall_s` of the results of the same backend and device
already on disk, else a default per device from the config's budgets. It counts the cells only: training,
exports and compiles come on top the first time.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from infbench.flow.progress import duration
from infbench.measure import early_stop
from infbench.study import devices, grid
from infbench.study.config import check_schema, overlay_backends, repetition_seconds

# Seconds a repetition spends beyond its timed phases: process start, imports, loading the model, the
# canaries (a GPU adds CUDA's start-up and cuDNN's autotuning; seen: ~2.5 s here, ~8 s on the H100).
REPETITION_OVERHEAD_S = {"cpu": 2.5, "cuda": 8.0}


def default_cell_s(config: dict, device: str) -> float:
    bench = config["bench"]
    timed = repetition_seconds(bench) - (bench["energy_window_s"] if device == "cpu" else 0)  # energy: GPU only
    # a GPU cell's two planned repetitions (early_stop.py); one whose two disagree costs more
    return early_stop.planned_jobs(device, bench["repetitions"]) * (timed + REPETITION_OVERHEAD_S.get(device, 5.0))


def _wall_s(path: Path) -> float | None:
    try:
        value = json.loads(path.read_text()).get("wall_s")
    except (OSError, ValueError, AttributeError):
        return None
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def plan(config: dict, root: Path = Path(".")) -> list[dict]:
    """One row per (device, backend): cells, done, the seconds left and where that estimate comes from."""
    cells, _ = grid.expand(config)
    groups: dict[tuple[str, str], list] = defaultdict(list)
    for cell in cells:
        groups[(cell.device, cell.backend)].append(cell)
    rows = []
    for (device, backend), members in groups.items():
        done = [c for c in members if (root / grid.bench_result_path(c, grid.results_name(config))).exists()]
        # every result of this backend and device on disk, this grid's or an earlier one's
        models = grid.model_configs(config)
        bench_dirs = [root / grid.study_dir(grid.results_name(config), m) / "bench" / backend for m in models]
        found = sorted(p for d in bench_dirs for p in d.glob(f"*/{device}/*.json"))
        walls = [w for p in found if (w := _wall_s(p)) is not None]
        each = sum(walls) / len(walls) if walls else default_cell_s(config, device)
        source = f"mean of {len(walls)} earlier cell{'s' if len(walls) > 1 else ''}" if walls else "default"
        left = len(members) - len(done)
        rows.append(
            {
                "device": device,
                "backend": backend,
                "cells": len(members),
                "done": len(done),
                "seconds_left": left * each,
                "cell_s": each,
                "estimate": source,
            }
        )
    return rows


def lines(config: dict, root: Path = Path(".")) -> list[str]:
    """The plan as a few lines of text."""
    rows = plan(config, root)
    total = sum(r["cells"] for r in rows)
    done = sum(r["done"] for r in rows)
    left = sum(r["seconds_left"] for r in rows)
    budget = config["bench"].get("extra_budget_s") or 0  # spent only on cells still too wide: an upper bound
    requested = config["grid"]["devices"]
    where = ", ".join(devices.resolve(requested)) + (" (auto)" if requested == devices.AUTO else "")
    out = [
        f"Plan: {total} cells on {where}; {done} done, {total - done} to measure"
        + (f", about {duration(left)} of measuring" if total > done else "")
        + (
            f" plus up to {duration(budget)} of adaptive repetitions (bench.extra_budget_s)"
            if total > done and budget
            else ""
        )
    ]
    width = max(len(r["backend"]) for r in rows) if rows else 7
    for r in rows:
        rest = r["cells"] - r["done"]
        est = f"~{duration(r['seconds_left'])} ({duration(r['cell_s'])} a cell, {r['estimate']})" if rest else "done"
        out.append(f"  {r['device']:<5} {r['backend']:<{width}} {r['cells']:>4} cells  {r['done']:>4} done  {est}")
    summary = devices.summary(requested, config["grid"]["backends"])
    for missing in summary.get("not_installed", []):
        out.append(f"  left out: {missing}")
    for gap in summary.get("unmeasurable", []):
        out.append(f"  not measured: {gap}")
    return out


def main(configfiles: list[Path], root: Path = Path(".")) -> list[str]:
    """`infbench plan`: the config files merged in order, with the schema's defaults filled in."""
    import yaml
    from snakemake.utils import update_config, validate

    config: dict = {}
    for path in configfiles:
        update_config(config, yaml.safe_load(Path(path).read_text()) or {})
    backends = overlay_backends(configfiles, None)  # as the Snakefile: an overlay's backends are the whole map
    if backends is not None:
        config["grid"]["backends"] = backends
    # the checkout's schema (the package sits in its workflow/ folder), else the one in the working directory
    schema = Path(__file__).resolve().parents[3] / "config" / "schema.yaml"
    if not schema.exists():
        schema = Path("config/schema.yaml").resolve()
    check_schema(config, schema)
    validate(config, str(schema), set_default=True)
    return lines(config, root)


def add_parser(sub) -> None:
    """`infbench plan` (for people: its command line is not echoed)."""
    s = sub.add_parser("plan", help="cells per device and backend, how many are done, the time the rest should take")
    s.add_argument("--configfile", type=Path, nargs="+", default=[Path("config/config.yaml")], help="merged in order")
    s.set_defaults(func=lambda a: print("\n".join(main(a.configfile))))
