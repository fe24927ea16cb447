"""The cell's result file: its schema version and the one line a cell prints."""

from __future__ import annotations

from infbench.core.cell import Cell
from infbench.measure import repetitions

SCHEMA_VERSION = 3  # 3: memory figures named *_mib


def _spread_text(result: dict) -> str:
    """'±3.1%', or the repetitions' range where the ± would pass MAX_PRINTED."""
    u = result["throughput_uncertainty_pct"]
    if u is not None and u <= 100 * repetitions.MAX_PRINTED:
        return f"±{u:.1f}%"
    return f"(range {result['throughput_min_img_s']:.1f}–{result['throughput_max_img_s']:.1f})"


def cell_line(result: dict) -> str:
    """One line per cell: its figures with their uncertainty, or why it has none."""
    line = f"{Cell(**result['cell']).key}: {result['status']}"
    if result.get("throughput_img_s") is None:
        return line + f": {result['error']}"
    runs = result["repetition_runs"]
    line += (
        f", {result['throughput_img_s']:.1f} img/s {_spread_text(result)}, "
        f"latency p50 {result['latency_ms_p50']:.3f} ms, {result['repetitions']} repetitions"
        f" ({len(runs)} run, {result['disturbed_repetitions']} disturbed, {result['adaptive_repetitions']} adaptive)"
    )
    if result.get("launch_bound"):
        line += ", launch-bound"
    return line
