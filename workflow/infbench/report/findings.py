"""Findings written from the measurements, with their numbers (pure polars, no charts).

Each `Finding` carries the sentence a reader sees and, for tests and other tools, the data behind it.
Only cells whose status is ok count. Where the figures a finding needs are missing (null), the finding
says what could not be determined and why, instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from infbench.report.frame import complete, num, ok_cells, pct, several_machines

SATURATION_FRACTION = 0.9  # throughput within 10% of the group's maximum counts as saturated


@dataclass(frozen=True)
class Finding:
    key: str  # what was asked: max_throughput, min_latency_batch1, best_within_tolerance, ...
    text: str  # the sentence, with numbers
    determined: bool = True  # False: the data could not answer; `text` says why
    data: dict = field(default_factory=dict)

    def __str__(self) -> str:
        return self.text


def _scope_prefix(machine: str, device: str, multi_machine: bool, multi_device: bool) -> str:
    if multi_machine:
        return f"[{machine}, {device}] "
    if multi_device:
        return f"[{device}] "
    return ""


def _variant(row: dict) -> str:
    return f"{row['backend']} {row['precision']} on {row['device']}"


def _config(row: dict) -> str:
    return f"{_variant(row)}, {row['image_size']} px, batch {row['batch_size']}"


def _row(df: pl.DataFrame, by: str, descending: bool) -> dict:
    return df.sort(by, descending=descending, nulls_last=True).row(0, named=True)


def _tolerance_flags(df: pl.DataFrame, tolerance) -> pl.DataFrame:
    """Add `_over`: the cell's variant breaks the tolerance (True/False), null where unknown."""
    derived = pl.lit(None, pl.Boolean)
    if tolerance is not None:
        derived = pl.when(pl.col("accuracy_drop").is_not_null()).then(pl.col("accuracy_drop") > float(tolerance))
    return df.with_columns(pl.coalesce(pl.col("over_tolerance"), derived).alias("_over"))


def _memory(df: pl.DataFrame) -> pl.DataFrame:
    """Add `_mem_mb` (device peak when measured, else host peak) and `_mem_kind`."""
    return df.with_columns(
        pl.coalesce("device_memory_peak_mb", "host_memory_peak_mb").alias("_mem_mb"),
        pl.when(pl.col("device_memory_peak_mb").is_not_null())
        .then(pl.lit("device"))
        .when(pl.col("host_memory_peak_mb").is_not_null())
        .then(pl.lit("host"))
        .alias("_mem_kind"),
    )


# --- the objectives, per machine and device ------------------------------------------------------------------------


def _max_throughput(ok: pl.DataFrame, p: str) -> Finding:
    have = ok.filter(pl.col("throughput_img_s").is_not_null())
    if have.height == 0:
        return Finding(
            "max_throughput", f"{p}Highest throughput: could not be determined (no ok cell has a throughput).", False
        )
    best = _row(have, "throughput_img_s", True)
    speedup = best.get("speedup_vs_baseline")
    extra = f" ({num(speedup)}× the torch fp32 baseline)" if speedup is not None else ""
    return Finding(
        "max_throughput",
        f"{p}Highest throughput: {_config(best)}: {num(best['throughput_img_s'], 'img/s')}{extra}.",
        data={"row": best},
    )


def _min_latency_batch1(ok: pl.DataFrame, p: str) -> Finding:
    have = ok.filter((pl.col("batch_size") == 1) & pl.col("latency_ms_median").is_not_null())
    if have.height == 0:
        reason = (
            "no ok cell ran at batch 1" if ok.filter(pl.col("batch_size") == 1).height == 0 else "no median latency"
        )
        return Finding("min_latency_batch1", f"{p}Lowest batch-1 latency: could not be determined ({reason}).", False)
    best = _row(have, "latency_ms_median", False)
    per_size = {}
    for size in sorted(have.get_column("image_size").drop_nulls().unique().to_list()):
        per_size[size] = _row(have.filter(pl.col("image_size") == size), "latency_ms_median", False)
    p99 = best.get("latency_ms_p99")
    text = (
        f"{p}Lowest batch-1 latency (median): {_variant(best)} at {best['image_size']} px: "
        f"{num(best['latency_ms_median'], 'ms')}" + (f" (p99 {num(p99, 'ms')})" if p99 is not None else "")
    )
    if len(per_size) > 1:
        text += "; per image size: " + ", ".join(
            f"{s} px {r['backend']} {r['precision']} {num(r['latency_ms_median'], 'ms')}" for s, r in per_size.items()
        )
    return Finding("min_latency_batch1", text + ".", data={"row": best, "per_size": per_size})


