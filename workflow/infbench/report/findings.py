"""Findings written from the measurements, with their numbers (pure polars, no charts).

Every finding is a comparison decided by its own data (DESIGN.md, "Measuring honestly"): two cells (the best
and the next variant, a variant and the baseline, batch b and the series' maximum, size s and the next size)
are compared by the ratio of their medians with the Hodges–Lehmann interval of their repetitions' pairwise
ratios, and one verdict with the margin m = the larger of `bench.tolerance` and the run's measured drift:
better (the whole interval beyond 1 + m), no meaningful difference (within ±m), or undecided (more
repetitions or a quieter machine would decide it) — measure/statistics.py. A cell's own stable/unstable label
is shown, never a gate: every measured cell counts. A finding "could not be determined" only for want of data.
Where the study has several models, every grouping is keyed by the model and every cell named with it.

Each `Finding` carries the sentence a reader sees and, for tests and other tools, the data behind it.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import polars as pl

from infbench.measure import statistics as st
from infbench.report.frame import (
    accuracy_rows,
    complete,
    failed_cells,
    measured_cells,
    num,
    pct,
    plus_minus,
    several_machines,
    several_models,
    span_of,
)


@dataclass(frozen=True)
class Finding:
    key: str  # what was asked: max_throughput, min_latency_batch1, best_within_tolerance, ...
    text: str  # the sentence, with numbers
    determined: bool = True  # False: the data could not answer; `text` says why
    data: dict = field(default_factory=dict)
    decided: bool = True  # False: a comparison it makes is undecided (the report fades it)

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Metric:
    column: str  # the cell's median
    repetitions: str  # the list of its repetitions' figures
    higher_is_better: bool
    unit: str
    uncertainty: str


THROUGHPUT = Metric("throughput_img_s", "throughput_repetitions", True, "img/s", "throughput_uncertainty_pct")
LATENCY = Metric("latency_ms_p50", "latency_p50_repetitions", False, "ms", "latency_uncertainty_pct")
ENERGY = Metric("energy_mj_per_image", "energy_repetitions", False, "mJ/img", "energy_uncertainty_pct")


def margin(*rows: dict) -> float:
    """m of a comparison of `rows` (one run, one machine): the larger of the tolerance and the run's drift."""
    tol = [r.get("tolerance_pct") for r in rows if r.get("tolerance_pct") is not None]
    drift = [r.get("drift_floor_pct") for r in rows if r.get("drift_floor_pct") is not None]
    tolerance = max(tol) / 100 if tol else st.DEFAULT_TOLERANCE
    return st.margin_of(tolerance, max(drift) / 100 if drift else None)


def compare(a: dict, b: dict, metric: Metric) -> st.Comparison | None:
    """Cell a against cell b on `metric`, from their repetitions (None: a side has none recorded). A cell
    whose figures come from fewer than two quiet repetitions (the rest disturbed by other load) decides
    nothing: its comparisons stay undecided."""
    c = st.compare(a.get(metric.repetitions), b.get(metric.repetitions), margin(a, b), metric.higher_is_better)
    quiet = [r.get("quiet_repetitions") for r in (a, b)]
    if c is not None and any(q is not None and q < st.MIN_REPETITIONS for q in quiet):
        return replace(c, verdict=st.UNDECIDED)
    return c


def _scope_prefix(machine: str, device: str, multi_machine: bool, multi_device: bool) -> str:
    if multi_machine:
        return f"[{machine}, {device}] "
    if multi_device:
        return f"[{device}] "
    return ""


def _variant(row: dict) -> str:
    """'onnxruntime int8 on cpu', with the model first where the study has several (`_models` set)."""
    model = f"{row['model']} " if row.get("_models") else ""
    return f"{model}{row['backend']} {row['precision']} on {row['device']}"


def _config(row: dict) -> str:
    return f"{_variant(row)}, {row['image_size']} px, batch {row['batch_size']}"


def _row(df: pl.DataFrame, by: str, descending: bool) -> dict:
    return df.sort(by, descending=descending, nulls_last=True).row(0, named=True)


def _figure(row: dict, metric: Metric) -> str:
    return plus_minus(row[metric.column], row.get(metric.uncertainty), metric.unit, span_of(row, metric.column))


def _tput(row: dict) -> str:
    return _figure(row, THROUGHPUT)


def _p50(row: dict) -> str:
    return _figure(row, LATENCY)


def _tolerance_flags(df: pl.DataFrame, tolerance) -> pl.DataFrame:
    """Add `_over`: the cell's variant breaks the tolerance (True/False), null where unknown."""
    derived = pl.lit(None, pl.Boolean)
    if tolerance is not None:
        derived = pl.when(pl.col("accuracy_drop").is_not_null()).then(pl.col("accuracy_drop") > float(tolerance))
    return df.with_columns(pl.coalesce(pl.col("over_tolerance"), derived).alias("_over"))


def _memory(df: pl.DataFrame) -> pl.DataFrame:
    """Add `_mem_mib` (device peak when measured, else host peak) and `_mem_kind`. The device peak is the
    device-level (NVML) figure, measured alike for every backend; the allocator's own peak is never compared."""
    return df.with_columns(
        pl.coalesce("device_memory_peak_mib", "host_memory_peak_mib").alias("_mem_mib"),
        pl.when(pl.col("device_memory_peak_mib").is_not_null())
        .then(pl.lit("device"))
        .when(pl.col("host_memory_peak_mib").is_not_null())
        .then(pl.lit("host"))
        .alias("_mem_kind"),
    )


