"""The summary table as the report reads it: every column present with its type, labels and number formats.

The aggregate step may leave any column all-null (no GPU, no accuracy jobs, no hardware probe) or, for results
written by an older version, absent; `complete` adds what is missing as nulls so the report code never has to ask.
"""

from __future__ import annotations

import math

import polars as pl

CELL = ["model", "backend", "precision", "device", "image_size", "batch_size"]

SCHEMA: dict[str, pl.DataType] = {
    "model": pl.Utf8,
    "backend": pl.Utf8,
    "precision": pl.Utf8,
    "device": pl.Utf8,
    "image_size": pl.Int64,
    "batch_size": pl.Int64,
    "machine": pl.Utf8,
    "gpu_uuid": pl.Utf8,
    "status": pl.Utf8,  # ok, unstable (numbers kept, marked; no finding rests on it), error, oom, timeout, unavailable
    "stability": pl.Utf8,  # stable / unstable
    "error": pl.Utf8,
    "mode": pl.Utf8,
    "throughput_img_s": pl.Float64,  # the window metric: batches back to back, median over repetitions
    "throughput_uncertainty_pct": pl.Float64,  # 95%: a rerun of the cell lands within ± this
    "time_per_image_ms": pl.Float64,
    "latency_ms_p50": pl.Float64,  # one batch at a time, synchronised after each
    "latency_ms_p90": pl.Float64,
    "latency_ms_p99": pl.Float64,
    "latency_uncertainty_pct": pl.Float64,
    "repetitions": pl.Int64,
    "disturbed_repetitions": pl.Int64,
    "launch_bound": pl.Boolean,
    "host_issue_fraction": pl.Float64,
    "load_s": pl.Float64,
    "first_inference_s": pl.Float64,
    "speedup_vs_baseline": pl.Float64,
    "speedup_low": pl.Float64,
    "speedup_high": pl.Float64,
    "speedup_stable": pl.Boolean,
    "baseline": pl.Utf8,
    "accuracy_top1": pl.Float64,
    "accuracy_drop": pl.Float64,
    "over_tolerance": pl.Boolean,
    "top1_agreement": pl.Float64,
    "max_abs_logit_diff": pl.Float64,
    "model_size_mb": pl.Float64,
    "gflops_per_image": pl.Float64,
    "achieved_tflops": pl.Float64,
    "utilization_pct": pl.Float64,
    "arithmetic_intensity": pl.Float64,
    "device_memory_peak_mb": pl.Float64,  # NVML device-level, every backend alike
    "allocator_memory_peak_mb": pl.Float64,  # the runtime's own allocator, where it has one
    "host_memory_peak_mb": pl.Float64,
    "gpu_util_pct": pl.Float64,
    "power_w": pl.Float64,
    "energy_mj_per_image": pl.Float64,
    "energy_window_img_s": pl.Float64,
}

SORT = ["machine", "device", "backend", "precision", "image_size", "batch_size"]


def complete(summary: pl.DataFrame) -> pl.DataFrame:
    """`summary` with every report column present and typed (missing ones as nulls), sorted by cell."""
    df = summary
    for name, dtype in SCHEMA.items():
        if name not in df.columns:
            df = df.with_columns(pl.lit(None, dtype).alias(name))
        elif df.schema[name] != dtype:
            if dtype == pl.Utf8:
                df = df.with_columns(pl.col(name).cast(pl.Utf8, strict=False))
            elif dtype == pl.Boolean and df.schema[name] == pl.Utf8:
                df = df.with_columns(pl.col(name).str.to_lowercase().is_in(["true", "1", "yes"]).alias(name))
            else:
                df = df.with_columns(pl.col(name).cast(dtype, strict=False))
    floats = [name for name, dtype in SCHEMA.items() if dtype == pl.Float64]
    df = df.with_columns(  # NaN and ±inf are not measurements (and not valid JSON): null
        pl.when(pl.col(c).is_finite()).then(pl.col(c)).otherwise(None).alias(c) for c in floats
    ).with_columns(
        pl.col("machine").fill_null("this machine"),
        pl.col("status").fill_null("error"),
    )
    return df.sort(SORT, nulls_last=True)


