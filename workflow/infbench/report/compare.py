"""Another run's results beside this one's (`report.compare`): another machine's, or another study's.

A compared folder is any of
* a `results/bench` folder: its result JSONs, as the cells wrote them;
* a `results` folder: its `bench/` inside;
* a report folder (`results/report`, or a copy of it such as docs/h100/): its `summary.parquet` or
  `summary.csv`, so that a machine's whole run travels as one small table.
Every row is labelled with the run's label, so the report's charts, tables and findings keep the runs apart.
"""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from infbench.core.io import read_json
from infbench.report.frame import SOURCE


def _result_of_row(row: dict) -> dict:
    """A summary row back in the shape of a result JSON (the fields the summary keeps)."""
    result: dict = {}
    for column, path in SOURCE.items():
        value = row.get(column)
        if isinstance(value, float) and math.isnan(value):
            value = None
        node = result
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return result


def _summary_rows(folder: Path) -> list[dict] | None:
    for name, read in (("summary.parquet", pl.read_parquet), ("summary.csv", pl.read_csv)):
        if (folder / name).is_file():
            df = read(folder / name, **({"infer_schema_length": None} if name.endswith("csv") else {}))
            # summaries written before the columns were named by their unit held the same MiB as *_mb
            return df.rename({c: c[:-3] + "_mib" for c in df.columns if c.endswith("_mb")}).to_dicts()
    return None


def result_files(folder: Path) -> list[Path]:
    """The files `load` reads from `folder` (inputs of the report: a changed compared run rebuilds it); none
    where the folder does not exist (`load` says so)."""
    folder = Path(folder)
    summary = [folder / name for name in ("summary.parquet", "summary.csv") if (folder / name).is_file()]
    if summary:
        return summary[:1]
    bench = folder / "bench" if (folder / "bench").is_dir() else folder
    return sorted(bench.rglob("*.json")) if bench.is_dir() else []


def load(folder: Path, label: str | None = None) -> list[dict]:
    """The results of the run in `folder`, each marked with `label` (default: the folder's name)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"report.compare: result folder {folder} does not exist")
    label = label or folder.name
    rows = _summary_rows(folder)
    if rows is not None:
        results = [_result_of_row(r) for r in rows]
    else:
        bench = folder / "bench" if (folder / "bench").is_dir() else folder
        results = [read_json(p) for p in sorted(bench.rglob("*.json"))]
        results = [r for r in results if isinstance(r, dict) and "cell" in r]
    if not results:
        raise FileNotFoundError(
            f"report.compare: {folder} holds no results (a results/bench folder of result JSONs, or a report "
            "folder with summary.parquet or summary.csv)"
        )
    for r in results:
        r["_machine"] = label
    return results