# --- the objectives, per machine and device: the best and its margin over the next variant -------------------------


def _runner_up(have: pl.DataFrame, best: dict, by: str, descending: bool) -> dict | None:
    """The best cell of another variant (model, backend and precision): the alternative a reader would pick."""
    others = have.filter(
        (pl.col("model") != best["model"])
        | (pl.col("backend") != best["backend"])
        | (pl.col("precision") != best["precision"])
    )
    return _row(others, by, descending) if others.height else None


def against(best: dict, rival: dict | None, metric: Metric, better: str = "faster") -> tuple[str, dict]:
    """'; the best is faster than the next variant, … (400 img/s ± 2.0%): 2.50× (2.31–2.70×)' and the data
    of that comparison ({} without a rival)."""
    if rival is None:
        return "", {"runner_up": None, "comparison": None, "decided": True}
    c = compare(best, rival, metric)
    name = f"the next variant, {_config(rival)} ({_figure(rival, metric)})"
    if c is None:
        text = f"; the next variant, {_config(rival)}, measured {_figure(rival, metric)} (no repetitions recorded)"
        return text, {"runner_up": rival, "comparison": None, "decided": False}
    return "; " + c.text("the best", name, better), {"runner_up": rival, "comparison": c, "decided": c.decided}


def _speedup_clause(row: dict) -> str:
    """The best's speedup over the baseline, with its interval and verdict (report/aggregate.py)."""
    s, verdict = row.get("speedup_vs_baseline"), row.get("speedup_verdict")
    if s is None or verdict is None:
        return ""
    lo, hi = row.get("speedup_low"), row.get("speedup_high")
    ratio = f"{st.times(s)} ({st.times(lo, False)}–{st.times(hi)})" if lo is not None and hi is not None else ""
    if (row["backend"], row["precision"]) == ("torch", "fp32"):
        return " (it is the torch fp32 baseline)"
    words = {
        st.BETTER: f"faster than the torch fp32 baseline: {ratio}",
        st.WORSE: f"slower than the torch fp32 baseline: {ratio}",
        st.SAME: f"no meaningful difference from the torch fp32 baseline: {ratio}",
        st.UNDECIDED: f"undecided against the torch fp32 baseline: {ratio}",
    }
    return f" ({words[verdict]})"


def _best(
    key: str, title: str, pool: pl.DataFrame, metric: Metric, rivals: pl.DataFrame | None = None, extra=None
) -> Finding:
    """The best cell of `pool` on `metric` and its comparison with the best of another variant (in `rivals`,
    default the pool)."""
    best = _row(pool, metric.column, metric.higher_is_better)
    rival = _runner_up(pool if rivals is None else rivals, best, metric.column, metric.higher_is_better)
    clause, data = against(best, rival, metric)
    text = f"{title}: {_config(best)}: {_figure(best, metric)}"
    if metric is THROUGHPUT:
        text += _speedup_clause(best)
    text += (extra(best) if extra else "") + clause
    return Finding(key, text + ".", data={"row": best, **data}, decided=data["decided"])


def _max_throughput(part: pl.DataFrame, p: str) -> Finding:
    have = part.filter(pl.col("throughput_img_s").is_not_null())
    if have.height == 0:
        why = "no measured cell has a throughput"
        return Finding("max_throughput", f"{p}Highest throughput: could not be determined ({why}).", False)
    return _best("max_throughput", f"{p}Highest throughput", have, THROUGHPUT)


def _min_latency_batch1(part: pl.DataFrame, p: str) -> Finding:
    have = part.filter((pl.col("batch_size") == 1) & pl.col("latency_ms_p50").is_not_null())
    if have.height == 0:
        reason = "no cell ran at batch 1" if part.filter(pl.col("batch_size") == 1).height == 0 else "no p50 latency"
        return Finding("min_latency_batch1", f"{p}Lowest batch-1 latency: could not be determined ({reason}).", False)
    best = _row(have, "latency_ms_p50", False)
    same_size = have.filter(pl.col("image_size") == best["image_size"])

    def p99(row: dict) -> str:
        return f" (p99 {num(row['latency_ms_p99'], 'ms')})" if row.get("latency_ms_p99") is not None else ""

    f = _best("min_latency_batch1", f"{p}Lowest batch-1 latency (p50)", have, LATENCY, same_size, p99)
    per_size = {
        size: _row(have.filter(pl.col("image_size") == size), "latency_ms_p50", False)
        for size in sorted(have.get_column("image_size").drop_nulls().unique().to_list())
    }
    text = f.text
    if len(per_size) > 1:
        text = (
            text[:-1]
            + "; fastest per image size: "
            + ", ".join(f"{s} px {_variant(r)} {_p50(r)}" for s, r in per_size.items())
            + "."
        )
    return Finding(f.key, text, data={**f.data, "per_size": per_size}, decided=f.decided)


def _drop(row: dict) -> str:
    """A cell's accuracy drop and the size it was measured at; where the cell ran at another size, its own
    top-1 agreement with fp32, measured at its size, is the figure that stands for it."""
    text = f"accuracy drop {num(row['accuracy_drop'])} points"
    at = row.get("accuracy_image_size")
    if at is None:
        return text
    text += f", measured at {at} px"
    if at != row["image_size"]:
        text += f"; at {row['image_size']} px its top-1 agreement with fp32 is {pct(row.get('top1_agreement'))}"
    return text


