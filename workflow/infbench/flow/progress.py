"""What a run prints while it runs: one line per finished job, a cell's result on its line, the share of the
run done and the time left; at the end the headline findings and where the report is.

The Snakemake logger plugin `snakemake_logger_plugin_infbench` (the default profile turns it on) feeds this
module Snakemake's events; everything here is plain functions of files and numbers, so it is tested without
Snakemake. Result files are read defensively: a key that is missing is left out of the line, never guessed.
"""

from __future__ import annotations

import json
import time
from collections import Counter, defaultdict
from pathlib import Path

from infbench.backends.registry import BASELINE
from infbench.measure.repetitions import MAX_PRINTED

BENCH_RULE = "bench_cell"
REPETITION_RULE = "bench_repetition"
REPORT_RULE = "report"

# Findings the closing summary shows first (report/findings.py keys), in this order.
HEADLINE_KEYS = ("max_throughput", "min_latency_batch1", "best_within_tolerance")
HEADLINES = 3
ERROR_WIDTH = 100  # characters of an error message on a cell's line (the log and the report hold all of it)

COLORS = {"ok": "32", "unstable": "33", "error": "31", "oom": "31", "timeout": "31", "unavailable": "33"}


def is_rule(name: str, rule: str) -> bool:
    """`name` is infbench's `rule`, also under a module's prefix (`use rule * from infbench as infbench_*`)."""
    return name == rule or name.endswith(f"_{rule}")


def _read(path) -> dict | None:
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def paint(text: str, status: str, color: bool) -> str:
    code = COLORS.get(status)
    return f"\033[{code}m{text}\033[0m" if color and code else text


def duration(seconds: float) -> str:
    """'45 s', '3 min', '1 h 05 min': as exact as a running estimate can be."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds // 3600} h {round(seconds % 3600 / 60):02d} min"


def throughput(value: float) -> str:
    return f"{value:,.0f} img/s" if value >= 100 else f"{value:.3g} img/s"


def cell_label(cell: dict) -> str:
    """'resnet18 onnxruntime int8 cpu 64×32': model, backend, precision, device, image size × batch size. The
    model always: a run of several models (config/models.yaml) interleaves their cells' lines."""
    parts = [cell.get(k) for k in ("model", "backend", "precision", "device")]
    shape = f"{cell.get('image_size', '?')}×{cell.get('batch_size', '?')}"
    return " ".join(str(p) for p in parts if p) + " " + shape


def baseline_path(path: str | Path) -> Path:
    """Where the baseline cell (torch fp32) of the same study, device, size and batch writes its result:
    beside `path` (<study>/bench/<backend>/<precision>/<device>/<shape>.json)."""
    path = Path(path)
    return path.parents[3] / BASELINE["backend"] / BASELINE["precision"] / path.parent.name / path.name


def report_dir(root: Path = Path(".")) -> Path:
    """The report folder of the study run last (results/<dataset>/<model>/report)."""
    found = sorted(root.glob("results/*/*/report/index.html"), key=lambda p: p.stat().st_mtime)
    return found[-1].parent if found else root / "results"


def uncertainty_pct(result: dict) -> float | None:
    """The throughput's uncertainty in percent: the result's own figure, else the median's relative 95% CI."""
    pct = result.get("throughput_uncertainty_pct")
    if isinstance(pct, (int, float)):
        return float(pct)
    rel = (result.get("timing") or {}).get("ci95_rel")
    return 100 * rel if isinstance(rel, (int, float)) else None


def cell_result(result: dict, baseline: dict | None = None, color: bool = False) -> str:
    """'2,254 img/s ±1.3%  3.1× torch fp32', 'unstable …' or 'error: …' for one result JSON."""
    status = str(result.get("status") or "unknown")
    value = result.get("throughput_img_s")
    unstable = status == "unstable" or result.get("stability") == "unstable"
    if status not in ("ok", "unstable") or not isinstance(value, (int, float)):
        message = str(result.get("error") or "no message").strip().splitlines()[0] if result.get("error") else ""
        if len(message) > ERROR_WIDTH:
            message = message[: ERROR_WIDTH - 1] + "…"
        return paint(f"{status}: {message}" if message else status, status, color)
    parts = [f"{throughput(value):>11}"]  # numbers line up under each other
    pct = uncertainty_pct(result)
    low, high = result.get("throughput_min_img_s"), result.get("throughput_max_img_s")
    if pct is not None and pct > 100 * MAX_PRINTED and low is not None and high is not None:
        parts[0] += f" (range {low:,.0f}–{high:,.0f})"  # never a ± above 50%
    elif pct is not None:
        parts[0] += f" ±{pct:.1f}%"
    cell = result.get("cell") or {}
    if (cell.get("backend"), cell.get("precision")) == ("torch", "fp32"):
        parts.append("baseline")
    elif baseline and baseline.get("status") in ("ok", "unstable"):
        base = baseline.get("throughput_img_s")
        if isinstance(base, (int, float)) and base > 0:
            parts.append(f"{value / base:.2g}× torch fp32" if value / base < 10 else f"{value / base:.0f}× torch fp32")
    if unstable:
        parts.append(paint("unstable", "unstable", color))
    return "  ".join(parts)


