"""Findings written from the measurements, with their numbers (pure polars, no charts).

Each `Finding` carries the sentence a reader sees and, for tests and other tools, the data behind it.
Only cells whose status is ok count: an unstable cell's numbers are shown in the tables, never used here,
except that a "best" never hides a faster cell: where an unstable cell measured better than the best stable
one, the finding names it beside the best, with the range its repetitions spread over; and where even its
worst repetition beats every other cell (`_decisive`), it is the best: its repetitions disagree on how fast
it is, not on whether it is first. On a noisy machine that keeps the answer the same from run to run.
Figures carry their uncertainty (value ± u, 95%); where two compared figures' intervals overlap, the
finding says "no significant difference" instead of naming a winner. Where the figures a finding needs
are missing (null), the finding says what could not be determined and why, instead of guessing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import polars as pl

from infbench.report.frame import (
    accuracy_rows,
    complete,
    failed_cells,
    interval,
    measured_cells,
    num,
    ok_cells,
    overlap,
    pct,
    plus_minus,
    several_machines,
    several_models,
    span_of,
)

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


# --- the objectives, per machine and device ------------------------------------------------------------------------


def _tput(row: dict) -> str:
    return plus_minus(
        row["throughput_img_s"], row.get("throughput_uncertainty_pct"), "img/s", span_of(row, "throughput_img_s")
    )


def _p50(row: dict) -> str:
    return plus_minus(row["latency_ms_p50"], row.get("latency_uncertainty_pct"), "ms", span_of(row, "latency_ms_p50"))


def _better_unstable(shaky: pl.DataFrame, best: dict, value: str, descending: bool) -> str:
    """'; onnxruntime int8 on cpu, 32 px, batch 8 measured 8,780 img/s but its repetitions disagreed (range …)':
    the unstable cell of `shaky` that measured better than `best` (none: '')."""
    have = shaky.filter(pl.col(value).is_not_null())
    if have.height == 0:
        return ""
    top = _row(have, value, descending)
    if (top[value] > best[value]) != descending or top[value] == best[value]:
        return ""
    unit = "img/s" if value == "throughput_img_s" else "ms"
    low, high = span_of(top, value) or (None, None)
    spread = f" (range {num(low)}–{num(high, unit)})" if low is not None and high is not None else ""
    return f"; {_config(top)} measured {num(top[value], unit)} but its repetitions disagreed{spread}"


# An unstable cell leads only on this many undisturbed repetitions: its "slowest repetition" must be one
# measured on a quiet machine, and one alone has no spread to speak of.
DECISIVE_QUIET_REPETITIONS = 2
NO_LEAD = "no ok cell has a throughput, and no unstable cell's slowest repetition beats all others"


def _decisive(pool: pl.DataFrame, shaky: pl.DataFrame, value: str, uncertainty: str, descending: bool) -> dict | None:
    """The unstable cell of `shaky` that is first whatever its spread: its worst repetition beats the best end
    of every other cell (a stable cell's interval, another unstable cell's best repetition). Its repetitions
    disagree on how fast it is, not on its being the fastest, so a "best" names it (None: no such cell)."""
    have = shaky.filter(pl.col(value).is_not_null())
    if "quiet_repetitions" not in have:
        return None  # a summary from before the count was kept: no lead can be vouched for
    quiet = have.filter(pl.col("quiet_repetitions") >= DECISIVE_QUIET_REPETITIONS)
    if quiet.height == 0:
        return None
    top = _row(quiet, value, descending)
    low, high = span_of(top, value) or (None, None)
    worst = low if descending else high
    if worst is None:
        return None
    # each rival's best end: an unstable cell's best repetition, a stable cell's interval end
    ends = [(span_of(r, value) or (None, None))[1 if descending else 0] for r in have.to_dicts() if r != top]
    for r in pool.filter(pl.col(value).is_not_null()).iter_rows(named=True):
        lo, hi = interval(r[value], r.get(uncertainty))
        ends.append(hi if descending else lo)
    if None in ends:
        return None  # a rival without its spread: the lead cannot be shown
    ahead = all(worst > e for e in ends) if descending else all(worst < e for e in ends)
    return top if ahead else None


def _decisive_text(lead: dict, value: str) -> str:
    """'openvino int8 on cpu, 32 px, batch 1: 5,738 img/s, unstable (range 4,029–5,842), yet even its slowest
    repetition beats every other cell'."""
    unit = "img/s" if value == "throughput_img_s" else "ms"
    low, high = span_of(lead, value)
    return (
        f"{num(lead[value], unit)}, unstable (range {num(low)}–{num(high, unit)}), yet even its slowest "
        "repetition beats every other cell"
    )