def _best_within_tolerance(part: pl.DataFrame, p: str, tolerance) -> Finding:
    have = _tolerance_flags(part.filter(pl.col("throughput_img_s").is_not_null()), tolerance)
    known = have.filter(pl.col("_over").is_not_null())
    tol = f"{float(tolerance):g}-point " if tolerance is not None else ""
    within = known.filter(~pl.col("_over"))
    unknown = have.height - known.height
    note = f" ({unknown} cells without accuracy figures left out)" if unknown else ""
    key, title = "best_within_tolerance", f"{p}Best throughput within the {tol}accuracy tolerance"
    if known.height == 0:
        why = "no accuracy figures for the measured cells: the accuracy jobs did not run or the tolerance is not set"
        return Finding(key, f"{title}: could not be determined ({why}).", False)
    if within.height == 0:
        return Finding(key, f"{p}No measured cell is within the {tol}accuracy tolerance{note}.", data={"row": None})

    def cost(row: dict) -> str:
        return f" ({_drop(row)})" if row.get("accuracy_drop") is not None else ""

    f = _best(key, title, within, THROUGHPUT, extra=cost)
    text = f.text[:-1]
    fastest = _row(have, "throughput_img_s", True)
    best = f.data["row"]
    if fastest.get("_over") and fastest["throughput_img_s"] > best["throughput_img_s"]:
        c = compare(fastest, best, THROUGHPUT)
        how = f": {c.interval_text()} the best's throughput" if c is not None else ""
        text += f"; the faster {_config(fastest)} ({_tput(fastest)}{how}) breaks the tolerance{cost(fastest)}"
    return Finding(key, text + note + ".", data=f.data, decided=f.decided)


def _best_within_memory_cap(part: pl.DataFrame, p: str, cap) -> Finding:
    key = "best_within_memory_cap"
    have = _memory(part.filter(pl.col("throughput_img_s").is_not_null())).filter(pl.col("_mem_mib").is_not_null())
    if have.height == 0:
        why = "could not be determined (no measured cell has a memory figure)"
        return Finding(key, f"{p}Best throughput within the memory cap: {why}.", False)
    smallest = _row(have, "_mem_mib", False)
    peak = f"{num(smallest['_mem_mib'], 'MiB')} ({smallest['_mem_kind']})"
    if cap is None:
        text = f"{p}No memory cap is configured; the smallest peak memory is {peak} for {_config(smallest)}"
        rival = _runner_up(have, smallest, "_mem_mib", False)
        if rival is not None:
            text += f"; the next variant, {_config(rival)}, peaks at {num(rival['_mem_mib'], 'MiB')}"
        return Finding(key, text + ".", data={"cap_mib": None, "row": smallest, "runner_up": rival})
    unknown = part.height - have.height
    note = f" ({unknown} cells without a memory figure left out)" if unknown else ""
    within = have.filter(pl.col("_mem_mib") <= float(cap))
    if within.height == 0:
        cap_text = num(cap, "MiB")
        text = (
            f"{p}No measured cell fits in the {cap_text} memory cap; the smallest, {_config(smallest)}, peaks at {peak}"
        )
        return Finding(key, text + note + ".", data={"cap_mib": cap, "row": None})

    def mem(row: dict) -> str:
        return f" with a {row['_mem_kind']} memory peak of {num(row['_mem_mib'], 'MiB')}"

    f = _best(key, f"{p}Best throughput within the {num(cap, 'MiB')} memory cap", within, THROUGHPUT, extra=mem)
    return Finding(key, f.text[:-1] + note + ".", data={**f.data, "cap_mib": cap}, decided=f.decided)


def _min_energy_per_image(part: pl.DataFrame, p: str) -> Finding:
    """The least energy per image (NVML's counter over the throughput windows; GPU cells only)."""
    have = part.filter(pl.col("energy_mj_per_image").is_not_null())
    if have.height == 0:
        why = "no measured cell has an NVML energy figure"
        return Finding("min_energy_per_image", f"{p}Least energy per image: could not be determined ({why}).", False)

    def power(row: dict) -> str:
        return f" (at {num(row['power_w'], 'W')})" if row.get("power_w") is not None else ""

    best = _row(have, ENERGY.column, False)
    rival = _runner_up(have, best, ENERGY.column, False)
    clause, data = against(best, rival, ENERGY, better="more frugal")
    text = f"{p}Least energy per image: {_config(best)}: {_figure(best, ENERGY)}{power(best)}{clause}."
    return Finding("min_energy_per_image", text, data={"row": best, **data}, decided=data["decided"])


