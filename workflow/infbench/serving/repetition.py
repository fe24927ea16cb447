"""One repetition of a serving cell, in a fresh process (`python -m infbench.serving.repetition ARGS`, started by
command.py with the cell's own arguments): load the variant into its runner, warm it up, run the scenario,
write the repetition's JSON.

Server searches the highest arrival rate whose p99 stays within the bound by bisection over short LoadGen
runs (LoadGen's own peak search runs full-length tests at every step): first at the warm-up's rate (what the
variant sustains with every request busy; where it meets the bound, 1.5 times it, up to three times);
then `server_steps` halvings of the interval between the highest rate that met the bound (or 0) and the
lowest that missed it. Where none of them meets the bound the repetition says
so, with the lowest rate tried and its p99, instead of a rate. Before the search, a SingleStream run (one query at
a time) gives the latency no arrival rate can beat: where its p99 is above the bound, no rate is searched (a
slow variant's search would otherwise spend minutes on ever lower rates, each needing its minimum query count).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from infbench.backends.base import BackendUnavailable
from infbench.backends.registry import spec
from infbench.core import cpus
from infbench.core.cell import Cell
from infbench.core.io import atomic_path
from infbench.serving import loadgen
from infbench.serving.batching import SampleQueue
from infbench.serving.runners import DirectRunner


def serve(a, log_dir: Path) -> dict:
    cell = Cell(a.model, a.backend, a.precision, a.device, a.size, a.max_batch)
    backend = spec(a.backend).instance(
        cell, a.artifact, cpus.threads(a.threads), spec(a.backend).parse_options(a.option, a.device)
    )
    backend.check_available()
    images = np.load(a.reference)["images"]
    samples = SampleQueue(a.max_batch, a.batch_timeout_ms / 1000)
    # SingleStream: the cell's own backend answers each query where LoadGen issues it (its one-at-a-time latency)
    single = a.scenario == "SingleStream"
    runner = DirectRunner(samples, images, backend) if single else backend.serving_runner(samples, images, a.requests)
    runner.start()
    try:
        estimate = runner.warm_up(a.warmup)
        print(f"serve: {runner.describe()}; warm-up {estimate:.1f} samples/s", flush=True)
        base = loadgen.Test(a.scenario, a.duration, a.min_queries, estimate)
        alone = None
        if a.scenario == "Server":  # one query at a time first: no arrival rate beats that latency
            test = loadgen.Test("SingleStream", a.duration, a.min_queries, estimate)
            alone = loadgen.run(runner, test, len(images), log_dir / "Server-alone")
            print(f"serve: one query at a time: p99 {alone['p99_ms']:.2f} ms", flush=True)
            runs = (
                []
                if alone["p99_ms"] > a.bound_ms
                else search(runner, base, estimate, a.bound_ms, a.server_steps, len(images), log_dir)
            )
            best = max((r for r in runs if r["within_bound"]), key=lambda r: r["target_rate"], default=None)
        else:
            runs = [loadgen.run(runner, base, len(images), log_dir / a.scenario)]
            best = runs[0]
    finally:
        runner.stop()
    return {
        "status": "ok",
        "runner": runner.describe(),
        "warmup_samples_per_s": estimate,
        "alone": alone,
        "runs": runs,
        "best": best,
    }


GROWTH, GROWTH_STEPS = 1.5, 3  # above the warm-up's rate: at most 3.4 times it


def search(runner, base: loadgen.Test, estimate: float, bound_ms: float, steps: int, samples: int, log_dir: Path):
    """The Server runs of the search (module doc), in the order they ran."""
    runs = []

    def at(rate: float) -> bool:
        test = loadgen.Test(**{**vars(base), "target_rate": rate, "bound_ms": bound_ms})
        run = loadgen.run(runner, test, samples, log_dir / f"Server-{len(runs) + 1}-{rate:.1f}")
        runs.append(run)
        print(f"serve: Server at {rate:.1f}/s: p99 {run['p99_ms']:.2f} ms, within bound: {run['within_bound']}")
        return run["within_bound"]

    low, high = 0.0, estimate
    for _ in range(GROWTH_STEPS):  # the warm-up's rate met the bound: a higher one may too
        if not at(high):
            break
        low, high = high, high * GROWTH
    else:
        return runs
    for _ in range(steps):
        middle = (low + high) / 2
        if at(middle):
            low = middle
        else:
            high = middle
    return runs


def main(argv: list[str]) -> int:
    from infbench.serving.command import parser

    a = parser().parse_args(argv)
    try:
        result = serve(a, a.logs / f"rep{a.repetition}")
    except BackendUnavailable as exc:
        result = {"status": "unavailable", "error": str(exc)}
    with atomic_path(a.out) as tmp:
        tmp.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