def _best_within_tolerance(ok: pl.DataFrame, p: str, tolerance) -> Finding:
    have = _tolerance_flags(ok.filter(pl.col("throughput_img_s").is_not_null()), tolerance)
    known = have.filter(pl.col("_over").is_not_null())
    tol = f"{float(tolerance):g}-point " if tolerance is not None else ""
    if known.height == 0:
        return Finding(
            "best_within_tolerance",
            f"{p}Best throughput within the {tol}accuracy tolerance: could not be determined "
            "(no accuracy figures for the ok cells: the accuracy jobs did not run or the tolerance is not set).",
            False,
        )
    within = known.filter(~pl.col("_over"))
    unknown = have.height - known.height
    note = f" ({unknown} cells without accuracy figures left out)" if unknown else ""
    if within.height == 0:
        return Finding(
            "best_within_tolerance",
            f"{p}No ok cell is within the {tol}accuracy tolerance{note}.",
            data={"row": None},
        )
    best = _row(within, "throughput_img_s", True)
    drop = best.get("accuracy_drop")
    text = (
        f"{p}Best throughput within the {tol}accuracy tolerance: {_config(best)}: "
        f"{num(best['throughput_img_s'], 'img/s')}"
        + (f" (accuracy drop {num(drop)} points)" if drop is not None else "")
    )
    fastest = _row(have, "throughput_img_s", True)
    if fastest.get("_over") and fastest["throughput_img_s"] > best["throughput_img_s"]:
        text += (
            f"; the faster {_config(fastest)} ({num(fastest['throughput_img_s'], 'img/s')}) breaks the tolerance"
            + (
                f" with a drop of {num(fastest['accuracy_drop'])} points"
                if fastest.get("accuracy_drop") is not None
                else ""
            )
        )
    return Finding("best_within_tolerance", text + note + ".", data={"row": best})


def _best_within_memory_cap(ok: pl.DataFrame, p: str, cap) -> Finding:
    have = _memory(ok.filter(pl.col("throughput_img_s").is_not_null())).filter(pl.col("_mem_mb").is_not_null())
    if have.height == 0:
        return Finding(
            "best_within_memory_cap",
            f"{p}Best throughput within the memory cap: could not be determined (no ok cell has a memory figure).",
            False,
        )
    if cap is None:
        smallest = _row(have, "_mem_mb", False)
        return Finding(
            "best_within_memory_cap",
            f"{p}No memory cap is configured; the smallest peak memory is {num(smallest['_mem_mb'], 'MB')} "
            f"({smallest['_mem_kind']}) for {_config(smallest)}.",
            data={"cap_mb": None, "row": smallest},
        )
    unknown = ok.height - have.height
    note = f" ({unknown} cells without a memory figure left out)" if unknown else ""
    within = have.filter(pl.col("_mem_mb") <= float(cap))
    if within.height == 0:
        smallest = _row(have, "_mem_mb", False)
        return Finding(
            "best_within_memory_cap",
            f"{p}No ok cell fits in the {num(cap, 'MB')} memory cap; the smallest, {_config(smallest)}, "
            f"peaks at {num(smallest['_mem_mb'], 'MB')} ({smallest['_mem_kind']}){note}.",
            data={"cap_mb": cap, "row": None},
        )
    best = _row(within, "throughput_img_s", True)
    return Finding(
        "best_within_memory_cap",
        f"{p}Best throughput within the {num(cap, 'MB')} memory cap: {_config(best)}: "
        f"{num(best['throughput_img_s'], 'img/s')} with a {best['_mem_kind']} memory peak of "
        f"{num(best['_mem_mb'], 'MB')}{note}.",
        data={"cap_mb": cap, "row": best},
    )