def _cross_model(part: pl.DataFrame, p: str, tolerance) -> Finding:
    """Several models: the most accurate variant of any model, and the fastest cell (throughput, and batch-1
    latency) of any model whose accuracy is within the tolerance of it, against the best of another model."""
    have = part.filter(pl.col("accuracy_top1").is_not_null() & pl.col("throughput_img_s").is_not_null())
    if have.height == 0 or tolerance is None:
        why = "no accuracy figures" if have.height == 0 else "no accuracy tolerance"
        return Finding("cross_model", f"{p}Across models: not determined ({why}).", False)
    top = _row(have, "accuracy_top1", True)
    floor = top["accuracy_top1"] - float(tolerance) / 100
    near = have.filter(pl.col("accuracy_top1") >= floor - 1e-12)

    def who(row: dict) -> str:
        return f"{row['model']} {row['backend']} {row['precision']}"

    fastest = _row(near, "throughput_img_s", True)
    parts = [
        f"{p}Across models, the most accurate variant is {who(top)} (top-1 {pct(top['accuracy_top1'])}); the "
        f"fastest cell of any model within {float(tolerance):g} point{'s' if float(tolerance) != 1 else ''} of it "
        f"is {who(fastest)} at {fastest['image_size']} px, batch {fastest['batch_size']}: {_tput(fastest)} "
        f"(top-1 {pct(fastest['accuracy_top1'])})"
    ]
    other = near.filter(pl.col("model") != fastest["model"])
    decided = True
    if other.height:
        rival = _row(other, "throughput_img_s", True)
        c = compare(fastest, rival, THROUGHPUT)
        if c is not None:
            parts.append(c.text("it", f"the fastest of another model, {who(rival)} ({_tput(rival)})"))
            decided = c.decided
    single = near.filter((pl.col("batch_size") == 1) & pl.col("latency_ms_p50").is_not_null())
    quickest = _row(single, "latency_ms_p50", False) if single.height else None
    if quickest:
        parts.append(
            f"the lowest batch-1 latency within it is {who(quickest)} at {quickest['image_size']} px, "
            f"p50 {_p50(quickest)} (top-1 {pct(quickest['accuracy_top1'])})"
        )
    data = {"most_accurate": top, "fastest": fastest, "lowest_latency": quickest, "tolerance_points": tolerance}
    return Finding("cross_model", "; ".join(parts) + ".", data=data, decided=decided)


# --- batch and size behaviour ---------------------------------------------------------------------------------------

SERIES = ["machine", "model", "backend", "precision", "device"]


def saturation(cells: pl.DataFrame) -> list[dict]:
    """Per machine/model/backend/precision/device/size with two or more batch sizes: the smallest batch whose
    throughput is within the margin of the series' maximum (no meaningful difference), decided by their
    repetitions; `saturated` False where the maximum is the largest batch and it beats the batch before."""
    have = cells.filter(pl.col("throughput_img_s").is_not_null() & pl.col("batch_size").is_not_null())
    keys = [*SERIES, "image_size"]
    out = []
    for key, group in have.group_by(keys, maintain_order=True):
        rows = group.sort("batch_size").to_dicts()
        if len({r["batch_size"] for r in rows}) < 2:
            continue
        top = max(rows, key=lambda r: r["throughput_img_s"])
        entry = {**dict(zip(keys, key, strict=True)), "max_batch": top["batch_size"], "max_row": top}
        entry.update(max_throughput=top["throughput_img_s"], largest_batch=rows[-1]["batch_size"], rows=rows)
        entry.update(saturation_batch=None, comparison=None, decided=True)
        for r in rows:
            if r is top:
                entry["saturation_batch"] = top["batch_size"]
                break
            c = compare(top, r, THROUGHPUT)
            if c is None or c.verdict == st.UNDECIDED:
                entry.update(saturation_batch=r["batch_size"], comparison=c, decided=False, row=r)
                break
            if c.verdict in (st.SAME, st.WORSE):
                entry.update(saturation_batch=r["batch_size"], comparison=c, row=r)
                break
        entry.setdefault("row", top)
        entry["saturation_throughput"] = entry["row"]["throughput_img_s"]
        # still rising: the maximum at the largest batch, beyond the margin of the batch before it
        before = rows[-2]
        rising = compare(rows[-1], before, THROUGHPUT) if top is rows[-1] else None
        entry["rising"] = rising
        entry["saturated"] = not (top is rows[-1] and rising is not None and rising.verdict == st.BETTER)
        if top is rows[-1] and rising is not None and rising.verdict == st.UNDECIDED:
            entry["decided"] = False
        out.append(entry)
    return out


def _saturation_part(r: dict) -> str:
    """One image size of a saturation finding."""
    top = f"{num(r['max_throughput'], 'img/s')} at batch {r['max_batch']}"
    if not r["saturated"]:
        return (
            f"{r['image_size']} px: still rising at batch {r['largest_batch']} (the largest tried, {top}; "
            f"{r['rising'].interval_text()} batch {r['rows'][-2]['batch_size']})"
        )
    c, b = r["comparison"], r["saturation_batch"]
    if c is None and b == r["max_batch"]:
        if r["rising"] is not None and r["rising"].verdict == st.UNDECIDED:
            return (
                f"{r['image_size']} px: undecided whether batch {b} ({top}) rises beyond batch "
                f"{r['rows'][-2]['batch_size']}: {r['rising'].interval_text()} (more repetitions would decide it)"
            )
        return f"{r['image_size']} px: batch {b} ({top}, the maximum; every smaller batch is slower beyond the margin)"
    if c is None:
        return f"{r['image_size']} px: batch {b} against the maximum ({top}): no repetitions recorded"
    if not r["decided"]:
        return (
            f"{r['image_size']} px: undecided whether batch {b} ({num(r['saturation_throughput'], 'img/s')}) reaches "
            f"the maximum ({top}): {c.interval_text()} (more repetitions or a quieter machine would decide it)"
        )
    first = r["rows"][0]
    gain = compare(r["row"], first, THROUGHPUT) if r["row"] is not first else None
    rise = f"; batch {first['batch_size']}→{b}: {gain.interval_text()}" if gain is not None else ""
    return (
        f"{r['image_size']} px: batch {b} ({num(r['saturation_throughput'], 'img/s')}; the maximum, {top}, is "
        f"within ±{100 * c.margin:.3g}%: {c.interval_text()}){rise}"
    )


