"""Does every number the report printed reproduce within the uncertainty printed beside it?

A benchmark (it times things; run it with nothing else running). For each cell of a finished
study, the command at the top of the cell's log (`command: infbench bench …`) is run again by
hand in a fresh process, writing elsewhere (it measures all the cell's repetitions, back to
back); the new throughput is held against the value ± the uncertainty in the report's
summary.csv. Prints one row per cell and the share that landed inside.

  python benchmarks/reproduce_cells.py                    # in the workflow folder, after `snakemake report`
  python benchmarks/reproduce_cells.py --study results/digits/resnet18 --out reproduce.json
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import polars as pl


def rerun(log: Path, out: Path) -> dict:
    """The cell's command from its log, writing `out`, measuring every repetition itself (the
    repetitions the workflow measured in jobs of their own, `--repetition-results`, left out)."""
    first = log.read_text().splitlines()[0]
    argv = shlex.split(first.removeprefix("command: "))
    argv[argv.index("--out") + 1] = str(out)
    if "--repetition-results" in argv:
        start = argv.index("--repetition-results")
        end = next((i for i in range(start + 1, len(argv)) if argv[i].startswith("--")), len(argv))
        del argv[start:end]
    subprocess.run(argv, check=True, capture_output=True)
    return json.loads(out.read_text())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", type=Path, default=Path("results/digits/resnet18"), help="the study's folder")
    p.add_argument("--out", type=Path, help="write the rows as JSON here")
    args = p.parse_args(argv)

    summary = pl.read_csv(args.study / "report" / "summary.csv")
    measured = summary.filter(pl.col("throughput_img_s").is_not_null())
    rows = []
    with tempfile.TemporaryDirectory(prefix="reproduce-") as tmp:
        for r in measured.iter_rows(named=True):
            name = f"{r['backend']}/{r['precision']}/{r['device']}/{r['image_size']}x{r['batch_size']}"
            again = rerun(args.study / "logs" / "bench" / f"{name}.log", Path(tmp, "cell.json"))
            u = r["throughput_uncertainty_pct"] / 100
            new = again.get("throughput_img_s")
            diff = None if new is None else (new - r["throughput_img_s"]) / r["throughput_img_s"]
            rows.append(
                {
                    "cell": name,
                    "status": r["status"],
                    "printed_img_s": r["throughput_img_s"],
                    "printed_pct": 100 * u,
                    "rerun_img_s": new,
                    "rerun_status": again["status"],
                    "diff_pct": None if diff is None else 100 * diff,
                    "within": diff is not None and abs(diff) <= u,
                }
            )
            x = rows[-1]
            print(
                f"{name:32s} {x['status']:8s} {x['printed_img_s']:10.1f} ±{x['printed_pct']:5.1f}%  "
                f"rerun {x['rerun_img_s'] or 0:10.1f} ({x['diff_pct'] or 0:+6.1f}%)  {'yes' if x['within'] else 'NO'}",
                flush=True,
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
