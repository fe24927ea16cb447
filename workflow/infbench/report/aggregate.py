"""Result JSONs → one summary table (parquet + csv) and the report's metadata (meta.json).

Speedups are computed here, against one named baseline, never inside a cell.

The CPU cells' uncertainties get a floor here too, the one thing a cell cannot know alone: every
CPU cell runs on the same cores, so the machine's drift over the minutes of a run (seen on a 2-core
VM: 10-18% between a run and a rerun a few minutes later, in the same direction for most cells)
reaches all of them. A cell's own spread, from three repetitions, scatters widely around that
common one; over the run's CPU cells it is known well. So each CPU cell's ± is at least the
interval of the run's typical CPU cell (the lower median of their intervals: `drift_floor_pct`,
measure/repetitions.py `drift_floor`), which one noisy cell does not move. A GPU-bound cell
barely sees the host, so GPU cells keep their own (their spreads differ by cell: 0.1% to 30%).

The cell's label is judged again with the floor: a cell is `stable` only where the ± the report prints
is within `bench.tolerance` (a "± 5.3%, stable" at a 5% tolerance said two things at once), and one whose
± would pass 50% is `unstable` (the report shows its range). The label informs; it never gates a
finding: comparisons of two cells of the run (speedups here, every finding in findings.py) are decided
by the cells' own repetitions with the margin max(tolerance, drift) (measure/statistics.py), since both
share the run's drift. On a machine whose drift is wider than
the tolerance no CPU cell is stable, whatever its own repetitions did: measured on a 2-core VM, the
run's floor was 5.3–6.3% in five quiet runs, and judged by their own intervals alone (4–8% for most
cells, around the 5% tolerance) two runs agreed on 10–17 of 20 cells; with the floor they agree on
all, and `drift_limited` marks the cells that are unstable for the machine's drift alone. The floor
comes from the cells judged on their planned number of undisturbed repetitions: the range of the 2–4
quiet ones left to a cell under load is narrower by having fewer, not by a quieter machine (4.4%
against 5.9% in the same grid quiet).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import polars as pl

from infbench.backends.registry import BASELINE, BASELINE_TEXT
from infbench.core.arguments import paths
from infbench.core.io import atomic_path, read_json, write_json
from infbench.measure import statistics
from infbench.measure.probe import peaks_rows
from infbench.measure.repetitions import MAX_PRINTED, drift_floor
from infbench.report import compare as compared
from infbench.report.frame import MEASURED, SCHEMA, SOURCE


def _get(result: dict, path: tuple[str, ...]):
    value = result
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def row_of(result: dict, machine: str | None = None) -> dict:
    row = {column: _get(result, path) for column, path in SOURCE.items()}
    row["drift_limited"] = None  # with_drift_floor
    if machine:
        row["machine"] = machine
    return row


# figure → (its repetitions in a result, its uncertainty column)
DRIFT_FIGURES = {
    "throughput": (("throughput", "repetitions"), "throughput_uncertainty_pct"),
    "latency": (("latency", "p50", "repetitions"), "latency_uncertainty_pct"),
}


def _fully_measured(row: dict) -> bool:
    """Whether the cell's figures rest on its planned number of undisturbed repetitions."""
    return (row["quiet_repetitions"] or 0) >= (row["planned_repetitions"] or 0)


def with_drift_floor(rows: list[dict], results: list[dict]) -> None:
    """Raise each measured CPU cell's ± to its machine's drift floor and judge its verdict by that ±
    (module doc), in place."""
    pairs = zip(rows, results, strict=True)
    cpu = [(row, res) for row, res in pairs if row["device"] == "cpu" and row["status"] in MEASURED]
    for machine in {row["machine"] for row, _ in cpu}:
        mine = [(row, res) for row, res in cpu if row["machine"] == machine]
        judged = [(row, res) for row, res in mine if _fully_measured(row)] or mine
        for figure, (path, column) in DRIFT_FIGURES.items():
            floor = drift_floor([_get(res, path) or [] for _, res in judged])
            if floor is None:
                continue
            for row, _ in mine:
                if figure == "throughput":
                    row["drift_floor_pct"] = 100 * floor
                    _judge_with_floor(row, 100 * floor)
                if row[column] is not None and row[column] < 100 * floor:
                    row[column] = 100 * floor
                if figure == "throughput" and row[column] is not None and row[column] > 100 * MAX_PRINTED:
                    row["status"] = row["stability"] = "unstable"


def _judge_with_floor(row: dict, floor_pct: float) -> None:
    """A stable cell whose ± with the floor passes the tolerance becomes unstable, marked drift-limited."""
    tolerance = row["tolerance_pct"]
    row["drift_limited"] = row["status"] == "ok" and tolerance is not None and floor_pct > tolerance
    if row["drift_limited"]:
        row["status"] = row["stability"] = "unstable"