def _series_name(key: tuple, multi_machine: bool, models: bool) -> str:
    machine, model, backend, precision, device = key
    where = f" [{machine}]" if multi_machine else ""
    return f"{model + ' ' if models else ''}{backend} {precision} on {device}{where}"


def _saturation_findings(cells: pl.DataFrame, multi_machine: bool, models: bool) -> list[Finding]:
    rows = saturation(cells)
    if not rows:
        why = "no backend/precision/size has throughput at two or more batch sizes"
        return [Finding("saturation", f"Batch saturation could not be determined: {why}.", False)]
    series: dict[tuple, list[dict]] = {}
    for r in rows:
        series.setdefault(tuple(r[k] for k in SERIES), []).append(r)
    out = []
    for key, group in series.items():
        text = (
            f"Batch saturation (the first batch within the margin of the maximum throughput), "
            f"{_series_name(key, multi_machine, models)}: " + "; ".join(_saturation_part(r) for r in group) + "."
        )
        decided = all(r["decided"] for r in group)
        out.append(Finding("saturation", text, data={"groups": group}, decided=decided))
    return out


def size_scaling(cells: pl.DataFrame) -> list[dict]:
    """Per machine/model/backend/precision/device at the batch size measured at the most sizes: each size s
    against the next s' — the time per image's ratio (from the throughput repetitions), the FLOP ratio (pixel
    ratio where FLOP counts are missing) and whether the time grows in line with it, decided by the rule."""
    time = pl.coalesce(pl.col("time_per_image_ms"), 1000.0 / pl.col("throughput_img_s")).alias("_tpi")
    have = cells.with_columns(time).filter(pl.col("_tpi").is_not_null() & pl.col("image_size").is_not_null())
    out = []
    for key, group in have.group_by(SERIES, maintain_order=True):
        counts = group.group_by("batch_size").agg(pl.col("image_size").n_unique().alias("n")).filter(pl.col("n") >= 2)
        if counts.height == 0:
            continue
        batch = counts.sort(["n", "batch_size"], descending=True).row(0, named=True)["batch_size"]
        rows = group.filter(pl.col("batch_size") == batch).sort("image_size").unique("image_size", keep="first")
        rows = rows.sort("image_size").to_dicts()
        for base, cell in zip(rows, rows[1:], strict=False):
            if base["gflops_per_image"] and cell["gflops_per_image"] is not None:
                ratio, source = cell["gflops_per_image"] / base["gflops_per_image"], "flops"
            else:
                ratio, source = (cell["image_size"] / base["image_size"]) ** 2, "pixels"
            time_ratio = cell["_tpi"] / base["_tpi"]
            # time per image ∝ 1 / throughput: base's throughput over the cell's is the time ratio
            c = compare(base, cell, THROUGHPUT)
            low, high = (c.low, c.high) if c is not None else (None, None)
            m = margin(base, cell)
            verdict = st.decide(ratio / high, ratio / low, m) if c is not None and c.n_a > 1 and c.n_b > 1 else None
            out.append(
                {
                    **dict(zip(SERIES, key, strict=True)),
                    "batch_size": batch,
                    "from_size": base["image_size"],
                    "to_size": cell["image_size"],
                    "time_ratio": time_ratio,
                    "time_low": low,
                    "time_high": high,
                    "flop_ratio": ratio,
                    "flop_source": source,
                    "efficiency": ratio / time_ratio,  # > 1: larger images use the hardware better
                    "verdict": verdict or st.UNDECIDED,
                    "margin": m,
                }
            )
    return out


def _scaling_verdict(r: dict) -> str:
    what = "FLOPs" if r["flop_source"] == "flops" else "pixel count"
    return {
        st.BETTER: f"time grows more slowly than the {what}: larger images use the hardware better",
        st.WORSE: f"time grows faster than the {what}: larger images cost more than their arithmetic (memory traffic)",
        st.SAME: f"time grows in line with the {what} (within ±{100 * r['margin']:.3g}%)",
        st.UNDECIDED: "undecided against the "
        + f"{what} (within ±{100 * r['margin']:.3g}%? more repetitions or a quieter machine would decide it)",
    }[r["verdict"]]


def _scaling_findings(cells: pl.DataFrame, multi_machine: bool, models: bool) -> list[Finding]:
    rows = size_scaling(cells)
    if not rows:
        why = "no backend/precision has cells at two or more image sizes with the same batch size"
        return [Finding("size_scaling", f"Scaling with image size could not be determined: {why}.", False)]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((*(r[k] for k in SERIES), r["batch_size"]), []).append(r)
    out = []
    for key, group in groups.items():
        parts = []
        for r in group:
            interval = (
                f" ({st.times(r['time_low'], False)}–{st.times(r['time_high'])})" if r["time_low"] is not None else ""
            )
            parts.append(
                f"{r['from_size']}→{r['to_size']} px costs {st.times(r['time_ratio'])}{interval} the time per image "
                f"for {st.times(r['flop_ratio'])} the {'FLOPs' if r['flop_source'] == 'flops' else 'pixel count'}: "
                + _scaling_verdict(r)
            )
        text = f"Image size, {_series_name(key[:5], multi_machine, models)} at batch {key[5]}: " + "; ".join(parts)
        decided = all(r["verdict"] != st.UNDECIDED for r in group)
        out.append(Finding("size_scaling", text + ".", data={"rows": group}, decided=decided))
    return out


