"""The summary table as the report reads it: every column present with its type, labels and number formats.

The aggregate step may leave any column all-null (no GPU, no accuracy jobs, no hardware probe) or, for results
written by an older version, absent; `complete` adds what is missing as nulls so the report code never has to ask.
"""

from __future__ import annotations

import math

import polars as pl

CELL = ["model", "backend", "precision", "device", "image_size", "batch_size"]

# The summary table, the one definition of its columns: name → (type, where a cell's result JSON holds it;
# None: the aggregate step derives it from other rows or joins it from the accuracy jobs).
COLUMNS: dict[str, tuple[pl.DataType, tuple[str, ...] | None]] = {
    **{key: (pl.Int64 if key in ("image_size", "batch_size") else pl.Utf8, ("cell", key)) for key in CELL},
    "machine": (pl.Utf8, ("environment", "machine")),
    "gpu_uuid": (pl.Utf8, ("gpu", "uuid")),  # the GPU the cell held (gpu_slots), null on the CPU
    # ok, unstable (numbers kept, marked noisy: their ± is wider than the tolerance), error, oom, timeout, unavailable
    "status": (pl.Utf8, ("status",)),
    "stability": (pl.Utf8, ("stability",)),  # stable / unstable
    "error": (pl.Utf8, ("error",)),
    "mode": (pl.Utf8, ("mode",)),
    # the window metric: batches back to back, median over repetitions
    "throughput_img_s": (pl.Float64, ("throughput_img_s",)),
    # the undisturbed repetitions' figures: every comparison of two cells is decided by them (findings.py)
    "throughput_repetitions": (pl.List(pl.Float64), ("throughput", "repetitions")),
    "latency_p50_repetitions": (pl.List(pl.Float64), ("latency", "p50", "repetitions")),
    "energy_repetitions": (pl.List(pl.Float64), ("energy_repetitions",)),
    "throughput_uncertainty_pct": (pl.Float64, ("throughput_uncertainty_pct",)),  # 95%: a rerun lands within ± this
    # the repetitions' range, shown instead of a ± above MAX_PRINTED_PCT
    "throughput_min_img_s": (pl.Float64, ("throughput_min_img_s",)),
    "throughput_max_img_s": (pl.Float64, ("throughput_max_img_s",)),
    # CPU cells: the least ± of any cell of the machine, its drift over the run (report/aggregate.py)
    "drift_floor_pct": (pl.Float64, ("drift_floor_pct",)),
    "tolerance_pct": (pl.Float64, ("tolerance_pct",)),  # bench.tolerance: the widest ± of a stable cell
    # unstable for the machine's drift alone: the cell's own interval is within the tolerance, its floor is not
    "drift_limited": (pl.Boolean, None),
    "time_per_image_ms": (pl.Float64, ("time_per_image_ms",)),
    "latency_ms_p50": (pl.Float64, ("latency_ms_p50",)),  # one batch at a time, synchronised after each
    "latency_ms_p90": (pl.Float64, ("latency_ms_p90",)),
    "latency_ms_p99": (pl.Float64, ("latency_ms_p99",)),
    "latency_uncertainty_pct": (pl.Float64, ("latency_uncertainty_pct",)),
    "latency_p50_min_ms": (pl.Float64, ("latency_p50_min_ms",)),
    "latency_p50_max_ms": (pl.Float64, ("latency_p50_max_ms",)),
    "repetitions": (pl.Int64, ("repetitions",)),
    "planned_repetitions": (pl.Int64, ("planned_repetitions",)),  # bench.repetitions
    "quiet_repetitions": (pl.Int64, ("quiet_repetitions",)),  # undisturbed ones; the figures rest on them
    "adaptive_repetitions": (pl.Int64, ("adaptive_repetitions",)),  # of them, drawn from bench.extra_budget_s
    "disturbed_repetitions": (pl.Int64, ("disturbed_repetitions",)),
    "launch_bound": (pl.Boolean, ("launch_bound",)),
    "host_issue_fraction": (pl.Float64, ("host_issue_fraction",)),
    "load_s": (pl.Float64, ("load_s",)),
    "first_inference_s": (pl.Float64, ("first_inference_s",)),  # load + first batch (compilation), median
    "speedup_vs_baseline": (pl.Float64, None),
    "speedup_low": (pl.Float64, None),
    "speedup_high": (pl.Float64, None),
    "speedup_verdict": (pl.Utf8, None),  # better / worse / same / undecided (measure/statistics.py)
    "speedup_decided": (pl.Boolean, None),
    "baseline": (pl.Utf8, None),
    "accuracy_top1": (pl.Float64, None),
    "accuracy_drop": (pl.Float64, None),
    "over_tolerance": (pl.Boolean, None),
    "accuracy_image_size": (pl.Int64, None),  # the size accuracy was measured at (the training size)
    "top1_agreement": (pl.Float64, ("agreement", "top1_agreement")),
    "max_abs_logit_diff": (pl.Float64, ("agreement", "max_abs_logit_diff")),
    "model_size_mib": (pl.Float64, ("memory", "artifact_mib")),  # the artifact this cell ran
    "gflops_per_image": (pl.Float64, ("flops", "gflops_per_image")),
    "achieved_tflops": (pl.Float64, ("flops", "achieved_tflops")),
    "utilization_pct": (pl.Float64, ("flops", "utilization_pct")),
    "arithmetic_intensity": (pl.Float64, ("flops", "arithmetic_intensity")),
    "device_memory_peak_mib": (pl.Float64, ("memory", "device_peak_mib")),  # NVML device-level, every backend alike
    "allocator_memory_peak_mib": (pl.Float64, ("memory", "allocator_peak_mib")),  # the runtime's own allocator
    "host_memory_peak_mib": (pl.Float64, ("memory", "host_peak_mib")),
    "gpu_util_pct": (pl.Float64, ("nvml", "gpu_util_pct")),
    "power_w": (pl.Float64, ("nvml", "power_w")),
    "power_uncertainty_pct": (pl.Float64, ("power_uncertainty_pct",)),  # 95%, between repetitions
    "energy_mj_per_image": (pl.Float64, ("nvml", "energy_mj_per_image")),
    "energy_uncertainty_pct": (pl.Float64, ("energy_uncertainty_pct",)),  # 95%, between repetitions
    "energy_window_img_s": (pl.Float64, ("nvml", "window_img_s")),
    # what ran: the backend's options on the cell's device (defaults included) and its runtime's versions
    "options": (pl.Utf8, ("ran", "options_text")),
    "runtime": (pl.Utf8, ("ran", "versions_text")),
}
SCHEMA: dict[str, pl.DataType] = {name: dtype for name, (dtype, _) in COLUMNS.items()}
SOURCE: dict[str, tuple[str, ...]] = {name: path for name, (_, path) in COLUMNS.items() if path}

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
            elif isinstance(dtype, pl.List) and df.schema[name] == pl.Utf8:  # summary.csv's "a;b;c"
                df = df.with_columns(pl.col(name).str.split(";").cast(dtype, strict=False))
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
    """Stable cells only (a ± within the tolerance)."""
    return df.filter(pl.col("status") == "ok")