def _runner_up(have: pl.DataFrame, best: dict, by: str, descending: bool) -> dict | None:
    """The best cell of another variant (backend and precision): the alternative a reader would pick instead."""
    others = have.filter((pl.col("backend") != best["backend"]) | (pl.col("precision") != best["precision"]))
    return _row(others, by, descending) if others.height else None


def _contest(best: dict, pool: pl.DataFrame, value: str, uncertainty: str, descending: bool) -> dict:
    """The best cell, the best of another variant in `pool`, and whether they differ beyond their uncertainty."""
    rival = _runner_up(pool, best, value, descending)
    return {"row": best, "runner_up": rival, "significant": _significant(best, rival, value, uncertainty)}


def _significant(best: dict, rival: dict | None, value: str, uncertainty: str) -> bool | None:
    """Whether best and rival differ beyond their uncertainty (None: no rival)."""
    if rival is None:
        return None
    return not overlap(interval(best[value], best.get(uncertainty)), interval(rival[value], rival.get(uncertainty)))


def _margin(best: dict, rival: dict, value: str) -> str:
    """How far the best is ahead of the runner-up, in percent of the runner-up's figure ('31%')."""
    ahead = 100 * abs(best[value] / rival[value] - 1)
    return f"{ahead:.0f}%" if ahead >= 10 else f"{ahead:.1f}%"


def _speedup_clause(row: dict) -> str:
    """The speedup headline, only where both the cell and its baseline are stable."""
    s = row.get("speedup_vs_baseline")
    if s is None:
        return ""
    if not row.get("speedup_stable"):
        return " (no speedup stated: its torch fp32 baseline cell is unstable)"
    lo, hi = row.get("speedup_low"), row.get("speedup_high")
    between = f", interval {lo:.2f}–{hi:.2f}×" if lo is not None and hi is not None else ""
    return f" ({num(s)}× the torch fp32 baseline{between})"


def _max_throughput(ok: pl.DataFrame, p: str, shaky: pl.DataFrame) -> Finding:
    have = ok.filter(pl.col("throughput_img_s").is_not_null())
    lead = _decisive(have, shaky, "throughput_img_s", "throughput_uncertainty_pct", True)
    if lead is not None:
        rival = _row(have, "throughput_img_s", True) if have.height else None
        text = f"{p}Highest throughput: {_config(lead)}: {_decisive_text(lead, 'throughput_img_s')}"
        if rival is not None:
            text += f"; the best stable cell, {_config(rival)}, reaches {_tput(rival)}"
        elif rival := _runner_up(
            shaky.filter(pl.col("throughput_img_s").is_not_null()), lead, "throughput_img_s", True
        ):
            text += f"; the next variant, {_config(rival)}, measured {_tput(rival)} (unstable)"
        data = {"row": lead, "runner_up": rival, "significant": True, "unstable_lead": True}
        return Finding("max_throughput", text + ".", data=data)
    if have.height == 0:
        return Finding("max_throughput", f"{p}Highest throughput: could not be determined ({NO_LEAD}).", False)
    best = _row(have, "throughput_img_s", True)
    data = _contest(best, have, "throughput_img_s", "throughput_uncertainty_pct", True)
    rival = data["runner_up"]
    if data["significant"] is False:
        return Finding(
            "max_throughput",
            f"{p}Highest throughput: no significant difference between {_config(best)} ({_tput(best)}) and "
            f"{_config(rival)} ({_tput(rival)}): their intervals overlap"
            f"{_better_unstable(shaky, best, 'throughput_img_s', True)}.",
            data=data,
        )
    text = f"{p}Highest throughput: {_config(best)}: {_tput(best)}{_speedup_clause(best)}"
    if rival is not None:
        margin = _margin(best, rival, "throughput_img_s")
        text += f"; the next variant, {_config(rival)}, reaches {_tput(rival)} (the best does {margin} more)"
    text += _better_unstable(shaky, best, "throughput_img_s", True)
    return Finding("max_throughput", text + ".", data=data)