def _best_utilization(ok: pl.DataFrame, p: str) -> Finding:
    have = ok.filter(pl.col("utilization_pct").is_not_null())
    if have.height == 0:
        return Finding(
            "best_utilization",
            f"{p}Utilisation could not be determined: no ok cell has a FLOP-based utilisation "
            "(it needs the FLOP count and the hardware probe's measured peak).",
            False,
        )
    # A figure above 100% counts arithmetic the runtime did not do (OVER_PEAK): never the headline.
    over = have.filter(pl.col("utilization_pct") > 100)
    named = ", ".join(f"{_config(r)} {num(r['utilization_pct'])}%" for r in over.iter_rows(named=True))
    beyond = f" Above 100% of the peak, so not comparable: {named}." + OVER_PEAK if over.height else ""
    plausible = have.filter(pl.col("utilization_pct") <= 100)
    if plausible.height == 0:
        text = f"{p}Utilisation: no headline, every ok cell's FLOP-based figure passes 100%.{beyond}"
        return Finding("best_utilization", text, False, data={"row": None, "over_peak": over.to_dicts()})
    best = _row(plausible, "utilization_pct", True)
    achieved = best.get("achieved_tflops")
    text = (
        f"{p}Best utilisation: {_config(best)} reaches {num(best['utilization_pct'])}% of the measured "
        f"{best['precision']} peak" + (f" ({num(achieved)} TFLOP/s achieved)" if achieved is not None else "") + "."
    )
    return Finding("best_utilization", text + beyond, data={"row": best, "over_peak": over.to_dicts()})


# Why a cell can pass 100% of a measured peak without a measuring error.
OVER_PEAK = (
    " The FLOP count is the nominal work of every convolution tap, taps on the zero padding"
    " included, against the peak of a dense matrix product; a runtime that skips padded taps (ONNX Runtime's"
    " NCHWc CPU kernels do; at small images they are a large share: at 32 px the last stage is 1×1, 8 of"
    " its 9 taps padding) or uses Winograd/FFT convolutions does less arithmetic than counted."
)


def _status_finding(df: pl.DataFrame) -> Finding:
    """What ran: the measured cells (noisy ones counted among them: their label informs, never gates), the
    cells that did not run, and the repetitions measured again."""
    total = df.height
    if total == 0:
        return Finding(
            "cells",
            "The summary holds no cells: nothing was measured.",
            False,
            {"total": 0, "not_ok": {}, "unstable": 0, "disturbed": 0},
        )
    bad = failed_cells(df)
    unstable = df.filter(pl.col("status") == "unstable").height
    disturbed = int(df.get_column("disturbed_repetitions").fill_null(0).sum())
    counts = dict(bad.group_by("status").len().sort("status").iter_rows()) if bad.height else {}
    data = {"total": total, "not_ok": counts, "unstable": unstable, "disturbed": disturbed}
    measured = total - bad.height
    parts = [f"All {total} cells were measured" if measured == total else f"{measured} of {total} cells were measured"]
    if unstable:
        tolerance = df.get_column("tolerance_pct").drop_nulls()
        tol = f"±{tolerance.max():g}%" if tolerance.len() else "the tolerance"
        parts.append(
            f"{unstable} of them noisy (a ± wider than {tol}: shown with their spread; their comparisons are "
            "still decided by their repetitions)"
        )
    if bad.height:
        parts.append(
            f"{bad.height} did not run: "
            + ", ".join(f"{n} {status}" for status, n in counts.items())
            + " (see the failures table)"
        )
    text = "; ".join(parts) + "."
    if disturbed:
        text += f" {disturbed} repetitions were disturbed by other load on the machine and measured again."
    return Finding("cells", text + _drift_note(df), data=data)


def _drift_note(df: pl.DataFrame) -> str:
    """Where a machine's drift is wider than the tolerance: that it is the margin of the run's comparisons and
    the least ± of its CPU cells (report/aggregate.py)."""
    limited = df.filter(pl.col("drift_floor_pct").is_not_null() & pl.col("tolerance_pct").is_not_null())
    notes = []
    for machine, rows in limited.group_by("machine", maintain_order=True):
        first = rows.row(0, named=True)
        floor, tolerance = first["drift_floor_pct"], first["tolerance_pct"]
        if floor <= tolerance:
            continue
        notes.append(
            f" On {machine[0]}'s CPU the run's drift (±{floor:.1f}%, the typical cell's interval) is wider than "
            f"the tolerance (±{tolerance:g}%, bench.tolerance): it is the margin of this run's comparisons (a "
            f"difference within ±{floor:.1f}% is called no meaningful difference) and the least ± of its CPU "
            "cells (a rerun lands within it); a quieter machine narrows both."
        )
    return "".join(notes)


