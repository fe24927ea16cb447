"""The same grid measured twice: quiet, then with an intermittent competing CPU load. Do the answers agree?

A benchmark (it times things; run it on a machine with nothing else running). In a workflow folder it
measures the grid (`snakemake report`, every cell's repetitions afresh; training and artifacts kept),
then measures it again while two busy processes are switched on (8-25 s) and off (10-30 s), starting
part-way into the run. It prints both tables side by side and the checks of issue 26:

* no printed ± above 50% in either run (such a cell shows its range and is unstable);
* the headline findings (highest throughput, lowest batch-1 latency, best within the accuracy
  tolerance) name the same variant in both runs, or say in both that the top two do not differ;
* at least 80% of the cells get the same verdict (ok / unstable) in both runs.

  python benchmarks/noisy_pair.py                              # in the workflow folder: the default grid
  python benchmarks/noisy_pair.py --configfile tiny.yaml --cores 2 --load-after 5   # an overlay
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import polars as pl

from infbench.report.findings import findings
from infbench.report.frame import complete, plus_minus, span_of

HEADLINES = ("max_throughput", "min_latency_batch1", "best_within_tolerance")
LOAD_ON_S, LOAD_OFF_S = (8.0, 25.0), (10.0, 30.0)
SAME_VERDICT = 0.8


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
    report = workdir / study / "report"
    cells = [json.loads(path.read_text()) for path in (workdir / study / "bench").rglob("*.json")]
    return {
        "quiet_wait_s": sum(r.get("quiet_wait_s") or 0 for c in cells for r in c.get("repetition_runs", [])),
        "summary": complete(pl.read_csv(report / "summary.csv")),
        "meta": json.loads((report / "meta.json").read_text()),
        "wall_s": time.monotonic() - start,
        "load_s": load_s,
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


def headline(found: list, key: str) -> str:
    """What a headline finding names: a variant, 'no significant difference', or what it could not say."""
    f = next((f for f in found if f.key == key), None)
    if f is None or not f.determined or not (f.data or {}).get("row"):
        return "undetermined"
    if f.data.get("significant") is False:
        return "no significant difference"
    row = f.data["row"]
    return f"{row['backend']} {row['precision']}"


def compare(quiet: dict, noisy: dict) -> list[tuple[str, bool, str]]:
    """The checks: (what, passed, detail)."""
    checks = []
    for label, run in (("quiet", quiet), ("noisy", noisy)):
        rows = run["summary"].to_dicts()
        over = [cell_name(r) for r in rows if "±" in printed(r) and (r["throughput_uncertainty_pct"] or 0) > 50]
        checks.append((f"{label}: no printed ± above 50%", not over, ", ".join(over) or "none"))
    found = {label: findings(run["summary"], run["meta"]) for label, run in (("quiet", quiet), ("noisy", noisy))}
    for key in HEADLINES:
        a, b = headline(found["quiet"], key), headline(found["noisy"], key)
        checks.append((f"headline {key} the same", a == b, f"quiet: {a}; noisy: {b}"))
    q = {cell_name(r): r["status"] for r in quiet["summary"].to_dicts()}
    n = {cell_name(r): r["status"] for r in noisy["summary"].to_dicts()}
    both = sorted(q.keys() & n.keys())
    same = sum(q[c] == n[c] for c in both)
    share = same / len(both) if both else 0.0
    checks.append(
        (f"≥{SAME_VERDICT:.0%} of cells with the same verdict", share >= SAME_VERDICT, f"{same} of {len(both)}")
    )
    return checks


def side_by_side(quiet: dict, noisy: dict) -> str:
    q = {cell_name(r): r for r in quiet["summary"].to_dicts()}
    n = {cell_name(r): r for r in noisy["summary"].to_dicts()}
    side = f"{'img/s':28s} {'verdict':8s} {'reps':>4s}"
    head = f"{'cell (quiet | noisy)':34s} | {side} | {side}"
    lines = [head, "-" * len(head)]
    for name in sorted(q.keys() | n.keys()):
        parts = [f"{name:34s}"]
        for side in (q, n):
            r = side.get(name)
            parts.append(
                f"{printed(r):28s} {r['status']:8s} {r.get('repetitions') or 0:4d}"
                if r
                else f"{'—':28s} {'':8s} {'':4s}"
            )
        lines.append(" | ".join(parts))
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--workdir", type=Path, default=Path.cwd(), help="the workflow folder (default: here)")
    p.add_argument("--study", default="results/digits/resnet18", help="the study's folder in it")
    p.add_argument("--configfile", type=Path, help="a config overlay passed to snakemake (e.g. a tiny grid)")
    p.add_argument("--cores", type=int, default=2)
    p.add_argument("--load-after", type=float, default=60.0, help="seconds into the second run the load starts")
    p.add_argument("--seed", type=int, default=0, help="of the load's on/off times")
    p.add_argument("--out", type=Path, help="write both summaries and the checks as JSON here")
    args = p.parse_args(argv)

    smk = ["--cores", str(args.cores)] + (["--configfile", str(args.configfile.resolve())] if args.configfile else [])
    quiet = run_grid(args.workdir, args.study, smk, None, args.seed)
    noisy = run_grid(args.workdir, args.study, smk, args.load_after, args.seed)
    print(side_by_side(quiet, noisy))
    for label, run in (("quiet", quiet), ("noisy", noisy)):
        s = run["summary"]
        extra = int(s["adaptive_repetitions"].fill_null(0).sum())
        unstable = s.filter(pl.col("status") == "unstable").height
        limited = s.filter(pl.col("drift_limited").fill_null(False)).height
        floor = s["drift_floor_pct"].drop_nulls()
        waited = run.get("quiet_wait_s", 0.0)
        print(
            f"{label}: {run['wall_s']:.0f} s, {extra} adaptive repetitions, {unstable} unstable of {s.height}"
            + (f" ({limited} for the drift floor alone)" if limited else "")
            + (f", drift floor {floor[0]:.1f}%" if len(floor) else "")
            + f", {waited:.0f} s waiting for a quiet machine"
            + (f", load on for {run['load_s']:.0f} s" if run["load_s"] else "")
        )
    # The cells' own verdicts (their repetitions' interval against the tolerance, before the run's floor):
    # how often the two runs agree on those, for the record.
    own = {
        label: {cell_name(r): r["status"] == "ok" or bool(r["drift_limited"]) for r in run["summary"].to_dicts()}
        for label, run in (("quiet", quiet), ("noisy", noisy))
    }
    both = own["quiet"].keys() & own["noisy"].keys()
    same_own = sum(own["quiet"][c] == own["noisy"][c] for c in both)
    print(f"own verdicts (before the drift floor) agree on {same_own} of {len(both)} cells")
    checks = compare(quiet, noisy)
    for what, ok, detail in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {what}: {detail}")
    if args.out:
        rows = {k: run["summary"].to_dicts() for k, run in (("quiet", quiet), ("noisy", noisy))}
        args.out.write_text(json.dumps({"summaries": rows, "checks": checks}, indent=1, default=str))
    return 0 if all(ok for _, ok, _ in checks) else 1


if __name__ == "__main__":
    sys.exit(main())
