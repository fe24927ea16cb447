"""Where a finished study's wall time went: from its first job to its report, by stage.

  PYTHONPATH=workflow python benchmarks/wall_time.py results/digits/resnet18 [--out PREFIX]

Reads what the run left behind, nothing else:
* Snakemake's metadata (`.snakemake/metadata/`, the default file backend, in the folder holding
  `results/`): each job's rule, start and end. The span runs from the first job's start to the end of
  the report's job (`render_report`; the last job where there is none). Jobs of every rule are listed
  with their count, busy seconds (sum of their durations) and wall seconds (their union on the clock:
  jobs that ran side by side count once). GPU jobs run one at a time (`--resources gpu=1`), so the GPU
  cells' wall seconds against the span show how much of the run the GPU was measuring.
* the cells' result JSONs (`bench/**/*.json`): each repetition's process (started, ended, process_s,
  load_s, and where recorded read_s, gpu_wait_s, load_started_at, first_batch_s, measure_started_at,
  warmup_wall_s, measure_ended_at), which split a repetition into process start (interpreter, imports,
  reference images, CUDA context, canary), host read of the artifact, wait for the GPU, load, first batch
  (compilation, autotuning), agreement check and inputs, warm-up, measurement (throughput and energy
  windows, latency) and exit (closing canary, process end);
  and the jobs' own time around the measuring processes (a repetition's job, rule bench_repetition; the
  cell's job, which combines them and runs any extra repetition itself).

Every job recorded in the folder counts, also those of an earlier run (a checkpoint trained last week moves
the start back): measure a study in a folder of its own. Prints a Markdown breakdown; with --out writes
PREFIX.md and PREFIX.json. Never writes under results/.
"""

from __future__ import annotations

import argparse
import base64
import json
import statistics
import sys
from collections import defaultdict
from pathlib import Path

REPORT_RULE = "render_report"
# the split of one repetition, in order, as (key, label)
PHASES = (
    ("start", "process start (interpreter, imports, reference images, CUDA context, NVML, canary)"),
    ("read", "artifact read into host memory (the host part of the load, before the GPU is taken)"),
    ("gpu_wait", "waiting for the GPU (another repetition measuring; the job's imports and reads were done)"),
    ("load", "load / build on the device (host module → runnable model)"),
    ("first_batch", "first batch (lazy init, compilation, autotuning)"),
    ("checks", "agreement check and inputs"),
    ("warmup", "warm-up (until two windows agree)"),
    ("measure", "measurement (throughput and energy windows, latency)"),
    ("exit", "closing canary, memory figures, process exit"),
    ("unsplit", "start + measurement, not split (results before the split was recorded)"),
)


def snakemake_jobs(workdir: Path) -> list[dict]:
    """One entry per job ({rule, start, end, outputs}) from Snakemake's file metadata."""
    root = workdir / ".snakemake" / "metadata"
    jobs: dict[tuple, dict] = {}
    for path in root.rglob("*") if root.is_dir() else []:
        if not path.is_file() or path.name.startswith("@"):
            continue  # a long name's earlier parts are folders named "@…"; the record is the last part
        parts = [p.removeprefix("@") for p in path.relative_to(root).parts]
        try:
            record = json.loads(path.read_text())
            target = base64.urlsafe_b64decode("".join(parts).encode()).decode()
        except (ValueError, OSError):
            continue
        start, end = record.get("starttime"), record.get("endtime")
        if record.get("incomplete") or start is None or end is None:
            continue
        # one record per output: a job's outputs share its job_hash; start and end may differ by a little
        key = (record.get("rule"), record.get("job_hash") or start)
        job = jobs.setdefault(key, {"rule": record.get("rule"), "start": start, "end": end})
        job["start"], job["end"] = min(job["start"], start), max(job["end"], end)
        job.setdefault("outputs", []).append(target)
    return sorted(jobs.values(), key=lambda j: j["start"])


def union_s(intervals: list[tuple[float, float]]) -> float:
    """Seconds covered by at least one interval."""
    total, reach = 0.0, None
    for start, end in sorted(intervals):
        if reach is None or start > reach:
            total += end - start
            reach = end
        elif end > reach:
            total += end - reach
            reach = end
    return total