def _comparisons_finding(found: list[Finding]) -> Finding | None:
    """How many of the findings' comparisons were decided: the run's answer in one line."""
    made = [f for f in found if f.determined and f.key not in ("cells", "launch_bound", "model", "over_tolerance")]
    made = [f for f in made if f.key not in ("best_utilization", "int8_static_vs_dynamic")]
    if not made:
        return None
    undecided = [f for f in made if not f.decided]
    text = f"{len(made) - len(undecided)} of {len(made)} findings are decided by their comparisons"
    if undecided:
        text += (
            f"; {len(undecided)} undecided (marked: more repetitions, `bench.extra_budget_s`, or a quieter machine "
            "would decide them)"
        )
    return Finding("comparisons", text + ".", data={"made": len(made), "undecided": len(undecided)})


# --- accuracy and cell status ---------------------------------------------------------------------------------------


def _name(v: dict, models: bool = False) -> str:
    model = f"{v.get('model')} " if models else ""
    return f"{model}{v.get('backend')} {v.get('precision')} on {v.get('device')}"


def _accuracy_finding(summary: pl.DataFrame, meta: dict, models: bool = False) -> Finding:
    tolerance = meta.get("tolerance_points")
    variants = [
        a
        for a in accuracy_rows(summary, meta)
        if a.get("accuracy_top1") is not None or a.get("accuracy_drop") is not None
    ]
    if not variants:
        return Finding(
            "over_tolerance",
            "Accuracy against the tolerance could not be determined: no accuracy figures "
            "(the accuracy jobs did not run).",
            False,
        )
    tol = f"{float(tolerance):g}-point " if tolerance is not None else ""
    over, within, unknown = [], [], []
    for v in variants:
        flag = v.get("over_tolerance")
        if flag is None and tolerance is not None and v.get("accuracy_drop") is not None:
            flag = v["accuracy_drop"] > float(tolerance)
        (over if flag else within if flag is not None else unknown).append(v)
    if over:
        text = f"Variants over the {tol}accuracy tolerance: " + "; ".join(
            f"{_name(v, models)}: drop {num(v.get('accuracy_drop'))} points (top-1 {pct(v.get('accuracy_top1'))})"
            for v in over
        )
    elif within:
        worst = max(within, key=lambda v: v.get("accuracy_drop") or 0.0)
        text = (
            f"All {len(within)} variants with accuracy figures are within the {tol}accuracy tolerance "
            f"(largest drop {num(worst.get('accuracy_drop'))} points: {_name(worst, models)})"
        )
    else:
        text = "No variant could be checked against the accuracy tolerance (the tolerance or the drops are missing)"
    if unknown and (over or within):
        text += f"; {len(unknown)} not checked (tolerance or drop missing)"
    sizes = sorted({v["image_size"] for v in variants if v.get("image_size") is not None})
    if sizes:
        text += (
            f"; top-1 measured at {', '.join(map(str, sizes))} px (a cell at another size: its own top-1 agreement "
            "with fp32 at its size)"
        )
    return Finding(
        "over_tolerance",
        text + ".",
        determined=bool(over or within),
        data={"over": over, "within": within, "unknown": unknown, "tolerance_points": tolerance},
    )


def _model_finding(meta: dict) -> Finding | None:
    """What the training stage said about the fp32 model (near chance, an untrained head): where it
    did, every accuracy figure of the report compares nothing, and this says so first."""
    trained = meta.get("trained") or [
        {"model": meta.get("model", "The model"), "warnings": meta.get("model_warnings") or []}
    ]
    said = [f"{t['model']}: " + "; ".join(t["warnings"]) for t in trained if t.get("warnings")]
    if not said:
        return None
    return Finding("model", ". ".join(said) + ".", data={"warnings": said})


def _int8_finding(summary: pl.DataFrame, meta: dict, models: bool = False) -> Finding | None:
    """Calibrated static INT8 against dynamic INT8, side by side, where the grid has both (per model, backend
    and device): the accuracy each costs."""
    rows = {(a.get("model"), a["backend"], a["device"], a["precision"]): a for a in accuracy_rows(summary, meta)}
    pairs = [
        (rows[(m, b, d, "int8")], rows[(m, b, d, "int8_dynamic")])
        for m, b, d, p in rows
        if p == "int8" and (m, b, d, "int8_dynamic") in rows
    ]
    parts = []
    for static, dynamic in pairs:
        if static.get("accuracy_drop") is None or dynamic.get("accuracy_drop") is None:
            continue
        gap = dynamic["accuracy_drop"] - static["accuracy_drop"]
        verdict = (
            "the same cost"
            if abs(gap) < 1e-9
            else f"calibrated static INT8 costs {num(abs(gap))} points {'less' if gap > 0 else 'more'}"
        )
        parts.append(
            f"{static.get('model') + ' ' if models else ''}{static['backend']} on {static['device']}: "
            f"calibrated static INT8 drops {num(static['accuracy_drop'])} "
            f"points (top-1 {pct(static.get('accuracy_top1'))}), dynamic INT8 {num(dynamic['accuracy_drop'])} points "
            f"(top-1 {pct(dynamic.get('accuracy_top1'))}): {verdict}"
        )
    if not parts:
        return None
    return Finding("int8_static_vs_dynamic", "INT8, static against dynamic: " + "; ".join(parts) + ".")