def _min_latency_batch1(ok: pl.DataFrame, p: str, shaky: pl.DataFrame) -> Finding:
    have = ok.filter((pl.col("batch_size") == 1) & pl.col("latency_ms_p50").is_not_null())
    lead = _decisive(have, shaky.filter(pl.col("batch_size") == 1), "latency_ms_p50", "latency_uncertainty_pct", False)
    if lead is not None:
        rival = _row(have, "latency_ms_p50", False) if have.height else None
        text = (
            f"{p}Lowest batch-1 latency (p50): {_variant(lead)} at {lead['image_size']} px: "
            f"{_decisive_text(lead, 'latency_ms_p50')}"
        )
        if rival is not None:
            text += f"; the best stable cell, {_variant(rival)} at {rival['image_size']} px, takes {_p50(rival)}"
        elif rival := _runner_up(shaky.filter(pl.col("batch_size") == 1), lead, "latency_ms_p50", False):
            text += f"; the next variant, {_variant(rival)} at {rival['image_size']} px, took {_p50(rival)} (unstable)"
        data = {"row": lead, "runner_up": rival, "significant": True, "unstable_lead": True, "per_size": {}}
        return Finding("min_latency_batch1", text + ".", data=data)
    if have.height == 0:
        reason = "no ok cell ran at batch 1" if ok.filter(pl.col("batch_size") == 1).height == 0 else "no p50 latency"
        return Finding("min_latency_batch1", f"{p}Lowest batch-1 latency: could not be determined ({reason}).", False)
    best = _row(have, "latency_ms_p50", False)
    per_size = {}
    for size in sorted(have.get_column("image_size").drop_nulls().unique().to_list()):
        per_size[size] = _row(have.filter(pl.col("image_size") == size), "latency_ms_p50", False)
    same_size = have.filter(pl.col("image_size") == best["image_size"])
    data = {**_contest(best, same_size, "latency_ms_p50", "latency_uncertainty_pct", False), "per_size": per_size}
    rival = data["runner_up"]
    p99 = best.get("latency_ms_p99")
    if data["significant"] is False:
        text = (
            f"{p}Lowest batch-1 latency (p50) at {best['image_size']} px: no significant difference between "
            f"{_variant(best)} ({_p50(best)}) and {_variant(rival)} ({_p50(rival)}): their intervals overlap"
        )
    else:
        text = f"{p}Lowest batch-1 latency (p50): {_variant(best)} at {best['image_size']} px: {_p50(best)}" + (
            f" (p99 {num(p99, 'ms')})" if p99 is not None else ""
        )
        if rival is not None:
            margin = _margin(best, rival, "latency_ms_p50")
            text += f"; the next variant, {_variant(rival)}, takes {_p50(rival)} (the best takes {margin} less)"
    text += _better_unstable(shaky.filter(pl.col("batch_size") == 1), best, "latency_ms_p50", False)
    if len(per_size) > 1:
        text += "; fastest per image size: " + ", ".join(
            f"{s} px {r['backend']} {r['precision']} {_p50(r)}" for s, r in per_size.items()
        )
    return Finding("min_latency_batch1", text + ".", data=data)


