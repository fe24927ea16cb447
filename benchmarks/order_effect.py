"""What the shuffled order of repetitions changes: does a repetition's speed depend on where it ran?

A benchmark (it reads measurements; run it after runs of the default grid, e.g. benchmarks/noisy_pair.py,
which keeps each run's repetitions in noisy_pair_runs/). The cells' repetitions run in rounds, shuffled
within each round (workflow/rules/common.smk, repetition_priority). In a fixed order every cell would run
at the same place in every round, after the same predecessor; whatever that place does to a repetition
would then be part of the cell's figure, the same in every repetition, where no interval can show it.
Shuffled, it lands on each cell now and then: noise that the interval covers.

For each repetition, its deviation from its cell's median in that run (log ratio, printed in %) is grouped
by (1) what ran just before it (the predecessor's backend, and whether it was a heavy cell: batch > 1),
(2) its place in the round (first, middle or last third), and (3) when in the run it ran (first or second
half: the run's drift). Each grouping is tested with scipy.stats.kruskal (do the groups' deviations differ?)
and its groups' mean deviations printed: the bias a fixed order would give the cells placed there.

  python benchmarks/order_effect.py noisy_pair_runs/seed0-quiet-*      # one folder of repetitions per run
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from scipy import stats


def repetitions(folder: Path) -> list[dict]:
    """A run's repetitions in the order they ran: cell (its path), start, throughput."""
    reps = []
    for path in folder.rglob("*.json"):
        r = json.loads(path.read_text())
        img_s = (r.get("throughput") or {}).get("img_s")
        if r.get("status") != "ok" or not img_s:
            continue
        cell = str(path.parent.relative_to(folder))  # backend/precision/device/SIZExBATCH
        reps.append({"cell": cell, "started": r["started"], "img_s": img_s, "rep": int(path.stem)})
    return sorted(reps, key=lambda r: r["started"])


def deviations(reps: list[dict]) -> list[dict]:
    by_cell: dict[str, list[float]] = {}
    for r in reps:
        by_cell.setdefault(r["cell"], []).append(r["img_s"])
    medians = {c: statistics.median(v) for c, v in by_cell.items()}
    rounds: dict[int, list[dict]] = {}
    for r in reps:
        rounds.setdefault(r["rep"], []).append(r)
    place = {}
    for members in rounds.values():
        for i, r in enumerate(members):
            place[id(r)] = ("first", "middle", "last")[min(2, 3 * i // max(1, len(members)))]
    t0, t1 = reps[0]["started"], reps[-1]["started"]
    out = []
    for prev, r in zip([None, *reps[:-1]], reps, strict=True):
        backend, _, _, shape = r["cell"].split("/")
        heavy = prev is not None and not prev["cell"].endswith("x1")
        out.append(
            {
                "dev": math.log(r["img_s"] / medians[r["cell"]]),
                "after": "start" if prev is None else f"{prev['cell'].split('/')[0]} {'b>1' if heavy else 'b1'}",
                "after_heavy": "start" if prev is None else ("after batch>1" if heavy else "after batch 1"),
                "place": place[id(r)],
                "half": "first half" if r["started"] - t0 <= (t1 - t0) / 2 else "second half",
            }
        )
    return out


def grouped(devs: list[dict], key: str) -> str:
    groups: dict[str, list[float]] = {}
    for d in devs:
        if d[key] != "start":
            groups.setdefault(d[key], []).append(d["dev"])
    groups = {k: v for k, v in groups.items() if len(v) >= 3}
    parts = [f"{k}: {100 * (math.exp(statistics.mean(v)) - 1):+.1f}% (n={len(v)})" for k, v in sorted(groups.items())]
    p = stats.kruskal(*groups.values()).pvalue if len(groups) >= 2 else float("nan")
    return f"  by {key:12s} Kruskal–Wallis p = {p:.3f};  " + ";  ".join(parts)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("runs", type=Path, nargs="+", help="folders of repetitions, one per run")
    a = p.parse_args(argv)
    everything = []
    for folder in a.runs:
        devs = deviations(repetitions(folder))
        everything += devs
        spread = statistics.median(abs(d["dev"]) for d in devs)
        print(f"{folder}: {len(devs)} repetitions, median |deviation from the cell's median| {100 * spread:.1f}%")
        for key in ("after_heavy", "after", "place", "half"):
            print(grouped(devs, key))
    if len(a.runs) > 1:
        print(f"all {len(a.runs)} runs together:")
        for key in ("after_heavy", "after", "place", "half"):
            print(grouped(everything, key))
    return 0


if __name__ == "__main__":
    sys.exit(main())