def _launch_bound_finding(df: pl.DataFrame, multi_machine: bool, models: bool = False) -> Finding | None:
    """Which cells the host, not the device, paces (None where no cell can be launch-bound: CPU, ONNX Runtime)."""
    known = df.filter(pl.col("launch_bound").is_not_null())
    if known.height == 0:
        return None
    bound = known.filter(pl.col("launch_bound"))
    if bound.height == 0:
        return Finding("launch_bound", f"No cell is launch-bound (all {known.height} checked).", data={"cells": []})
    names = []
    for (machine, model, backend, precision, device), group in bound.group_by(SERIES, maintain_order=True):
        sizes = group.group_by("image_size", maintain_order=True).agg(pl.col("batch_size").sort()).sort("image_size")
        where = f" [{machine}]" if multi_machine else ""
        names.append(
            f"{model + ' ' if models else ''}{backend} {precision} on {device}{where} at "
            + ", ".join(f"{size} px batch {', '.join(map(str, b))}" for size, b in sizes.iter_rows())
        )
    return Finding(
        "launch_bound",
        f"{bound.height} of {known.height} cells are launch-bound (the host's Python and kernel launches set the "
        "pace, not the device; another process or host can give a different number): " + "; ".join(names) + ".",
        data={"cells": bound.to_dicts()},
    )


def findings(summary: pl.DataFrame, meta: dict) -> list[Finding]:
    """Every finding, in reading order: cells, comparisons decided, launch-bound cells, objectives per
    machine/device, batch, size, utilisation, accuracy."""
    df = complete(summary)
    models = several_models(df)
    if models:
        df = df.with_columns(pl.lit(True).alias("_models"))  # every cell's name carries its model (_variant)
    measured = measured_cells(df)
    head = [f for f in (_model_finding(meta), _status_finding(df)) if f]
    out = []
    launch = _launch_bound_finding(measured, several_machines(df), models)
    if launch:
        out.append(launch)
    if measured.height == 0:
        out.append(Finding("max_throughput", "No cell was measured, so no configuration can be recommended.", False))
        out.append(_accuracy_finding(df, meta, models))
        return head + out
    multi_machine = several_machines(measured)
    multi_device = measured.get_column("device").n_unique() > 1
    for machine, device in measured.select("machine", "device").unique(maintain_order=True).iter_rows():
        part = measured.filter((pl.col("machine") == machine) & (pl.col("device") == device))
        p = _scope_prefix(machine, device, multi_machine, multi_device)
        out += [
            _max_throughput(part, p),
            _min_latency_batch1(part, p),
            _best_within_tolerance(part, p, meta.get("tolerance_points")),
            _best_within_memory_cap(part, p, meta.get("memory_cap_mib")),
        ]
        if device != "cpu":  # NVML's energy: a GPU's figure (a CPU cell has none to compare)
            out.append(_min_energy_per_image(part, p))
        if models:
            out.append(_cross_model(part, p, meta.get("tolerance_points")))
    out += _saturation_findings(measured, multi_machine, models)
    out += _scaling_findings(measured, multi_machine, models)
    for machine, device in measured.select("machine", "device").unique(maintain_order=True).iter_rows():
        part = measured.filter((pl.col("machine") == machine) & (pl.col("device") == device))
        out.append(_best_utilization(part, _scope_prefix(machine, device, multi_machine, multi_device)))
    out.append(_accuracy_finding(df, meta, models))
    int8 = _int8_finding(df, meta, models)
    out += [int8] if int8 else []
    decided = _comparisons_finding(out)
    return head + ([decided] if decided else []) + out


# The report's first screen: per goal, the best variant, its margin over the next and its accuracy cost.
GOALS = {
    "max_throughput": ("Throughput", THROUGHPUT),
    "min_latency_batch1": ("Batch-1 latency", LATENCY),
    "best_within_tolerance": ("Within the accuracy tolerance", THROUGHPUT),
    "best_within_memory_cap": ("Within the memory cap", THROUGHPUT),
}


def answers(found: list[Finding]) -> list[dict]:
    """One entry per goal finding: goal, scope prefix-free best cell, its figure, its margin over the next
    variant (the comparison's sentence), its accuracy cost, and whether that comparison is decided; a goal
    without an answer carries the finding's own sentence (`text`)."""
    out = []
    for f in found:
        if f.key not in GOALS:
            continue
        goal, metric = GOALS[f.key]
        scope = f.text[: f.text.index("] ") + 2] if f.text.startswith("[") else ""  # '[cuda] ' where several
        goal = scope + goal
        row = f.data.get("row")
        if not f.determined or row is None or (f.key == "best_within_memory_cap" and f.data.get("cap_mib") is None):
            out.append({"goal": goal, "text": f.text, "decided": f.decided, "determined": f.determined})
            continue
        c, rival = f.data.get("comparison"), f.data.get("runner_up")
        if c is not None:
            margin_text = c.text("it", f"the next variant, {_config(rival)} ({_figure(rival, metric)})")
        else:
            margin_text = "no other variant to compare it with" if rival is None else "no repetitions to compare"
        drop = row.get("accuracy_drop")
        cost = f"accuracy cost {num(drop)} points" if drop is not None else "accuracy not measured"
        out.append(
            {
                "goal": goal,
                "best": _config(row),
                "figure": _figure(row, metric),
                "margin": margin_text,
                "cost": cost,
                "decided": f.decided,
                "determined": True,
            }
        )
    return out