def measured_cells(df: pl.DataFrame) -> pl.DataFrame:
    """Cells with numbers: ok and unstable (the tables and charts show both, unstable ones marked)."""
    return df.filter(pl.col("status").is_in(MEASURED))


def failed_cells(df: pl.DataFrame) -> pl.DataFrame:
    """Cells without numbers: error, oom, timeout, unavailable."""
    return df.filter(~pl.col("status").is_in(MEASURED))


def accuracy_rows(summary: pl.DataFrame, meta: dict) -> list[dict]:
    """Accuracy per variant: the accuracy jobs' records (meta['accuracy']) when they ran, else what the summary's
    cells carry (one row per backend, precision and device)."""
    if meta.get("accuracy"):
        return [dict(a) for a in meta["accuracy"]]
    variant = ["machine", "model", "backend", "precision", "device"]
    columns = [*variant, "accuracy_top1", "accuracy_drop", "top1_agreement", "over_tolerance"]
    have = summary.filter(pl.col("accuracy_top1").is_not_null() | pl.col("accuracy_drop").is_not_null())
    have = have.select(
        *columns, "max_abs_logit_diff", "model_size_mib", pl.col("accuracy_image_size").alias("image_size")
    )
    return have.unique(variant, maintain_order=True).to_dicts()


def several_machines(df: pl.DataFrame) -> bool:
    return df.get_column("machine").n_unique() > 1 if df.height else False


