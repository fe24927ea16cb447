"""The same grid measured three times: quiet, quiet again, and under an intermittent competing CPU load.
Do the comparisons the findings make agree?

A benchmark (it times things; run it on a machine with nothing else running). In a workflow folder it
measures the grid (`snakemake report`, every cell's repetitions afresh; training and artifacts kept) twice
on a quiet machine, then once more while two busy processes are switched on (8-25 s) and off (10-30 s),
starting part-way into the run. It prints the three runs' findings side by side, the comparisons, and the
checks of issue 34 (each over every pair of runs, for the comparisons the findings make: every cell against
the baseline of its size and batch, each batch against the next of its series, each size against the next,
each batch-1 cell's latency against the baseline's; report/findings.py `compare`):

* no comparison decided in opposite directions (A faster in one run, B faster or "no meaningful
  difference" in the other);
* at least 80% of the comparisons decided in both runs;
* the quiet runs' ratio intervals contain the other run's ratio for at least 90% of the comparisons.

Beside the third check it prints what the interval can give: a 96.8% confidence interval of one run's ratio
contains another run's estimate, which has noise of its own, in about 87% of simulated pairs of runs even when
nothing changes between them; stretched by √2 on the log scale (a prediction interval for a rerun) in 95%.

  python benchmarks/noisy_pair.py                              # in the workflow folder: the default grid
  python benchmarks/noisy_pair.py --configfile tiny.yaml --cores 2 --load-after 5   # an overlay
  python benchmarks/noisy_pair.py --again noisy_pair.json      # an earlier --out's runs, decided by this code
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from infbench.measure import statistics as st
from infbench.report.findings import LATENCY, THROUGHPUT, findings
from infbench.report.findings import compare as compare_cells
from infbench.report.frame import complete, measured_cells, plus_minus, span_of

LOAD_ON_S, LOAD_OFF_S = (8.0, 25.0), (10.0, 30.0)
DECIDED_IN_BOTH = 0.8  # share of the comparisons decided in both runs of a pair
CONTAINED = 0.9  # share of the comparisons whose quiet interval contains the other run's ratio
RUNS = ("quiet", "quiet again", "noisy")


def run_grid(workdir: Path, study: str, snakemake_args: list[str], load_after: float | None, seed: int) -> dict:
    """Measure the grid afresh (its cells' results removed first) → {"summary", "meta", "wall_s", "load_s",
    "quiet_wait_s"}."""
    for folder in ("bench", "repetitions"):
        shutil.rmtree(workdir / study / folder, ignore_errors=True)
    cmd = [sys.executable, "-m", "snakemake", "report", *snakemake_args]  # --configfile takes several
    start = time.monotonic()
    with open(workdir / "noisy_pair.log", "a") as log:
        run = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT)
        load_s = 0.0 if load_after is None else intermittent_load(run, load_after, random.Random(seed))
        if run.wait() != 0:
            raise SystemExit(f"snakemake failed ({run.returncode}): see {workdir / 'noisy_pair.log'}")
    return {
        **measured(workdir, study, "noisy" if load_after is not None else "quiet"),
        "wall_s": time.monotonic() - start,
        "load_s": load_s,
    }


def measured(workdir: Path, study: str, label: str) -> dict:
    """What a run of the grid left in the study: its summary, meta, and the time waited for a quiet machine.
    Its repetitions are kept beside the study (the next run removes the study's): order_effect.py reads them."""
    report = workdir / study / "report"
    cells = [json.loads(path.read_text()) for path in (workdir / study / "bench").rglob("*.json")]
    kept = workdir / "noisy_pair_runs" / f"{label}-{int(time.time())}"
    shutil.copytree(workdir / study / "repetitions", kept, dirs_exist_ok=True)
    return {
        "quiet_wait_s": sum(r.get("quiet_wait_s") or 0 for c in cells for r in c.get("repetition_runs", [])),
        "summary": complete(pl.read_parquet(report / "summary.parquet")),
        "meta": json.loads((report / "meta.json").read_text()),
        "wall_s": None,
        "load_s": 0.0,
    }


def intermittent_load(run: subprocess.Popen, after_s: float, rng: random.Random) -> float:
    """Two busy processes switched on and off until `run` ends, from `after_s` in; seconds they were on."""
    on_total, deadline = 0.0, time.monotonic() + after_s
    while run.poll() is None:
        if time.monotonic() < deadline:
            time.sleep(0.2)
            continue
        busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
        on = rng.uniform(*LOAD_ON_S)
        started = time.monotonic()
        try:
            _wait(run, on)
        finally:
            for p in busy:
                p.kill()
                p.wait()
        on_total += time.monotonic() - started
        deadline = time.monotonic() + rng.uniform(*LOAD_OFF_S)
    return on_total


def _wait(run: subprocess.Popen, seconds: float) -> None:
    end = time.monotonic() + seconds
    while run.poll() is None and time.monotonic() < end:
        time.sleep(0.2)


def cell_name(r: dict) -> str:
    return f"{r['backend']} {r['precision']} {r['device']} {r['image_size']}x{r['batch_size']}"


def printed(r: dict) -> str:
    if r.get("throughput_img_s") is None:
        return r["status"]
    return plus_minus(r["throughput_img_s"], r["throughput_uncertainty_pct"], span=span_of(r, "throughput_img_s"))


def comparisons(summary: pl.DataFrame) -> dict[str, st.Comparison]:
    """The comparisons the findings make, by a name that is the same in every run (module doc)."""
    rows = measured_cells(summary).to_dicts()
    by = {(r["model"], r["backend"], r["precision"], r["device"], r["image_size"], r["batch_size"]): r for r in rows}
    out = {}
    for (model, backend, precision, device, size, batch), r in by.items():
        base = by.get((model, "torch", "fp32", device, size, batch))
        if base is not None and base is not r:
            out[f"{cell_name(r)} vs torch fp32 (img/s)"] = compare_cells(r, base, THROUGHPUT)
            if batch == 1:
                out[f"{cell_name(r)} vs torch fp32 (p50)"] = compare_cells(r, base, LATENCY)
        series = sorted(
            b for (m, bk, p, d, s, b) in by if (m, bk, p, d, s) == (model, backend, precision, device, size)
        )
        larger = [b for b in series if b > batch]
        if larger:
            nxt = by[(model, backend, precision, device, size, larger[0])]
            out[f"{cell_name(nxt)} vs batch {batch} (img/s)"] = compare_cells(nxt, r, THROUGHPUT)
        sizes = sorted(
            s for (m, bk, p, d, s, b) in by if (m, bk, p, d, b) == (model, backend, precision, device, batch)
        )
        bigger = [s for s in sizes if s > size]
        if bigger:
            nxt = by[(model, backend, precision, device, bigger[0], batch)]
            out[f"{cell_name(r)} vs {bigger[0]} px (img/s)"] = compare_cells(r, nxt, THROUGHPUT)
    return {k: c for k, c in out.items() if c is not None}


def verdict_text(c: st.Comparison | None) -> str:
    if c is None:
        return "—"
    word = {st.BETTER: "faster", st.WORSE: "slower", st.SAME: "same", st.UNDECIDED: "undecided"}[c.verdict]
    return f"{word} {c.interval_text()}"


def opposite(a: st.Comparison, b: st.Comparison) -> bool:
    """Decided in opposite directions: A faster in one, B faster or no meaningful difference in the other."""
    decided = {a.verdict, b.verdict} - {st.UNDECIDED}
    return len(decided) == 2


def check_pair(name_a: str, a: dict, name_b: str, b: dict) -> list[tuple[str, bool, str]]:
    """The three checks of issue 34 between two runs' comparisons."""
    both = sorted(a.keys() & b.keys())
    flipped = [k for k in both if opposite(a[k], b[k])]
    decided = [k for k in both if a[k].decided and b[k].decided]
    pair = f"{name_a} / {name_b}"
    checks = [
        (f"{pair}: no comparison decided in opposite directions", not flipped, ", ".join(flipped) or "none"),
        (
            f"{pair}: ≥{DECIDED_IN_BOTH:.0%} of the comparisons decided in both",
            bool(both) and len(decided) >= DECIDED_IN_BOTH * len(both),
            f"{len(decided)} of {len(both)} ({len(decided) / max(1, len(both)):.0%})",
        ),
    ]
    if name_a.startswith("quiet"):
        inside, n = containment(a, b)
        checks.append(
            (
                f"{pair}: {name_a}'s intervals contain {name_b}'s ratio for ≥{CONTAINED:.0%}",
                bool(n) and inside >= CONTAINED * n,
                f"{inside} of {n} ({inside / max(1, n):.0%})",
            )
        )
    return checks


def pairs(labels: list[str]) -> list[tuple[str, str]]:
    """Every pair of runs, each once, in the order they ran."""
    return [(a, b) for i, a in enumerate(labels) for b in labels[i + 1 :]]


def check(runs: dict[str, dict]) -> tuple[list[tuple[str, bool, str]], dict[str, dict]]:
    made = {label: comparisons(run["summary"]) for label, run in runs.items()}
    checks = []
    for a, b in pairs(list(runs)):
        checks += check_pair(a, made[a], b, made[b])
    return checks, made


def widened(c: st.Comparison, factor: float) -> tuple[float, float]:
    """c's interval stretched by `factor` about its ratio, on the log scale."""
    r = math.log(c.ratio)
    return math.exp(r - factor * (r - math.log(c.low))), math.exp(r + factor * (math.log(c.high) - r))


def containment(a: dict, b: dict, factor: float = 1.0) -> tuple[int, int]:
    """How many of the comparisons both runs make have b's ratio inside a's interval (stretched by `factor`)."""
    both = sorted(a.keys() & b.keys())
    inside = 0
    for k in both:
        low, high = widened(a[k], factor)
        inside += low <= b[k].ratio <= high
    return inside, len(both)


def simulated_containment(factor: float, trials: int = 4000, cv: float = 0.08, seed: int = 1) -> float:
    """The share of pairs of runs in which run 1's interval (stretched by `factor`) contains run 2's ratio when
    nothing changes between them: two cells of 5 repetitions, log-normal with a CV of `cv`, true ratio 2."""
    rng = random.Random(seed)

    def run():
        a = [2 * math.exp(rng.gauss(0, cv)) for _ in range(5)]
        b = [math.exp(rng.gauss(0, cv)) for _ in range(5)]
        return a, b

    inside = 0
    for _ in range(trials):
        c = st.compare(*run(), margin=0.05)
        a2, b2 = run()
        low, high = widened(c, factor)
        inside += low <= statistics.median(a2) / statistics.median(b2) <= high
    return inside / trials


def what_containment_can_reach(made: dict[str, dict]) -> str:
    """The third check against what the interval can give (the closing note of issue 34): the printed interval is a
    96.8% confidence interval of this run's ratio, not a prediction of another run's estimate, which has its own
    noise; stretched by √2 on the log scale it becomes one (for two equally noisy runs)."""
    lines = []
    for factor, name in ((1.0, "the printed interval (Hodges–Lehmann, 96.8%)"), (math.sqrt(2), "stretched by √2")):
        sim = simulated_containment(factor)
        real = []
        for a, b in pairs(list(made)):
            if a.startswith("quiet"):  # as the third check: a quiet run's intervals
                inside, n = containment(made[a], made[b], factor)
                real.append(f"{a} / {b} {inside} of {n} ({inside / max(1, n):.0%})")
        lines.append(
            f"{name}: contains the other run's ratio in {sim:.1%} of simulated pairs of runs with no change between"
            f" them (4,000 pairs, 5 repetitions a cell, CV 8%, seed 1); here: " + ", ".join(real)
        )
    return "\n".join(lines)


def print_checks(checks: list[tuple[str, bool, str]], made: dict[str, dict]) -> None:
    """The comparisons side by side, the checks, and what the third check can reach."""
    print(side_by_side_comparisons(made) + "\n")
    for what, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {what}: {detail}")
    print("\n" + what_containment_can_reach(made))


def side_by_side_comparisons(made: dict[str, dict]) -> str:
    labels = list(made)
    names = sorted(set().union(*(m.keys() for m in made.values())))
    width = max([len(n) for n in names] + [10])
    lines = [f"{'comparison':{width}s} | " + " | ".join(f"{label:44s}" for label in labels)]
    for name in names:
        lines.append(f"{name:{width}s} | " + " | ".join(f"{verdict_text(made[lb].get(name)):44s}" for lb in labels))
    return "\n".join(lines)


def side_by_side(quiet: dict, noisy: dict) -> str:
    """The cells of two runs, their printed figures, labels and repetitions, side by side."""
    q = {cell_name(r): r for r in quiet["summary"].to_dicts()}
    n = {cell_name(r): r for r in noisy["summary"].to_dicts()}
    side = f"{'img/s':28s} {'label':8s} {'reps':>4s}"
    head = f"{'cell (quiet | noisy)':34s} | {side} | {side}"
    lines = [head, "-" * len(head)]
    for name in sorted(q.keys() | n.keys()):
        parts = [f"{name:34s}"]
        for run in (q, n):
            r = run.get(name)
            parts.append(
                f"{printed(r):28s} {r['status']:8s} {r.get('repetitions') or 0:4d}" if r else f"{'—':28s} {'':13s}"
            )
        lines.append(" | ".join(parts))
    return "\n".join(lines)


def findings_side_by_side(runs: dict[str, dict]) -> str:
    """Each run's findings, one block per finding key in reading order."""
    found = {label: findings(run["summary"], run["meta"]) for label, run in runs.items()}
    out, seen = [], {}
    for f in found[RUNS[0]]:
        k = seen[f.key] = seen.get(f.key, -1) + 1  # the k-th finding of this key in each run
        out.append(f"- {f.key}")
        for label in runs:
            same = [g for g in found[label] if g.key == f.key]
            out.append(f"    {label:12s} {same[k].text if k < len(same) else '—'}")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, default=Path.cwd(), help="the workflow folder (default: here)")
    p.add_argument("--study", default="results/digits/resnet18", help="the study's folder in it")
    p.add_argument("--configfile", type=Path, help="a config overlay passed to snakemake (e.g. a tiny grid)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--load-after", type=float, default=60.0, help="seconds into the second run the load starts")
    p.add_argument("--seed", type=int, default=0, help="of the load's on/off times")
    p.add_argument("--out", type=Path, help="write both summaries and the checks as JSON here")
    p.add_argument(
        "--again",
        type=Path,
        help="no measuring: the three runs of an earlier --out, their comparisons and checks made by this code",
    )
    p.add_argument(
        "--first-run-done",
        action="store_true",
        help="the study as it stands is the first quiet run (e.g. README command 1, just run on a fresh clone)",
    )
    args = p.parse_args(argv)

    smk = ["--cores", str(args.cores)] + (["--configfile", str(args.configfile.resolve())] if args.configfile else [])
    if args.again:
        saved = json.loads(args.again.read_text())["summaries"]
        checks, made = check({label: {"summary": pl.DataFrame(rows)} for label, rows in saved.items()})
        print_checks(checks, made)
        return 0 if all(ok for _, ok, _ in checks) else 1
    runs = {
        "quiet": measured(args.workdir, args.study, "quiet")
        if args.first_run_done
        else run_grid(args.workdir, args.study, smk, None, args.seed),
        "quiet again": run_grid(args.workdir, args.study, smk, None, args.seed),
        "noisy": run_grid(args.workdir, args.study, smk, args.load_after, args.seed),
    }
    print(findings_side_by_side(runs))
    print()
    print(side_by_side(runs["quiet"], runs["noisy"]))
    for label, run in runs.items():
        s = run["summary"]
        extra = int(s["adaptive_repetitions"].fill_null(0).sum())
        unstable = s.filter(pl.col("status") == "unstable").height
        floor = s["drift_floor_pct"].drop_nulls()
        wall = "measured before (--first-run-done)" if run["wall_s"] is None else f"{run['wall_s']:.0f} s"
        print(
            f"{label}: {wall}, {extra} adaptive repetitions, {unstable} noisy of {s.height}"
            + (f", drift floor {floor[0]:.1f}%" if len(floor) else "")
            + f", {run.get('quiet_wait_s', 0.0):.0f} s waiting for a quiet machine"
            + (f", load on for {run['load_s']:.0f} s" if run["load_s"] else "")
        )
    checks, made = check(runs)
    print()
    print_checks(checks, made)
    if args.out:
        rows = {k: run["summary"].to_dicts() for k, run in runs.items()}
        verdicts = {k: {n: verdict_text(c) for n, c in m.items()} for k, m in made.items()}
        args.out.write_text(
            json.dumps({"summaries": rows, "comparisons": verdicts, "checks": checks}, indent=1, default=str)
        )
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