def repetition_phases(rep: dict) -> dict[str, float]:
    """A repetition's seconds per phase (PHASES' keys); what it did not record stays unsplit."""
    process, load = rep.get("process_s") or 0.0, rep.get("load_s") or 0.0
    keys = ("load_started_at", "first_batch_s", "measure_started_at", "warmup_wall_s", "measure_ended_at")
    if any(rep.get(k) is None for k in (*keys, "started")):
        return {"load": load, "unsplit": max(0.0, process - load)}
    wait, read = rep.get("gpu_wait_s") or 0.0, rep.get("read_s") or 0.0
    load -= read  # load_s holds the host read too (time to first inference); here each in its place
    start = max(0.0, rep["load_started_at"] - rep["started"] - wait - read)
    first, warm = rep["first_batch_s"], rep["warmup_wall_s"]
    checks = max(0.0, rep["measure_started_at"] - rep["load_started_at"] - load - first)
    measure = max(0.0, rep["measure_ended_at"] - rep["measure_started_at"] - warm)
    return {
        "start": start,
        "read": read,
        "gpu_wait": wait,
        "load": load,
        "first_batch": first,
        "checks": checks,
        "warmup": warm,
        "measure": measure,
        "exit": max(0.0, process - start - read - wait - load - first - checks - warm - measure),
    }


def cells(study: Path) -> list[tuple[Path, dict]]:
    found = []
    for path in sorted((study / "bench").rglob("*.json")):
        try:
            result = json.loads(path.read_text())
        except (ValueError, OSError):
            continue
        if isinstance(result, dict) and "cell" in result:
            found.append((path, result))
    return found


def breakdown(study: Path) -> dict:
    study = study.resolve()
    workdir = study.parents[2] if study.parent.parent.name == "results" else study.parent
    jobs = [j for j in snakemake_jobs(workdir) if any(o.startswith("results/") for o in j["outputs"])]
    results = cells(study)
    out: dict = {"study": str(study), "jobs": len(jobs), "cells": len(results)}
    if jobs:
        first = min(j["start"] for j in jobs)
        report = [j for j in jobs if j["rule"] == REPORT_RULE]
        last = max(j["end"] for j in report) if report else max(j["end"] for j in jobs)
        out["span_s"] = last - first
        out["span_ends_at"] = REPORT_RULE if report else "the last job (no report job recorded)"
        rules = defaultdict(list)
        for j in jobs:
            rules[j["rule"]].append((j["start"], j["end"]))
        out["rules"] = {
            rule: {
                "jobs": len(iv),
                "busy_s": sum(e - s for s, e in iv),
                "wall_s": union_s(iv),
                "share_of_span": union_s(iv) / out["span_s"] if out["span_s"] else None,
            }
            for rule, iv in sorted(rules.items(), key=lambda kv: -union_s(kv[1]))
        }
    phases: dict[str, float] = defaultdict(float)
    per_backend: dict[str, dict] = defaultdict(
        lambda: {"cells": 0, "repetitions": 0, "load_s": [], "first_s": [], "cache": []}
    )
    reps_total = around = rep_jobs = 0.0
    n_reps = 0
    job_s = {o: j["end"] - j["start"] for j in jobs for o in j["outputs"]}
    for path, result in results:
        runs = result.get("repetition_runs") or []
        c = result["cell"]
        folder = f"{study.relative_to(workdir)}/repetitions/{c['backend']}/{c['precision']}/{c['device']}"
        in_cell_job = 0.0  # repetitions the cell's own job ran (all of them before rule bench_repetition)
        b = per_backend[f"{result['cell']['backend']} {result['cell']['precision']} {result['cell']['device']}"]
        b["cells"] += 1
        b["repetitions"] += len(runs)
        for rep in runs:
            if rep.get("compile_cache") is not None:  # a compiling backend: did its first batch reuse the cache?
                b["cache"].append(rep["compile_cache"].get("fxgraph_cache_hit", 0) > 0)
            for k, v in repetition_phases(rep).items():
                phases[k] += v
            n_reps += 1
            reps_total += rep.get("process_s") or 0.0
            # a repetition measured by a job of its own (rule bench_repetition): that job's time around it
            own = job_s.get(f"{folder}/{c['image_size']}x{c['batch_size']}/{rep.get('repetition')}.json")
            if own is not None:
                rep_jobs += max(0.0, own - (rep.get("process_s") or 0.0))
            else:
                in_cell_job += rep.get("process_s") or 0.0
        if result.get("load_s") is not None:
            b["load_s"].append(result["load_s"])
        if result.get("first_inference_s") is not None:
            b["first_s"].append(result["first_inference_s"])
        outside = job_s.get(str(path.relative_to(workdir)), result.get("wall_s"))  # the job, else the cell's own
        if outside is not None:
            around += max(0.0, outside - in_cell_job)
    out["repetitions"] = n_reps
    out["repetition_s"] = reps_total
    out["phases_s"] = {k: phases[k] for k, _ in PHASES if phases.get(k)}
    out["cell_jobs_outside_repetitions_s"] = around
    out["repetition_jobs_outside_their_process_s"] = rep_jobs
    out["backends"] = {
        name: {
            "cells": b["cells"],
            "repetitions": b["repetitions"],
            "median_load_s": statistics.median(b["load_s"]) if b["load_s"] else None,
            "median_first_inference_s": statistics.median(b["first_s"]) if b["first_s"] else None,
            "compile_cache_hits": f"{sum(b['cache'])} of {len(b['cache'])}" if b["cache"] else None,
        }
        for name, b in sorted(per_backend.items())
    }
    return out