def _best_within_tolerance(ok: pl.DataFrame, p: str, tolerance, shaky: pl.DataFrame) -> Finding:
    have = _tolerance_flags(ok.filter(pl.col("throughput_img_s").is_not_null()), tolerance)
    known = have.filter(pl.col("_over").is_not_null())
    tol = f"{float(tolerance):g}-point " if tolerance is not None else ""
    within = known.filter(~pl.col("_over"))
    unknown = have.height - known.height
    note = f" ({unknown} cells without accuracy figures left out)" if unknown else ""
    within_shaky = _tolerance_flags(shaky, tolerance).filter(pl.col("_over").is_not_null() & ~pl.col("_over"))
    lead = _decisive(within, within_shaky, "throughput_img_s", "throughput_uncertainty_pct", True)
    if lead is not None:
        text = f"{p}Best throughput within the {tol}accuracy tolerance: {_config(lead)}: " + _decisive_text(
            lead, "throughput_img_s"
        )
        text += f" ({_drop(lead)})" if lead.get("accuracy_drop") is not None else ""
        return Finding("best_within_tolerance", text + note + ".", data={"row": lead, "unstable_lead": True})
    if known.height == 0:
        return Finding(
            "best_within_tolerance",
            f"{p}Best throughput within the {tol}accuracy tolerance: could not be determined "
            "(no accuracy figures for the ok cells: the accuracy jobs did not run or the tolerance is not set).",
            False,
        )
    if within.height == 0:
        return Finding(
            "best_within_tolerance",
            f"{p}No ok cell is within the {tol}accuracy tolerance{note}.",
            data={"row": None},
        )
    best = _row(within, "throughput_img_s", True)
    text = f"{p}Best throughput within the {tol}accuracy tolerance: {_config(best)}: {_tput(best)}" + (
        f" ({_drop(best)})" if best.get("accuracy_drop") is not None else ""
    )
    fastest = _row(have, "throughput_img_s", True)
    if fastest.get("_over") and fastest["throughput_img_s"] > best["throughput_img_s"]:
        text += f"; the faster {_config(fastest)} ({_tput(fastest)}) breaks the tolerance" + (
            f" ({_drop(fastest)})" if fastest.get("accuracy_drop") is not None else ""
        )
    text += _better_unstable(within_shaky, best, "throughput_img_s", True)
    return Finding("best_within_tolerance", text + note + ".", data={"row": best})


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


def _best_within_memory_cap(ok: pl.DataFrame, p: str, cap) -> Finding:
    key = "best_within_memory_cap"
    have = _memory(ok.filter(pl.col("throughput_img_s").is_not_null())).filter(pl.col("_mem_mib").is_not_null())
    if have.height == 0:
        why = "could not be determined (no ok cell has a memory figure)"
        return Finding(key, f"{p}Best throughput within the memory cap: {why}.", False)
    smallest = _row(have, "_mem_mib", False)
    peak = f"{num(smallest['_mem_mib'], 'MiB')} ({smallest['_mem_kind']})"
    if cap is None:
        text = f"{p}No memory cap is configured; the smallest peak memory is {peak} for {_config(smallest)}"
        rival = _runner_up(have, smallest, "_mem_mib", False)
        if rival is not None:
            margin = _margin(smallest, rival, "_mem_mib")
            text += f"; the next variant, {_config(rival)}, peaks at {num(rival['_mem_mib'], 'MiB')}"
            text += f" (the smallest needs {margin} less)"
        return Finding(key, text + ".", data={"cap_mib": None, "row": smallest, "runner_up": rival})
    unknown = ok.height - have.height
    note = f" ({unknown} cells without a memory figure left out)" if unknown else ""
    within = have.filter(pl.col("_mem_mib") <= float(cap))
    if within.height == 0:
        cap_text = num(cap, "MiB")
        text = f"{p}No ok cell fits in the {cap_text} memory cap; the smallest, {_config(smallest)}, peaks at {peak}"
        return Finding(key, text + note + ".", data={"cap_mib": cap, "row": None})
    best = _row(within, "throughput_img_s", True)
    text = (
        f"{p}Best throughput within the {num(cap, 'MiB')} memory cap: {_config(best)}: {_tput(best)} with a "
        f"{best['_mem_kind']} memory peak of {num(best['_mem_mib'], 'MiB')}"
    )
    return Finding(key, text + note + ".", data={"cap_mib": cap, "row": best})