MEASURED = ("ok", "unstable")  # statuses whose cells have numbers (unstable ones are shown, marked)


def ok_cells(df: pl.DataFrame) -> pl.DataFrame:
    """Stable cells only: the only ones a finding may rest on."""
    return df.filter(pl.col("status") == "ok")


def measured_cells(df: pl.DataFrame) -> pl.DataFrame:
    """Cells with numbers: ok and unstable (the tables and charts show both, unstable ones marked)."""
    return df.filter(pl.col("status").is_in(MEASURED))


def failed_cells(df: pl.DataFrame) -> pl.DataFrame:
    """Cells without numbers: error, oom, timeout, unavailable."""
    return df.filter(~pl.col("status").is_in(MEASURED))


def several_machines(df: pl.DataFrame) -> bool:
    return df.get_column("machine").n_unique() > 1 if df.height else False


def with_series(df: pl.DataFrame, multi_machine: bool) -> pl.DataFrame:
    """Add `variant` (backend precision device), `series` (the variant, plus `@ machine` when several machines)
    and `cell` (series, size and batch) labels."""
    parts = [pl.col("backend"), pl.lit(" "), pl.col("precision"), pl.lit(" "), pl.col("device")]
    series = [pl.col("variant"), pl.lit(" @ "), pl.col("machine")] if multi_machine else [pl.col("variant")]
    return (
        df.with_columns(
            pl.concat_str(parts, ignore_nulls=True).alias("variant"),
        )
        .with_columns(
            pl.concat_str(series, ignore_nulls=True).alias("series"),
        )
        .with_columns(
            pl.concat_str(
                [
                    pl.col("series"),
                    pl.lit(" · "),
                    pl.col("image_size").cast(pl.Utf8),
                    pl.lit(" px · batch "),
                    pl.col("batch_size").cast(pl.Utf8),
                ],
                ignore_nulls=True,
            ).alias("cell")
        )
    )


def all_null(df: pl.DataFrame, *columns: str) -> bool:
    """True when no row has a value in every one of `columns`."""
    if df.height == 0:
        return True
    return df.filter(pl.all_horizontal(pl.col(c).is_not_null() for c in columns)).height == 0


def num(value, unit: str = "") -> str:
    """A number for reading: thousands separated, three significant figures for small ones."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    value = float(value)
    magnitude = abs(value)
    if magnitude >= 100:
        text = f"{value:,.0f}"
    elif magnitude >= 10:
        text = f"{value:.1f}"
    elif magnitude >= 1:
        text = f"{value:.2f}"
    elif magnitude == 0:
        text = "0"
    else:
        text = f"{value:.3g}"
    return f"{text} {unit}".rstrip() if unit else text


def interval(value, uncertainty_pct) -> tuple[float, float] | None:
    """(low, high) of a figure printed as value ± uncertainty_pct; no uncertainty: the value itself."""
    if value is None:
        return None
    u = (uncertainty_pct or 0.0) / 100
    return float(value) * (1 - u), float(value) * (1 + u)


def overlap(a: tuple[float, float] | None, b: tuple[float, float] | None) -> bool:
    """True when two intervals share a point: the figures are not significantly different."""
    return a is not None and b is not None and a[0] <= b[1] and b[0] <= a[1]


def plus_minus(value, uncertainty_pct, unit: str = "") -> str:
    """'5,422 ± 2.9%' (with `unit` after the value: '5,422 img/s ± 2.9%'); just the value without an uncertainty."""
    text = num(value, unit)
    if value is None or uncertainty_pct is None:
        return text
    return f"{text} ± {float(uncertainty_pct):.1f}%"


def speedup_text(row: dict) -> str:
    """'2.97× (2.59–3.36)': the speedup with its interval, from a summary row."""
    s, lo, hi = row.get("speedup_vs_baseline"), row.get("speedup_low"), row.get("speedup_high")
    if s is None:
        return "n/a"
    return f"{s:.2f}×" + (f" ({lo:.2f}–{hi:.2f})" if lo is not None and hi is not None else "")


def pct(fraction) -> str:
    """A 0..1 accuracy or agreement as a percentage."""
    if fraction is None:
        return "n/a"
    return f"{100 * float(fraction):.2f}%"