def summary_table(results: list[dict], accuracy: list[dict] | None = None) -> pl.DataFrame:
    rows = [row_of(r, r.get("_machine")) for r in results]
    with_drift_floor(rows, results)
    schema = {name: SCHEMA[name] for name in (*SOURCE, "drift_limited")}
    # _run: the compared run a row comes from (`report.compare`'s label), null for this run's own cells
    df = pl.DataFrame(rows, schema=schema).with_columns(
        pl.Series("_run", [r.get("_machine") for r in results], pl.Utf8)
    )
    df = with_speedup(with_graph_check(df))
    return with_accuracy(df, accuracy or []).drop("_run")


def with_graph_check(df: pl.DataFrame) -> pl.DataFrame:
    """An eager torch cell is launch-bound, too, where its CUDA-graph replay (same precision, size
    and batch) is faster beyond both uncertainties: the only difference is who launches the kernels."""
    keys = ["machine", "model", "precision", "device", "image_size", "batch_size"]
    graph = df.filter((pl.col("backend") == "torch_cudagraphs") & pl.col("status").is_in(MEASURED)).select(
        *keys,
        (pl.col("throughput_img_s") * (1 - pl.col("throughput_uncertainty_pct") / 100)).alias("_graph_low"),
    )
    eager_high = pl.col("throughput_img_s") * (1 + pl.col("throughput_uncertainty_pct") / 100)
    faster = (pl.col("backend") == "torch") & pl.col("_graph_low").is_not_null() & (pl.col("_graph_low") > eager_high)
    return (
        df.join(graph, on=keys, how="left", nulls_equal=True)
        .with_columns(pl.when(faster).then(True).otherwise(pl.col("launch_bound")).alias("launch_bound"))
        .drop("_graph_low")
    )


def with_speedup(df: pl.DataFrame) -> pl.DataFrame:
    """Throughput over the baseline's (same machine, model, device, size and batch): the ratio of their
    medians, the Hodges–Lehmann interval of their repetitions' pairwise ratios and its verdict with the
    margin max(tolerance, drift) (measure/statistics.py): two cells of one run share its drift, so their
    comparison uses their own repetitions, not the drift floor of the printed ±."""
    keys = ["machine", "model", "device", "image_size", "batch_size"]
    needed = ("throughput_repetitions", "tolerance_pct", "drift_floor_pct")
    df = df.with_columns(pl.lit(None, SCHEMA[c]).alias(c) for c in needed if c not in df.columns)
    base = df.filter(
        (pl.col("backend") == BASELINE["backend"])
        & (pl.col("precision") == BASELINE["precision"])
        & pl.col("status").is_in(MEASURED)
    ).select(
        *keys,
        pl.col("throughput_img_s").alias("_base"),
        pl.col("throughput_repetitions").alias("_base_reps"),
    )
    joined = df.join(base, on=keys, how="left", nulls_equal=True)
    columns = {"speedup_vs_baseline": [], "speedup_low": [], "speedup_high": [], "speedup_verdict": []}
    for row in joined.iter_rows(named=True):
        measured = row["status"] in MEASURED and row["_base"] is not None and row["throughput_img_s"] is not None
        m = statistics.margin_of(
            (row["tolerance_pct"] or 100 * statistics.DEFAULT_TOLERANCE) / 100, (row["drift_floor_pct"] or 0) / 100
        )
        c = statistics.compare(row["throughput_repetitions"], row["_base_reps"], m) if measured else None
        columns["speedup_vs_baseline"].append(row["throughput_img_s"] / row["_base"] if measured else None)
        columns["speedup_low"].append(c.low if c else None)
        columns["speedup_high"].append(c.high if c else None)
        columns["speedup_verdict"].append(c.verdict if c else (statistics.UNDECIDED if measured else None))
    return (
        joined.with_columns(pl.Series(name, values, SCHEMA[name]) for name, values in columns.items())
        .with_columns(
            pl.col("speedup_verdict")
            .is_in([statistics.BETTER, statistics.WORSE, statistics.SAME])
            .alias("speedup_decided"),
            pl.when(pl.col("speedup_vs_baseline").is_not_null())
            .then(pl.lit(f"{BASELINE['backend']} {BASELINE['precision']}"))
            .alias("baseline"),
        )
        .drop("_base", "_base_reps")
    )


# What identifies a variant's accuracy within a run; the run itself is the other part of the key.
ACCURACY_KEY = ["model", "backend", "precision", "device"]


