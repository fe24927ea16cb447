"""A cell's figures combined over its repetitions (median, uncertainty, stability verdict)."""

from __future__ import annotations

import statistics

from infbench.core.cell import Cell
from infbench.measure import repetitions, timing


def combined_throughput(reps: list[dict]) -> dict:
    return repetitions.combine([r["throughput"]["img_s"] for r in reps], [r["throughput"]["ci95_rel"] for r in reps])


def _pct(figure: dict) -> float | None:
    """A combined figure's uncertainty in percent (None where it has none)."""
    rel = figure.get("uncertainty_rel")
    return None if rel is None else 100 * rel


def cell_figures(cell: Cell, runs: list[dict], tolerance: float, min_repetitions: int) -> dict:
    """The cell's figures over its repetitions (undisturbed ones; all of them if none was quiet)."""
    quiet = [r for r in runs if not r["disturbed"]]
    good = quiet or runs
    tp = combined_throughput(good)
    stability = repetitions.verdict(tp, tolerance, min_repetitions)
    if len(good) < min_repetitions or any(r["disturbed"] for r in good):
        stability = "unstable"  # too few quiet repetitions to vouch for the figure
    if (tp["uncertainty_rel"] or 0) > repetitions.MAX_PRINTED:
        stability = "unstable"  # shown as its range, never as a ± wider than the number's half
    # a percentile a repetition had too few batches for (measure/timing.py MIN_SAMPLES) is None in all of them
    latency = {
        q: repetitions.combine(values, [None] * len(values))
        if (values := [r["latency"][f"{q}_ms"] for r in good if r["latency"][f"{q}_ms"] is not None])
        else {"value": None}
        for q in ("p50", "p90", "p99")
    }
    # Launch-bound only has a meaning where work is queued asynchronously on a device.
    asynchronous = cell.device != "cpu" and not good[0]["synchronous_run"]
    host_fraction = statistics.median(r["latency"]["host_issue_fraction"] for r in good) if asynchronous else None
    launch_bound = host_fraction >= timing.LAUNCH_BOUND_FRACTION if asynchronous else None
    energy = [r for r in good if (r.get("nvml") or {}).get("energy_mj_per_image") is not None]
    nvml = (
        sorted(energy, key=lambda r: r["nvml"]["energy_mj_per_image"])[len(energy) // 2]["nvml"]
        if energy
        else good[0]["nvml"]
    )
    # The energy figures' ± as the throughput's: a rerun's repetition lands within it (the median
    # repetition's section is kept whole above, so that energy per image × its window's rate = power).
    spread = {
        figure: repetitions.combine([r["nvml"][figure] for r in energy], [None] * len(energy)) if energy else {}
        for figure in ("energy_mj_per_image", "power_w")
    }
    memory = max(good, key=lambda r: r["memory"].get("device_peak_mib") or 0)["memory"]
    return {
        "stability": stability,
        "throughput_img_s": tp["value"],
        "throughput_uncertainty_pct": _pct(tp),
        # the repetitions' range: what the report shows where the ± would pass 50%
        "throughput_min_img_s": tp["min"],
        "throughput_max_img_s": tp["max"],
        "time_per_image_ms": 1000 / tp["value"],
        "latency_ms_p50": latency["p50"]["value"],
        "latency_ms_p90": latency["p90"]["value"],
        "latency_ms_p99": latency["p99"]["value"],
        "latency_uncertainty_pct": _pct(latency["p50"]),
        "latency_p50_min_ms": latency["p50"]["min"],
        "latency_p50_max_ms": latency["p50"]["max"],
        "throughput": tp,
        "latency": latency,
        "repetitions": len(good),
        "quiet_repetitions": len(quiet),  # 0: the figures come from disturbed repetitions, none was quiet
        "adaptive_repetitions": sum(1 for r in runs if r.get("adaptive")),  # beyond max_extra, from the budget
        "disturbed_repetitions": sum(1 for r in runs if r["disturbed"]),
        "host_issue_fraction": host_fraction,
        "launch_bound": launch_bound,
        "load_s": statistics.median(r["load_s"] for r in good),
        # time to first inference: load plus the first batch (where torch.compile compiles and autotunes)
        "first_inference_s": statistics.median(r["load_s"] + r.get("first_batch_s", 0.0) for r in good),
        "nvml": nvml,
        "energy_uncertainty_pct": _pct(spread["energy_mj_per_image"]),
        "power_uncertainty_pct": _pct(spread["power_w"]),
        # each repetition's energy per image: a comparison of two cells' energy is decided by them
        "energy_repetitions": [r["nvml"]["energy_mj_per_image"] for r in energy],
        "memory": dict(memory),
    }