def _mj(row: dict) -> str:
    return plus_minus(row["energy_mj_per_image"], row.get("energy_uncertainty_pct"), "mJ/img")


def _min_energy_per_image(ok: pl.DataFrame, p: str) -> Finding:
    """The least energy per image (NVML's counter over the throughput windows; GPU cells only)."""
    have = ok.filter(pl.col("energy_mj_per_image").is_not_null())
    if have.height == 0:
        why = "no ok cell has an NVML energy figure"
        return Finding("min_energy_per_image", f"{p}Least energy per image: could not be determined ({why}).", False)
    best = _row(have, "energy_mj_per_image", False)
    data = _contest(best, have, "energy_mj_per_image", "energy_uncertainty_pct", False)
    rival = data["runner_up"]
    if data["significant"] is False:
        text = (
            f"{p}Least energy per image: no significant difference between {_config(best)} ({_mj(best)}) and "
            f"{_config(rival)} ({_mj(rival)}): their intervals overlap."
        )
        return Finding("min_energy_per_image", text, data=data)
    power = best.get("power_w")
    text = f"{p}Least energy per image: {_config(best)}: {_mj(best)}" + (
        f" (at {num(power, 'W')})" if power is not None else ""
    )
    if rival is not None:
        margin = _margin(best, rival, "energy_mj_per_image")
        text += f"; the next variant, {_config(rival)}, needs {_mj(rival)} (the best needs {margin} less)"
    return Finding("min_energy_per_image", text + ".", data=data)


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


def _saturation_part(r: dict) -> str:
    """One image size of a saturation finding: where the throughput saturates, or that it still rises."""
    if not r["saturated"]:
        return (
            f"{r['image_size']} px: not reached, still rising at batch {r['largest_batch']} "
            f"(the largest tried, {num(r['max_throughput'], 'img/s')})"
        )
    return (
        f"{r['image_size']} px: batch {r['saturation_batch']} ({num(r['saturation_throughput'], 'img/s')}; "
        f"max {num(r['max_throughput'], 'img/s')} at batch {r['max_batch']})"
    )


