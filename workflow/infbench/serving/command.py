"""`infbench serve`: one serving cell (model × backend × precision × device × size × scenario), measured by
LoadGen in `--repetitions` fresh processes (repetition.py), combined into figures with intervals like every
other figure of infbench (`interval`), written with every repetition's runs and where their LoadGen logs lie.

The cell's figure: Offline samples/s; SingleStream p90 latency; Server the highest arrival rate whose p99
stays within the bound, with the p50/p90/p99 at that rate (status `unmet` where most repetitions found no
rate within it: the note names the lowest rate tried and its p99).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

from infbench.core.arguments import schema_default
from infbench.core.io import atomic_path
from infbench.core.packages import installed_version
from infbench.measure import repetitions
from infbench.serving import batching
from infbench.serving.loadgen import SCENARIOS

# What each scenario's figure is (the key of a repetition's best run) and its unit.
METRIC = {
    "Offline": ("samples_per_s", "samples/s"),
    "SingleStream": ("p90_ms", "ms"),
    "Server": ("target_rate", "req/s"),
}
LATENCIES = ("p50_ms", "p90_ms", "p99_ms")


def interval(values: list[float]) -> dict:
    """A figure over repetitions: its median, interval and range (the project's one rule for that,
    measure/repetitions.py; one place to change it)."""
    return repetitions.combine(values, [None] * len(values))


# The scenario's options, declared once: config serving.<key> → flag, type, help (defaults: config/schema.yaml).
OPTIONS = {
    "requests_in_flight": ("--requests", int, "requests in flight (0: the runtime's choice)"),
    "max_batch": ("--max-batch", int, "samples a request takes at most"),
    "batch_timeout_ms": ("--batch-timeout-ms", float, "how long a request waits for more samples (ms)"),
    "duration_s": ("--duration", float, "LoadGen's minimum duration (s)"),
    "min_queries": ("--min-queries", int, "LoadGen's minimum query count"),
    "warmup_s": ("--warmup", float, "warm-up before the first LoadGen run (s)"),
    "latency_bound_ms": ("--bound-ms", float, "Server: p99 bound (ms)"),
    "server_steps": ("--server-steps", int, "Server: bisection steps"),
    "repetitions": ("--repetitions", int, "repetitions, each in a fresh process"),
    "timeout_s": ("--timeout", float, "time limit of one repetition (s)"),
}


def options(p: argparse.ArgumentParser) -> None:
    for key, (flag, kind, meaning) in OPTIONS.items():
        p.add_argument(flag, type=kind, default=schema_default(f"serving.{key}", kind), help=meaning)


def rule_args(serving: dict) -> str:
    """The scenario's options of config `serving` as the serve rule passes them."""
    return " ".join(f"{flag} {serving[key]}" for key, (flag, _, _) in OPTIONS.items())


def arguments(p: argparse.ArgumentParser) -> None:
    for flag in ("--model", "--backend", "--precision", "--device"):
        p.add_argument(flag, required=True)
    p.add_argument("--size", type=int, required=True)
    p.add_argument("--scenario", required=True, choices=SCENARIOS)
    for flag in ("--artifact", "--reference", "--logs", "--out"):
        p.add_argument(flag, type=Path, required=True)
    p.add_argument("--threads", type=int, default=0, help="CPU threads in all (0: every core)")
    p.add_argument("--option", action="append", default=[], help="the backend's KEY=VALUE (backend_options)")
    p.add_argument("--repetition", type=int, default=0, help=argparse.SUPPRESS)  # set in a repetition's process
    options(p)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="infbench serve")
    arguments(p)
    return p


def add_parser(sub) -> None:
    s = sub.add_parser("serve", help="a serving cell: LoadGen's scenario against the variant, in fresh processes")
    arguments(s)
    s.set_defaults(func=_command, gpu_stage=True)  # on --device cuda: a GPU slot for the job, its repetitions inside


def _command(a) -> None:
    result = measure(a)
    with atomic_path(a.out) as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    print(
        f"serve: {a.scenario}: {result['status']} {result.get('figure', {}).get('value', '')} {result.get('note', '')}"
    )


def cell_argv(a) -> list[str]:
    """The cell's arguments as a command line (a repetition's process parses them with `parser`)."""
    argv = []
    for action in parser()._actions:
        if not action.option_strings or action.dest in ("help", "out", "repetition"):
            continue
        value = getattr(a, action.dest)
        for v in value if isinstance(value, list) else [value]:
            argv += [action.option_strings[0], str(v)]
    return argv