def _best_utilization(ok: pl.DataFrame, p: str) -> Finding:
    have = ok.filter(pl.col("utilization_pct").is_not_null())
    if have.height == 0:
        return Finding(
            "best_utilization",
            f"{p}Utilisation could not be determined: no ok cell has a FLOP-based utilisation "
            "(it needs the FLOP count and the hardware probe's measured peak).",
            False,
        )
    best = _row(have, "utilization_pct", True)
    achieved = best.get("achieved_tflops")
    text = (
        f"{p}Best utilisation: {_config(best)} reaches {num(best['utilization_pct'])}% of the measured "
        f"{best['precision']} peak" + (f" ({num(achieved)} TFLOP/s achieved)" if achieved is not None else "") + "."
    )
    if best["utilization_pct"] > 100:
        text += OVER_PEAK
    return Finding("best_utilization", text, data={"row": best})


# Why a cell can pass 100% of a measured peak without a measuring error.
OVER_PEAK = (
    " Above 100%: the FLOP count is the nominal work of every convolution tap, taps on the zero padding"
    " included, against the peak of a dense matrix product; a runtime that skips padded taps (ONNX Runtime's"
    " NCHWc CPU kernels do; at small images they are a large share: at 32 px the last stage is 1×1, 8 of"
    " its 9 taps padding) or uses Winograd/FFT convolutions does less arithmetic than counted."
)


# --- batch and size behaviour ---------------------------------------------------------------------------------------


def saturation(ok: pl.DataFrame) -> list[dict]:
    """Per machine/backend/precision/device/size: the first batch within 10% of the maximum throughput."""
    have = ok.filter(pl.col("throughput_img_s").is_not_null() & pl.col("batch_size").is_not_null())
    out = []
    keys = ["machine", "backend", "precision", "device", "image_size"]
    for key, group in have.group_by(keys, maintain_order=True):
        group = group.sort("batch_size")
        batches = group.get_column("batch_size").to_list()
        if len(set(batches)) < 2:
            continue
        tput = group.get_column("throughput_img_s").to_list()
        top = max(tput)
        first = next(b for b, t in zip(batches, tput, strict=True) if t >= SATURATION_FRACTION * top)
        out.append(
            {
                **dict(zip(keys, key, strict=True)),
                "saturation_batch": first,
                "max_batch": batches[tput.index(top)],
                "max_throughput": top,
                "saturation_throughput": tput[batches.index(first)],
                "largest_batch": batches[-1],
                "saturated": first < batches[-1],
            }
        )
    return out


def _saturation_findings(ok: pl.DataFrame, multi_machine: bool) -> list[Finding]:
    rows = saturation(ok)
    if not rows:
        return [
            Finding(
                "saturation",
                "Batch saturation could not be determined: no backend/precision/size has ok throughput at two or "
                "more batch sizes.",
                False,
            )
        ]
    out = []
    variants = {(r["machine"], r["backend"], r["precision"], r["device"]): [] for r in rows}
    for r in rows:
        variants[(r["machine"], r["backend"], r["precision"], r["device"])].append(r)
    for (machine, backend, precision, device), group in variants.items():
        parts = []
        for r in group:
            if r["saturated"]:
                parts.append(
                    f"{r['image_size']} px: batch {r['saturation_batch']} "
                    f"({num(r['saturation_throughput'], 'img/s')}; max {num(r['max_throughput'], 'img/s')} at batch "
                    f"{r['max_batch']})"
                )
            else:
                parts.append(
                    f"{r['image_size']} px: not reached, still rising at batch {r['largest_batch']} "
                    f"(the largest tried, {num(r['max_throughput'], 'img/s')})"
                )
        where = f" [{machine}]" if multi_machine else ""
        out.append(
            Finding(
                "saturation",
                f"Batch saturation (first batch within 10% of the maximum throughput), {backend} {precision} on "
                f"{device}{where}: " + "; ".join(parts) + ".",
                data={"groups": group},
            )
        )
    return out