def _saturation_findings(ok: pl.DataFrame, df: pl.DataFrame, multi_machine: bool) -> list[Finding]:
    """Saturation per group, except groups where a cell is unstable: the batch curve has a hole there, and a
    saturation claim must not rest on (or around) an unstable cell."""
    keys = ["machine", "backend", "precision", "device", "image_size"]
    left_out = df.filter(pl.col("status") == "unstable").select(keys).unique(maintain_order=True).to_dicts()
    shaky = {tuple(r[k] for k in keys) for r in left_out}
    rows = [r for r in saturation(ok) if tuple(r[k] for k in keys) not in shaky]
    out = []
    if not rows:
        out.append(
            Finding(
                "saturation",
                "Batch saturation could not be determined: no backend/precision/size has ok throughput at two or "
                "more batch sizes" + (" without an unstable cell" if left_out else "") + ".",
                False,
                data={"left_out": left_out},
            )
        )
    variants: dict[tuple, list[dict]] = {}
    for r in rows:
        variants.setdefault((r["machine"], r["backend"], r["precision"], r["device"]), []).append(r)
    for (machine, backend, precision, device), group in variants.items():
        where = f" [{machine}]" if multi_machine else ""
        text = (
            f"Batch saturation (first batch within 10% of the maximum throughput), {backend} {precision} on "
            f"{device}{where}: " + "; ".join(_saturation_part(r) for r in group) + "."
        )
        out.append(Finding("saturation", text, data={"groups": group}))
    if left_out:
        names = [
            f"{r['backend']} {r['precision']} on {r['device']}"
            + (f" [{r['machine']}]" if multi_machine else "")
            + f" at {r['image_size']} px"
            for r in left_out
        ]
        out.append(
            Finding(
                "saturation",
                "Batch saturation not stated for " + "; ".join(names) + ": a cell of the batch series is unstable.",
                False,
                data={"left_out": left_out},
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


def _name(v: dict) -> str:
    return f"{v.get('backend')} {v.get('precision')} on {v.get('device')}"


def _accuracy_finding(summary: pl.DataFrame, meta: dict) -> Finding:
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


def _int8_finding(summary: pl.DataFrame, meta: dict) -> Finding | None:
    """Calibrated static INT8 against dynamic INT8, side by side, where the grid has both (per backend
    and device): the accuracy each costs."""
    rows = {(a["backend"], a["device"], a["precision"]): a for a in accuracy_rows(summary, meta)}
    pairs = [
        (rows[(b, d, "int8")], rows[(b, d, "int8_dynamic")])
        for b, d, p in rows
        if p == "int8" and (b, d, "int8_dynamic") in rows
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
            f"{static['backend']} on {static['device']}: calibrated static INT8 drops {num(static['accuracy_drop'])} "
            f"points (top-1 {pct(static.get('accuracy_top1'))}), dynamic INT8 {num(dynamic['accuracy_drop'])} points "
            f"(top-1 {pct(dynamic.get('accuracy_top1'))}): {verdict}"
        )
    if not parts:
        return None
    return Finding("int8_static_vs_dynamic", "INT8, static against dynamic: " + "; ".join(parts) + ".")


def _cross_model(ok: pl.DataFrame, p: str, tolerance) -> Finding:
    """Several models: the most accurate variant of any model, and the fastest cell (throughput, and
    batch-1 latency) of any model whose accuracy is within the tolerance of it."""
    have = ok.filter(pl.col("accuracy_top1").is_not_null())
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
    single = near.filter((pl.col("batch_size") == 1) & pl.col("latency_ms_p50").is_not_null())
    quickest = _row(single, "latency_ms_p50", False) if single.height else None
    if quickest:
        parts.append(
            f"the lowest batch-1 latency within it is {who(quickest)} at {quickest['image_size']} px, "
            f"p50 {_p50(quickest)} (top-1 {pct(quickest['accuracy_top1'])})"
        )
    data = {"most_accurate": top, "fastest": fastest, "lowest_latency": quickest, "tolerance_points": tolerance}
    return Finding("cross_model", "; ".join(parts) + ".", data=data)


def _status_finding(df: pl.DataFrame) -> Finding:
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
    ok = total - bad.height - unstable
    parts = [f"All {total} cells ran ok" if ok == total else f"{ok} of {total} cells ran ok"]
    if unstable:
        parts.append(
            f"{unstable} unstable (their ± is wider than the tolerance: shown marked; "
            "a finding uses one only where even its slowest repetition beats every other cell)"
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
    """Where a machine's drift is wider than the tolerance: that no CPU cell can be stable there, what its
    numbers hold to, and what to change (report/aggregate.py)."""
    limited = df.filter(pl.col("drift_limited").fill_null(False))
    notes = []
    for machine, rows in limited.group_by("machine", maintain_order=True):
        first = rows.row(0, named=True)
        floor, tolerance = first["drift_floor_pct"], first["tolerance_pct"]
        notes.append(
            f" On {machine[0]}'s CPU the run's drift (±{floor:.1f}%, the typical cell's interval) is wider than "
            f"the tolerance (±{tolerance:g}%, bench.tolerance): no CPU cell can be stable there "
            f"({rows.height} {'is' if rows.height == 1 else 'are'} unstable for that alone). Its numbers hold to "
            f"about ±{floor:.1f}%: for a ±{tolerance:g}% verdict measure on a quieter machine (no other work); "
            f"a bench.tolerance above {floor / 100:.3f} judges the cells by their own spread instead."
        )
    return "".join(notes)


def _launch_bound_finding(df: pl.DataFrame, multi_machine: bool) -> Finding | None:
    """Which cells the host, not the device, paces (None where no cell can be launch-bound: CPU, ONNX Runtime)."""
    known = df.filter(pl.col("launch_bound").is_not_null())
    if known.height == 0:
        return None
    bound = known.filter(pl.col("launch_bound"))
    if bound.height == 0:
        return Finding("launch_bound", f"No cell is launch-bound (all {known.height} checked).", data={"cells": []})
    names = []
    for (machine, backend, precision, device), group in bound.group_by(
        ["machine", "backend", "precision", "device"], maintain_order=True
    ):
        sizes = group.group_by("image_size", maintain_order=True).agg(pl.col("batch_size").sort()).sort("image_size")
        where = f" [{machine}]" if multi_machine else ""
        names.append(
            f"{backend} {precision} on {device}{where} at "
            + ", ".join(f"{size} px batch {', '.join(map(str, b))}" for size, b in sizes.iter_rows())
        )
    return Finding(
        "launch_bound",
        f"{bound.height} of {known.height} cells are launch-bound (the host's Python and kernel launches set the "
        "pace, not the device; another process or host can give a different number): " + "; ".join(names) + ".",
        data={"cells": bound.to_dicts()},
    )


def findings(summary: pl.DataFrame, meta: dict) -> list[Finding]:
    """Every finding, in reading order: cells, launch-bound cells, objectives per machine/device, batch, size,
    utilisation, accuracy."""
    df = complete(summary)
    ok = ok_cells(df)
    out = [f for f in (_model_finding(meta), _status_finding(df)) if f]
    launch = _launch_bound_finding(measured_cells(df), several_machines(df))
    if launch:
        out.append(launch)
    measured = measured_cells(df)
    if measured.height == 0:
        out.append(Finding("max_throughput", "No cell was measured, so no configuration can be recommended.", False))
        out.append(_accuracy_finding(df, meta))
        return out
    # Scopes of the measured cells, not only the stable ones: on a noisy machine every cell may be unstable,
    # and a cell whose slowest repetition beats all others is still the answer (`_decisive`).
    multi_machine = several_machines(measured)
    multi_device = measured.get_column("device").n_unique() > 1
    scopes = measured.select("machine", "device").unique(maintain_order=True).iter_rows()
    for machine, device in scopes:
        part = ok.filter((pl.col("machine") == machine) & (pl.col("device") == device))
        shaky = df.filter(
            (pl.col("status") == "unstable") & (pl.col("machine") == machine) & (pl.col("device") == device)
        )
        p = _scope_prefix(machine, device, multi_machine, multi_device)
        out += [
            _max_throughput(part, p, shaky),
            _min_latency_batch1(part, p, shaky),
            _best_within_tolerance(part, p, meta.get("tolerance_points"), shaky),
            _best_within_memory_cap(part, p, meta.get("memory_cap_mib")),
        ]
        if device != "cpu":  # NVML's energy: a GPU's figure (a CPU cell has none to compare)
            out.append(_min_energy_per_image(part, p))
        if several_models(part):
            out.append(_cross_model(part, p, meta.get("tolerance_points")))
    out += _saturation_findings(ok, df, multi_machine)
    out += _scaling_findings(ok, multi_machine)
    for machine, device in ok.select("machine", "device").unique(maintain_order=True).iter_rows():
        part = ok.filter((pl.col("machine") == machine) & (pl.col("device") == device))
        out.append(_best_utilization(part, _scope_prefix(machine, device, multi_machine, multi_device)))
    out.append(_accuracy_finding(df, meta))
    int8 = _int8_finding(df, meta)
    return [*out, int8] if int8 else out