def several_models(df: pl.DataFrame) -> bool:
    return df.get_column("model").n_unique() > 1 if df.height else False


def shape_label(first: pl.Expr) -> pl.Expr:
    """`<first> · <size> px · batch <batch>`: a cell's label after what comes first (its series, its device)."""
    size, batch = pl.col("image_size").cast(pl.Utf8), pl.col("batch_size").cast(pl.Utf8)
    return pl.concat_str([first, pl.lit(" · "), size, pl.lit(" px · batch "), batch], ignore_nulls=True)


def with_series(df: pl.DataFrame, multi_machine: bool) -> pl.DataFrame:
    """Add `variant` ([model] backend precision device, the model where the study has several), `series`
    (the variant, plus `@ machine` when several machines) and `cell` (series, size and batch) labels."""
    parts = [pl.col("backend"), pl.lit(" "), pl.col("precision"), pl.lit(" "), pl.col("device")]
    if several_models(df):
        parts = [pl.col("model"), pl.lit(" "), *parts]
    series = [pl.col("variant"), pl.lit(" @ "), pl.col("machine")] if multi_machine else [pl.col("variant")]
    return (
        df.with_columns(
            pl.concat_str(parts, ignore_nulls=True).alias("variant"),
        )
        .with_columns(
            pl.concat_str(series, ignore_nulls=True).alias("series"),
        )
        .with_columns(shape_label(pl.col("series")).alias("cell"))
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


# A figure → its repetitions' range columns (low, high), printed where its ± would pass MAX_PRINTED_PCT.
MAX_PRINTED_PCT = 50.0
RANGE = {
    "throughput_img_s": ("throughput_min_img_s", "throughput_max_img_s"),
    "latency_ms_p50": ("latency_p50_min_ms", "latency_p50_max_ms"),
}


def plus_minus(value, uncertainty_pct, unit: str = "", span: tuple | None = None) -> str:
    """'5,422 ± 2.9%' (with `unit` after the value: '5,422 img/s ± 2.9%'); just the value without an uncertainty.
    A ± above MAX_PRINTED_PCT is never printed: the repetitions' range `span` (low, high) stands instead."""
    text = num(value, unit)
    if value is None or uncertainty_pct is None:
        return text
    if float(uncertainty_pct) > MAX_PRINTED_PCT:
        low, high = span or (None, None)
        if low is None or high is None:
            return f"{text} (repetitions disagree)"
        return f"{text} (range {num(low)}–{num(high)})"
    return f"{text} ± {float(uncertainty_pct):.1f}%"


def span_of(row: dict, column: str) -> tuple | None:
    """The repetitions' (low, high) of a figure in a summary row, where the table has them."""
    low, high = RANGE.get(column, (None, None))
    return (row.get(low), row.get(high)) if low else None


def speedup_text(row: dict) -> str:
    """'2.97× (2.59–3.36)': the speedup with its interval (the Hodges–Lehmann interval of the repetitions'
    ratios, report/aggregate.py), from a summary row."""
    s, lo, hi = row.get("speedup_vs_baseline"), row.get("speedup_low"), row.get("speedup_high")
    if s is None:
        return "n/a"
    return f"{s:.2f}×" + (f" ({lo:.2f}–{hi:.2f})" if lo is not None and hi is not None else "")


def pct(fraction) -> str:
    """A 0..1 accuracy or agreement as a percentage."""
    if fraction is None:
        return "n/a"
    return f"{100 * float(fraction):.2f}%"