def size_scaling(ok: pl.DataFrame) -> list[dict]:
    """Per machine/backend/precision/device: time per image at each size against the smallest size, and the
    FLOP ratio (pixel ratio where FLOP counts are missing), at the batch size measured at the most sizes."""
    time = pl.coalesce(pl.col("time_per_image_ms"), 1000.0 / pl.col("throughput_img_s")).alias("_tpi")
    have = ok.with_columns(time).filter(pl.col("_tpi").is_not_null() & pl.col("image_size").is_not_null())
    out = []
    for key, group in have.group_by(["machine", "backend", "precision", "device"], maintain_order=True):
        counts = group.group_by("batch_size").agg(pl.col("image_size").n_unique().alias("n")).filter(pl.col("n") >= 2)
        if counts.height == 0:
            continue
        batch = counts.sort(["n", "batch_size"], descending=True).row(0, named=True)["batch_size"]
        cells = group.filter(pl.col("batch_size") == batch).sort("image_size").unique("image_size", keep="first")
        cells = cells.sort("image_size").to_dicts()
        base = cells[0]
        for cell in cells[1:]:
            if base["gflops_per_image"] and cell["gflops_per_image"] is not None:
                ratio, source = cell["gflops_per_image"] / base["gflops_per_image"], "flops"
            else:
                ratio, source = (cell["image_size"] / base["image_size"]) ** 2, "pixels"
            time_ratio = cell["_tpi"] / base["_tpi"]
            out.append(
                {
                    **dict(zip(["machine", "backend", "precision", "device"], key, strict=True)),
                    "batch_size": batch,
                    "from_size": base["image_size"],
                    "to_size": cell["image_size"],
                    "time_ratio": time_ratio,
                    "flop_ratio": ratio,
                    "flop_source": source,
                    "efficiency": ratio / time_ratio,  # > 1: larger images use the hardware better
                }
            )
    return out


def _verdict(efficiency: float, what: str) -> str:
    if efficiency > 1.1:
        return f"time grows more slowly than the {what}: larger images use the hardware better"
    if efficiency < 0.9:
        return f"time grows faster than the {what}: larger images cost more than their arithmetic (memory traffic)"
    return f"time grows in line with the {what}"


def _scaling_findings(ok: pl.DataFrame, multi_machine: bool) -> list[Finding]:
    rows = size_scaling(ok)
    if not rows:
        return [
            Finding(
                "size_scaling",
                "Scaling with image size could not be determined: no backend/precision has ok cells at two or more "
                "image sizes with the same batch size.",
                False,
            )
        ]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["machine"], r["backend"], r["precision"], r["device"], r["batch_size"]), []).append(r)
    out = []
    for (machine, backend, precision, device, batch), group in groups.items():
        what = "" if all(r["flop_source"] == "flops" for r in group) else "; pixel ratio used: FLOP counts missing"
        parts = [
            f"{r['from_size']}→{r['to_size']} px costs {num(r['time_ratio'])}× the time per image for "
            f"{num(r['flop_ratio'])}× the {'FLOPs' if r['flop_source'] == 'flops' else 'pixel count'}"
            for r in group
        ]
        where = f" [{machine}]" if multi_machine else ""
        last = group[-1]
        verdict = _verdict(last["efficiency"], "FLOPs" if last["flop_source"] == "flops" else "pixel count")
        out.append(
            Finding(
                "size_scaling",
                f"Image size, {backend} {precision} on {device}{where} at batch {batch}: "
                + "; ".join(parts)
                + f" ({verdict}{what}).",
                data={"rows": group},
            )
        )
    return out


# --- accuracy and cell status ---------------------------------------------------------------------------------------