def cell_line(path: str | Path, color: bool = False) -> str:
    """The label and result of one cell from its result JSON (and its baseline's, where that exists)."""
    result = _read(path)
    if result is None:
        return f"{path}: no readable result"
    cell = result.get("cell") or {}
    base_path = baseline_path(path) if len(Path(path).parents) > 4 else None
    baseline = _read(base_path) if base_path and base_path != Path(path) else None
    return f"{cell_label(cell):<44} {cell_result(result, baseline, color)}"


def repetition_line(path: str | Path) -> str:
    """'repetition 2 of resnet18 torch fp32 cpu 32×8: 1,640 img/s', from one repetition's JSON
    (rule bench_repetition)."""
    rep = _read(path)
    if rep is None:
        return f"{path}: no readable repetition"
    head = f"repetition {rep.get('repetition', '?')} of {cell_label(rep.get('cell') or {})}"
    if rep.get("status") != "ok":
        return f"{head}: {rep.get('status')}: {str(rep.get('error'))[:ERROR_WIDTH]}"
    return f"{head}: {throughput(rep['throughput']['img_s'])}"


class Progress:
    """Counts jobs as they finish and estimates the time left from the ones that did.

    A job still to run takes the mean time of the finished jobs of its rule in this run; a rule with none
    finished yet counts at the mean of all finished jobs.
    """

    def __init__(self, planned: dict[str, int], now: float | None = None):
        self.planned = {k: v for k, v in planned.items() if k != "total"}
        self.total = planned.get("total", sum(self.planned.values()))
        self.started_at = time.monotonic() if now is None else now
        self.started: dict[int, tuple[str, float]] = {}  # jobid → (rule, start)
        self.finished = Counter()
        self.durations: dict[str, list[float]] = defaultdict(list)
        self.cells_done = 0

    def start(self, jobid: int, rule: str, now: float | None = None) -> None:
        self.started[jobid] = (rule, time.monotonic() if now is None else now)

    def finish(self, jobid: int, now: float | None = None) -> tuple[str, float] | None:
        """Record a finished job; (rule, seconds it ran), or None for a job this run never saw start."""
        if jobid not in self.started:
            return None
        rule, start = self.started.pop(jobid)
        took = (time.monotonic() if now is None else now) - start
        self.finished[rule] += 1
        self.durations[rule].append(took)
        if is_rule(rule, BENCH_RULE):
            self.cells_done += 1
        return rule, took

    @property
    def done(self) -> int:
        return sum(self.finished.values())

    def time_left(self) -> float | None:
        every = [t for rule in self.planned for t in self.durations.get(rule, [])]
        if not every:
            return None
        overall = sum(every) / len(every)
        left = 0.0
        for rule, count in self.planned.items():
            remaining = max(0, count - self.finished[rule])
            times = self.durations.get(rule)
            left += remaining * (sum(times) / len(times) if times else overall)
        return left

    def figure(self) -> str:
        """'63% · ~2 min left'."""
        pct = 100 * self.done / self.total if self.total else 100
        left = self.time_left()
        if self.done >= self.total:
            return "100%"
        return f"{pct:.0f}%" + (f" · ~{duration(left)} left" if left is not None and left >= 1 else "")

    def cell_counter(self) -> str:
        cells = sum(n for rule, n in self.planned.items() if is_rule(rule, BENCH_RULE))
        return f"[{self.cells_done:>{len(str(cells))}}/{cells}]"


def headlines(folder: Path, n: int = HEADLINES) -> list[str]:
    """The report's cell count and its first `n` determined findings, headline objectives first."""
    summary, meta = folder / "summary.parquet", _read(folder / "meta.json")
    if not summary.exists() or meta is None:
        return []
    import polars as pl

    from infbench.report.findings import findings  # lazy: polars, only when a run has ended

    found = findings(pl.read_parquet(summary), meta)
    status = [f.text for f in found if f.key == "cells"]
    ranked = sorted(
        (f for f in found if f.determined and f.key != "cells"),
        key=lambda f: HEADLINE_KEYS.index(f.key) if f.key in HEADLINE_KEYS else len(HEADLINE_KEYS),
    )
    return status + [f.text for f in ranked[:n]]


def closing(folder: Path | None = None, elapsed: float | None = None) -> list[str]:
    """The lines a run ends with: how long it took, the headline findings, where the report is."""
    folder = folder or report_dir()
    lines = [f"Finished in {duration(elapsed)}." if elapsed is not None else "Finished."]
    index = folder / "index.html"
    try:
        lines += [f"  - {text}" for text in headlines(folder)]
    except Exception as exc:  # a summary the findings cannot read must not hide where the report is
        lines.append(f"  (findings not shown: {type(exc).__name__}: {exc})")
    if index.exists():
        lines.append(f"Report: {index.resolve()}")
    return lines