def _s(value: float | None) -> str:
    if value is None:
        return "–"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 1 else f"{value:.2f}"


def markdown(b: dict) -> str:
    lines = [f"# Wall time of {b['study']}", ""]
    if "span_s" in b:
        lines += [
            f"From the first job to {b['span_ends_at']}: **{_s(b['span_s'])} s** ({b['span_s'] / 60:.1f} min), "
            f"{b['jobs']} jobs.",
            "",
            "| rule | jobs | busy s | wall s | share of span |",
            "| --- | ---: | ---: | ---: | ---: |",
        ]
        for rule, r in b["rules"].items():
            share = f"{100 * r['share_of_span']:.0f}%" if r["share_of_span"] is not None else "–"
            lines.append(f"| {rule} | {r['jobs']} | {_s(r['busy_s'])} | {_s(r['wall_s'])} | {share} |")
        lines.append("")
    else:
        lines += ["No Snakemake job times found (.snakemake/metadata beside results/).", ""]
    total = b["repetition_s"] or 0.0
    lines += [
        f"{b['cells']} cells, {b['repetitions']} repetitions (each a fresh process), {_s(total)} s in them:",
        "",
        "| phase of a repetition | s | share |",
        "| --- | ---: | ---: |",
    ]
    labels = dict(PHASES)
    for k, v in b["phases_s"].items():
        share = f"{100 * v / total:.0f}%" if total else "–"
        lines.append(f"| {labels[k]} | {_s(v)} | {share} |")
    lines += [
        f"| repetition jobs around their measuring process (`infbench bench --repetition` start, result) | "
        f"{_s(b['repetition_jobs_outside_their_process_s'])} | |",
        f"| cell jobs outside the repetitions they ran (`infbench bench` start, environment, combining) | "
        f"{_s(b['cell_jobs_outside_repetitions_s'])} | |",
        "",
        "| backend precision device | cells | repetitions | median load s | median first inference s "
        "| first batch from the compile cache |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, r in b["backends"].items():
        lines.append(
            f"| {name} | {r['cells']} | {r['repetitions']} | {_s(r['median_load_s'])} | "
            f"{_s(r['median_first_inference_s'])} | {r['compile_cache_hits'] or '–'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("study", type=Path, help="a study folder, e.g. results/digits/resnet18")
    p.add_argument("--out", type=Path, help="write PREFIX.md and PREFIX.json")
    args = p.parse_args(argv)
    if not (args.study / "bench").is_dir():
        sys.exit(f"wall_time: {args.study} has no bench/ folder; give a study folder such as results/digits/resnet18")
    b = breakdown(args.study)
    text = markdown(b)
    print(text, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".md").write_text(text)
        args.out.with_suffix(".json").write_text(json.dumps(b, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
