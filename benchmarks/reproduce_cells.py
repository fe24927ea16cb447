"""Does every number the report printed reproduce within the uncertainty printed beside it?

A benchmark (it times things; run it with nothing else running). Each cell of a finished study is
measured again by hand, writing elsewhere, and its new throughput is held against the value ± the
uncertainty in the report's summary.csv. Prints one row per cell and the share that landed inside.

By default the rerun follows the protocol the workflow measured with: each repetition's command (the
top line of its log, `command: infbench bench … --repetition N`) in a fresh process, in rounds —
repetition 1 of every cell, then repetition 2, … — so a cell's repetitions are separated in time as
in the run; the cell's new value is the median of its undisturbed ones. `--back-to-back` instead runs
each cell's own command, which measures all its repetitions one after another at one moment of the
machine's drift: a harsher test than a rerun of the workflow.

  python benchmarks/reproduce_cells.py                    # in the workflow folder, after `snakemake report`
  python benchmarks/reproduce_cells.py --study results/digits/resnet18 --out reproduce.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl

from infbench.core.arguments import schema_default
from infbench.measure.interference import disturbance


def command(log: Path, out: Path) -> list[str]:
    """The command at the top of a job's log, writing `out` instead."""
    argv = shlex.split(log.read_text().splitlines()[0].removeprefix("command: "))
    argv[argv.index("--out") + 1] = str(out)
    return argv


def back_to_back(log: Path, out: Path) -> float | None:
    """The cell's command, measuring every repetition itself (the repetitions the workflow measured in
    jobs of their own, `--repetition-results`, left out): its throughput."""
    argv = command(log, out)
    if "--repetition-results" in argv:
        start = argv.index("--repetition-results")
        end = next((i for i in range(start + 1, len(argv)) if argv[i].startswith("--")), len(argv))
        del argv[start:end]
    subprocess.run(argv, check=True, capture_output=True)
    return json.loads(out.read_text()).get("throughput_img_s")


def in_rounds(logs: dict[str, list[Path]], tmp: Path) -> dict[str, float | None]:
    """Every cell's repetition commands, repetition 1 of each cell, then 2, …: each cell's median
    throughput over its undisturbed repetitions (all of them if none was quiet)."""
    runs: dict[str, list[dict]] = {name: [] for name in logs}
    for n in range(max(len(v) for v in logs.values())):
        for name, reps in logs.items():
            if n < len(reps):
                out = tmp / "repetition.json"
                subprocess.run(command(reps[n], out), check=True, capture_output=True)
                runs[name].append(json.loads(out.read_text()))
        print(f"round {n + 1} measured", flush=True)
    values, limit = {}, schema_default("bench.foreign_cores")
    for name, rs in runs.items():
        ok = [r for r in rs if r.get("status") == "ok" and r.get("throughput")]
        # disturbed as the workflow judges it by other processes' cores (the canary needs the probe's quiet time)
        good = [r for r in ok if not disturbance(None, None, None, r.get("foreign_cores"), 1, limit)] or ok
        values[name] = statistics.median(r["throughput"]["img_s"] for r in good) if good else None
    return values


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", type=Path, default=Path("results/digits/resnet18"), help="the study's folder")
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    p.add_argument("--back-to-back", action="store_true", help="each cell's repetitions one after another")
    args = p.parse_args(argv)

    summary = pl.read_csv(args.study / "report" / "summary.csv")
    measured = summary.filter(pl.col("throughput_img_s").is_not_null())
    names = [
        f"{r['backend']}/{r['precision']}/{r['device']}/{r['image_size']}x{r['batch_size']}"
        for r in measured.iter_rows(named=True)
    ]
    logs = args.study / "logs"
    with tempfile.TemporaryDirectory(prefix="reproduce-") as tmp:
        if args.back_to_back:
            new = {n: back_to_back(logs / "bench" / f"{n}.log", Path(tmp, "cell.json")) for n in names}
        else:
            reps = {n: sorted((logs / "repetitions" / n).glob("*.log"), key=lambda p: int(p.stem)) for n in names}
            new = in_rounds(reps, Path(tmp))
    rows = []
    for name, r in zip(names, measured.iter_rows(named=True), strict=True):
        u = r["throughput_uncertainty_pct"] / 100
        diff = None if new[name] is None else (new[name] - r["throughput_img_s"]) / r["throughput_img_s"]
        rows.append(
            {
                "cell": name,
                "status": r["status"],
                "printed_img_s": r["throughput_img_s"],
                "printed_pct": 100 * u,
                "rerun_img_s": new[name],
                "diff_pct": None if diff is None else 100 * diff,
                "within": diff is not None and abs(diff) <= u,
            }
        )
        x = rows[-1]
        print(
            f"{name:32s} {x['status']:8s} {x['printed_img_s']:10.1f} ±{x['printed_pct']:5.1f}%  "
            f"rerun {x['rerun_img_s'] or 0:10.1f} ({x['diff_pct'] or 0:+6.1f}%)  {'yes' if x['within'] else 'NO'}"
        )
    inside = sum(r["within"] for r in rows)
    stable = [r for r in rows if r["status"] == "ok"]
    print(f"\n{inside} of {len(rows)} cells ({inside / len(rows):.0%}) reran within the printed uncertainty")
    if stable:
        s_in = sum(r["within"] for r in stable)
        print(f"stable cells: {s_in} of {len(stable)} ({s_in / len(stable):.0%})")
    if args.out:
        args.out.write_text(json.dumps(rows, indent=1))
    return 0 if inside >= 0.9 * len(rows) else 1


if __name__ == "__main__":
    sys.exit(main())