LOADGEN_MISSING = (
    "MLPerf LoadGen is not installed: pip install -e '.[serving]' (the mlcommons-loadgen wheel), then rerun the report"
)


def measure(a) -> dict:
    """Every repetition in a process of its own, then the cell's figures."""
    if importlib.util.find_spec("mlperf_loadgen") is None:  # the serving extra is not installed
        return {**header(a), "status": "unavailable", "error": LOADGEN_MISSING, "repetitions": []}
    a.max_batch = batching.max_batch(a.scenario, a.max_batch)
    if a.scenario == "SingleStream":  # one query of one sample at a time: the batch-1 cell's variant, no waiting
        a.requests, a.batch_timeout_ms = 1, 0.0
    if a.logs.exists():
        shutil.rmtree(a.logs)  # the logs of this cell's last measurement
    a.logs.mkdir(parents=True)
    reps = []
    for k in range(1, a.repetitions + 1):
        out = a.logs / f"rep{k}.json"
        cmd = [
            sys.executable,
            "-m",
            "infbench.serving.repetition",
            *cell_argv(a),
            "--repetition",
            str(k),
            "--out",
            str(out),
        ]
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=a.timeout)
        except subprocess.TimeoutExpired:
            return failed(a, reps, f"repetition {k} ran past --timeout {a.timeout:g} s")
        sys.stdout.write(proc.stdout)
        sys.stderr.write(proc.stderr)
        if proc.returncode != 0 or not out.exists():
            last = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
            return failed(a, reps, f"repetition {k} failed (exit {proc.returncode}): {last}")
        rep = json.loads(out.read_text())
        if rep["status"] == "unavailable":
            return {**header(a), "status": "unavailable", "error": rep["error"], "repetitions": []}
        reps.append(rep)
    return combined(a, reps)


def header(a) -> dict:
    return {
        "model": a.model,
        "backend": a.backend,
        "precision": a.precision,
        "device": a.device,
        "image_size": a.size,
        "scenario": a.scenario,
        "settings": {
            k: getattr(a, k)
            for k in (
                "requests",
                "max_batch",
                "batch_timeout_ms",
                "duration",
                "min_queries",
                "warmup",
                "bound_ms",
                "server_steps",
                "repetitions",
                "threads",
            )
        },
        "options": a.option,
        "loadgen_version": installed_version("mlcommons-loadgen"),
        "compliant": False,  # short runs (README "Serving")
        "logs": str(a.logs),
    }


def failed(a, reps: list, error: str) -> dict:
    return {**header(a), "status": "failed", "error": error, "repetitions": reps}


def combined(a, reps: list[dict]) -> dict:
    key, unit = METRIC[a.scenario]
    best = [r["best"] for r in reps if r["best"] is not None]
    result = {**header(a), "metric": key, "unit": unit, "runner": reps[0]["runner"], "repetitions": reps}
    if a.scenario == "Server" and len(best) * 2 <= len(reps):  # most repetitions found no rate within the bound
        return {**result, "status": "unmet", "note": unmet_note(reps, len(best), a.bound_ms)}
    result["status"] = "ok"
    result["figure"] = interval([b[key] for b in best])
    result["latency_ms"] = {p: interval([b[p] for b in best]) for p in LATENCIES}
    result["samples_per_s"] = interval([b["samples_per_s"] for b in best])
    if len(best) < len(reps):
        result["note"] = f"{len(reps) - len(best)} of {len(reps)} repetitions found no rate within the bound"
    result["warmup_samples_per_s"] = statistics.median(r["warmup_samples_per_s"] for r in reps)
    return result


def unmet_note(reps: list[dict], met: int, bound_ms: float) -> str:
    """Why a Server cell has no rate: one query alone already takes longer than the bound, or every rate tried
    missed it (the lowest named)."""
    missed = f"{len(reps) - met} of {len(reps)} repetitions"
    runs = [run for r in reps for run in r["runs"]]
    if not runs:
        alone = statistics.median(r["alone"]["p99_ms"] for r in reps)
        return f"one query at a time already takes p99 {alone:.2f} ms, above the {bound_ms:g} ms bound ({missed})"
    lowest = min(runs, key=lambda run: run["target_rate"])
    return (
        f"p99 above the {bound_ms:g} ms bound at every rate tried in {missed}"
        f" (the lowest, {lowest['target_rate']:.1f} req/s: p99 {lowest['p99_ms']:.2f} ms)"
    )
