"""Result JSONs → one summary table (parquet + csv) and the report's metadata (meta.json).

Speedups are computed here, against one named baseline, never inside a cell.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from infbench.io import atomic_path, read_json, write_json

BASELINE = {"backend": "torch", "precision": "fp32"}
BASELINE_TEXT = "torch fp32 on the same machine, device, image size and batch size"
CELL_KEYS = ["model", "backend", "precision", "device", "image_size", "batch_size"]

# Summary column → where it sits in a result JSON.
FIELDS = {
    "status": ("status",),
    "error": ("error",),
    "mode": ("mode",),
    "iterations": ("timing", "iterations"),
    "latency_ms_mean": ("timing", "mean_ms"),
    "latency_ms_median": ("timing", "median_ms"),
    "latency_ms_p90": ("timing", "p90_ms"),
    "latency_ms_p95": ("timing", "p95_ms"),
    "latency_ms_p99": ("timing", "p99_ms"),
    "latency_ms_min": ("timing", "min_ms"),
    "latency_ms_max": ("timing", "max_ms"),
    "latency_ms_std": ("timing", "std_ms"),
    "ci95_rel": ("timing", "ci95_rel"),
    "converged": ("timing", "converged"),
    "throughput_img_s": ("throughput_img_s",),
    "time_per_image_ms": ("time_per_image_ms",),
    "top1_agreement": ("agreement", "top1_agreement"),
    "max_abs_logit_diff": ("agreement", "max_abs_logit_diff"),
    "device_memory_peak_mb": ("memory", "device_peak_mb"),
    "host_memory_peak_mb": ("memory", "host_peak_mb"),
    "gflops_per_image": ("flops", "gflops_per_image"),
    "achieved_tflops": ("flops", "achieved_tflops"),
    "utilization_pct": ("flops", "utilization_pct"),
    "arithmetic_intensity": ("flops", "arithmetic_intensity"),
    "gpu_util_pct": ("nvml", "gpu_util_pct"),
    "power_w": ("nvml", "power_w"),
    "energy_mj_per_image": ("nvml", "energy_mj_per_image"),
    "machine": ("environment", "machine"),
}
FLOAT_COLUMNS = [
    c for c in FIELDS if c.startswith(("latency", "ci95", "throughput", "time_per", "top1", "max_abs"))
] + [
    "device_memory_peak_mb",
    "host_memory_peak_mb",
    "gflops_per_image",
    "achieved_tflops",
    "utilization_pct",
    "arithmetic_intensity",
    "gpu_util_pct",
    "power_w",
    "energy_mj_per_image",
]


def _get(result: dict, path: tuple[str, ...]):
    value = result
    for key in path:
        if not isinstance(value, dict):
            return None
        value = value.get(key)
    return value


def row_of(result: dict, machine: str | None = None) -> dict:
    row = {key: result["cell"][key] for key in CELL_KEYS}
    row.update({column: _get(result, path) for column, path in FIELDS.items()})
    if machine:
        row["machine"] = machine
    return row


def summary_table(results: list[dict], accuracy: list[dict] | None = None) -> pl.DataFrame:
    rows = [row_of(r, r.get("_machine")) for r in results]
    schema = {
        **{k: pl.Utf8 for k in ("model", "backend", "precision", "device", "machine", "status", "error", "mode")},
        "image_size": pl.Int64,
        "batch_size": pl.Int64,
        "iterations": pl.Int64,
        "converged": pl.Boolean,
        **{c: pl.Float64 for c in FLOAT_COLUMNS},
    }
    df = pl.DataFrame(rows, schema=schema)
    df = with_speedup(df)
    return with_accuracy(df, accuracy or [])


def with_speedup(df: pl.DataFrame) -> pl.DataFrame:
    keys = ["machine", "model", "device", "image_size", "batch_size"]
    base = df.filter(
        (pl.col("backend") == BASELINE["backend"])
        & (pl.col("precision") == BASELINE["precision"])
        & (pl.col("status") == "ok")
    ).select(*keys, pl.col("throughput_img_s").alias("_base"))
    return (
        df.join(base, on=keys, how="left", nulls_equal=True)
        .with_columns(
            pl.when(pl.col("status") == "ok")
            .then(pl.col("throughput_img_s") / pl.col("_base"))
            .alias("speedup_vs_baseline")
        )
        .drop("_base")
    )


def with_accuracy(df: pl.DataFrame, accuracy: list[dict]) -> pl.DataFrame:
    """Attach each variant's test-split accuracy (from the accuracy jobs) to its cells."""
    columns = ["accuracy_top1", "accuracy_drop", "over_tolerance", "model_size_mb"]
    if not accuracy:
        return df.with_columns(
            pl.lit(None, pl.Float64).alias("accuracy_top1"),
            pl.lit(None, pl.Float64).alias("accuracy_drop"),
            pl.lit(None, pl.Boolean).alias("over_tolerance"),
            pl.lit(None, pl.Float64).alias("model_size_mb"),
        )
    acc = pl.DataFrame(accuracy).select("backend", "precision", "device", *columns)
    return df.join(acc, on=["backend", "precision", "device"], how="left")


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
    from infbench import compare as compared  # (imports this module)

    for run in compare or []:  # earlier runs or other machines, shown side by side
        results += compared.load(Path(run["path"]), run.get("label"))
    df = summary_table(results, accuracy)
    with atomic_path(out_dir / "summary.parquet") as tmp:
        df.write_parquet(tmp)
    with atomic_path(out_dir / "summary.csv") as tmp:
        df.write_csv(tmp)
    meta = {
        **meta_in,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machines": machines_of(results),
        "cells_total": df.height,
        "cells_not_ok": df.filter(pl.col("status") != "ok").height,
        "baseline": BASELINE_TEXT,
        "accuracy": accuracy or [],
    }
    write_json(out_dir / "meta.json", meta)
    return df