def with_accuracy(df: pl.DataFrame, accuracy: list[dict]) -> pl.DataFrame:
    """Attach each variant's test-split accuracy (this run's accuracy jobs) to this run's cells of the same
    model, backend, precision and device, with the image size it was measured at; a compared run's rows
    (another machine or study, `_run` set) get none."""
    columns = ["accuracy_top1", "accuracy_drop", "over_tolerance", "accuracy_image_size"]
    if not accuracy:
        return df.with_columns(pl.lit(None, SCHEMA[c]).alias(c) for c in columns)
    acc = pl.DataFrame(accuracy, infer_schema_length=None).select(
        *ACCURACY_KEY,
        *columns[:-1],
        pl.col("image_size").cast(pl.Int64).alias("accuracy_image_size"),
        pl.lit(None, pl.Utf8).alias("_run"),
    )
    return df.join(acc, on=["_run", *ACCURACY_KEY], how="left", nulls_equal=True)


def load_results(paths: list[Path], machine: str | None = None) -> list[dict]:
    results = []
    for path in paths:
        result = read_json(path)
        result["_machine"] = machine
        results.append(result)
    return results


def machines_of(results: list[dict]) -> list[dict]:
    seen = {}
    for r in results:
        env = r.get("environment") or {}
        name = r.get("_machine") or env.get("machine")
        seen.setdefault(
            name,
            {
                "machine": name,
                "cpu": env.get("cpu"),
                "cores": env.get("cores"),
                "gpu": env.get("gpu"),
                "driver": env.get("driver"),
                "versions": env.get("versions", {}),
            },
        )
    return list(seen.values())


def aggregate(
    result_paths: list[Path],
    out_dir: Path,
    meta_in: dict,
    compare: list[dict] | None = None,
    accuracy: list[dict] | None = None,
) -> pl.DataFrame:
    """Write summary.parquet, summary.csv and meta.json to `out_dir`; return the summary."""
    results = load_results(result_paths)

    for run in compare or []:  # earlier runs or other machines, shown side by side
        results += compared.load(Path(run["path"]), run.get("label"))
    df = summary_table(results, accuracy)
    with atomic_path(out_dir / "summary.parquet") as tmp:
        df.write_parquet(tmp)
    with atomic_path(out_dir / "summary.csv") as tmp:  # CSV has no lists: the repetitions as "a;b;c"
        lists = [name for name, dtype in df.schema.items() if isinstance(dtype, pl.List)]
        df.with_columns(pl.col(c).cast(pl.List(pl.Utf8)).list.join(";") for c in lists).write_csv(tmp)
    meta = {
        **meta_in,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machines": machines_of(results),
        "cells_total": df.height,
        "cells_not_ok": df.filter(pl.col("status") != "ok").height,
        "cells_unstable": df.filter(pl.col("status") == "unstable").height,
        "repetitions_disturbed": int(df.get_column("disturbed_repetitions").fill_null(0).sum()),
        "baseline": BASELINE_TEXT,
        "accuracy": accuracy or [],
    }
    write_json(out_dir / "meta.json", meta)
    return df


def trained_meta(metrics: list[dict]) -> dict:
    """What the report says of each model's fp32 training: `trained` (one entry per model) and, for a
    study of one model, its figures as `model_accuracy`, `model_warnings`, `model_origin`."""
    trained = [
        {
            "model": m.get("model"),
            "test_accuracy": m["test_accuracy"],
            "warnings": m.get("warnings", []),
            "origin": m.get("origin"),
            "labels": m.get("labels", "labels"),
        }
        for m in metrics
    ]
    one = trained[0] if len(trained) == 1 else {}
    return {
        "trained": trained,
        "model_accuracy": one.get("test_accuracy"),
        "model_warnings": one.get("warnings", []),
        "model_origin": one.get("origin"),
    }


def add_parser(sub) -> None:
    """`infbench aggregate`."""
    s = sub.add_parser("aggregate", help="result JSONs → summary.parquet/csv + meta.json")
    s.add_argument("--results", type=Path, nargs="*", default=[])
    s.add_argument("--accuracy", type=Path, nargs="*", default=[])
    s.add_argument("--probes", type=Path, nargs="*", default=[], help="hardware probe JSONs → meta.json 'peaks'")
    s.add_argument("--train-metrics", type=Path, nargs="+", required=True, help="each model's train_metrics.json")
    paths(s, "--out-dir")
    s.add_argument("--meta", default="{}", help="JSON object merged into meta.json")
    s.add_argument("--compare", action="append", default=[], metavar="LABEL=FOLDER")
    s.set_defaults(func=_command)


def _command(a) -> None:
    meta = json.loads(a.meta)
    meta.update(trained_meta([read_json(p) for p in a.train_metrics]))
    if a.probes:
        meta["peaks"] = peaks_rows([read_json(p) for p in a.probes])
    compare = [dict(label=c.split("=", 1)[0], path=c.split("=", 1)[-1]) for c in a.compare]
    df = aggregate(a.results, a.out_dir, meta, compare, [read_json(p) for p in a.accuracy])
    print(f"aggregated {df.height} cells into {a.out_dir}")