def _variants(summary: pl.DataFrame, meta: dict) -> list[dict]:
    """Accuracy per variant: meta['accuracy'] when the accuracy jobs ran, else what the summary carries."""
    listed = [
        dict(a)
        for a in meta.get("accuracy") or []
        if a.get("accuracy_top1") is not None or a.get("accuracy_drop") is not None
    ]
    if listed:
        return listed
    cols = ["backend", "precision", "device", "accuracy_top1", "accuracy_drop", "over_tolerance"]
    have = summary.filter(pl.col("accuracy_top1").is_not_null() | pl.col("accuracy_drop").is_not_null())
    return have.select(cols).unique(["backend", "precision", "device"], maintain_order=True).to_dicts()


def _name(v: dict) -> str:
    return f"{v.get('backend')} {v.get('precision')} on {v.get('device')}"


def _accuracy_finding(summary: pl.DataFrame, meta: dict) -> Finding:
    tolerance = meta.get("tolerance_points")
    variants = _variants(summary, meta)
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
            f"{_name(v)}: drop {num(v.get('accuracy_drop'))} points (top-1 {pct(v.get('accuracy_top1'))})" for v in over
        )
    elif within:
        worst = max(within, key=lambda v: v.get("accuracy_drop") or 0.0)
        text = (
            f"All {len(within)} variants with accuracy figures are within the {tol}accuracy tolerance "
            f"(largest drop {num(worst.get('accuracy_drop'))} points: {_name(worst)})"
        )
    else:
        text = "No variant could be checked against the accuracy tolerance (the tolerance or the drops are missing)"
    if unknown and (over or within):
        text += f"; {len(unknown)} not checked (tolerance or drop missing)"
    return Finding(
        "over_tolerance",
        text + ".",
        determined=bool(over or within),
        data={"over": over, "within": within, "unknown": unknown, "tolerance_points": tolerance},
    )


def _status_finding(df: pl.DataFrame) -> Finding:
    total = df.height
    if total == 0:
        return Finding("cells", "The summary holds no cells: nothing was measured.", False, {"total": 0, "not_ok": {}})
    bad = df.filter(pl.col("status") != "ok")
    if bad.height == 0:
        return Finding("cells", f"All {total} cells ran ok.", data={"total": total, "not_ok": {}})
    counts = dict(bad.group_by("status").len().sort("status").iter_rows())
    return Finding(
        "cells",
        f"{bad.height} of {total} cells did not run ok: "
        + ", ".join(f"{n} {status}" for status, n in counts.items())
        + " (see the failures table).",
        data={"total": total, "not_ok": counts},
    )


def findings(summary: pl.DataFrame, meta: dict) -> list[Finding]:
    """Every finding, in reading order: cells, objectives per machine/device, batch, size, utilisation, accuracy."""
    df = complete(summary)
    ok = ok_cells(df)
    out = [_status_finding(df)]
    if ok.height == 0:
        out.append(Finding("max_throughput", "No cell ran ok, so no configuration can be recommended.", False))
        out.append(_accuracy_finding(df, meta))
        return out
    multi_machine = several_machines(ok)
    multi_device = ok.get_column("device").n_unique() > 1
    scopes = ok.select("machine", "device").unique(maintain_order=True).iter_rows()
    for machine, device in scopes:
        part = ok.filter((pl.col("machine") == machine) & (pl.col("device") == device))
        p = _scope_prefix(machine, device, multi_machine, multi_device)
        out += [
            _max_throughput(part, p),
            _min_latency_batch1(part, p),
            _best_within_tolerance(part, p, meta.get("tolerance_points")),
            _best_within_memory_cap(part, p, meta.get("memory_cap_mb")),
        ]
    out += _saturation_findings(ok, multi_machine)
    out += _scaling_findings(ok, multi_machine)
    for machine, device in ok.select("machine", "device").unique(maintain_order=True).iter_rows():
        part = ok.filter((pl.col("machine") == machine) & (pl.col("device") == device))
        out.append(_best_utilization(part, _scope_prefix(machine, device, multi_machine, multi_device)))
    out.append(_accuracy_finding(df, meta))
    return out
