"""summary + meta → the report: index.html (self-contained, offline), summary.md and plots/*.svg|png.

`build_report(summary, meta, out_dir)` is the only entry. The Vega, Vega-Lite and Vega-Embed libraries are inlined
once (from vl-convert's bundle), every chart's spec sits in the page as JSON, and a small script renders them all
with the SVG renderer. Each chart is also exported as SVG and PNG with vl-convert.
"""

from __future__ import annotations

import functools
import html
import json
from pathlib import Path

import altair as alt
import polars as pl
import vl_convert

from infbench.backends.registry import BASELINE, BASELINE_TEXT
from infbench.core import integrity
from infbench.core.arguments import paths
from infbench.core.io import atomic_path, read_json
from infbench.measure import statistics as st
from infbench.report import serving
from infbench.report.charts import Chart, build_charts
from infbench.report.findings import Finding, answers, findings
from infbench.report.frame import (
    SCHEMA,
    accuracy_rows,
    complete,
    failed_cells,
    num,
    pct,
    plus_minus,
    several_machines,
    several_models,
    span_of,
    speedup_text,
)
from infbench.stages.data import scored_by_agreement
from infbench.study.devices import note as devices_note

# --- vl-convert ---------------------------------------------------------------------------------------------------


def vl_version() -> str | None:
    """The Vega-Lite version altair writes (e.g. '6.4'), when vl-convert knows it; else vl-convert's latest."""
    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return major_minor if major_minor in vl_convert.get_vegalite_versions() else None


@functools.cache
def javascript_bundle() -> str:
    """Vega, Vega-Lite and Vega-Embed as one script that sets window.vegaEmbed (no network needed)."""
    bundle = vl_convert.javascript_bundle(vl_version=vl_version())
    return bundle.replace("</script", "<\\/script")


def export_plots(charts: list[Chart], plots_dir: Path) -> list[Path]:
    """Each drawn chart as plots/<name>.svg and plots/<name>.png; returns the files written."""
    written = []
    version = vl_version()
    plots_dir.mkdir(parents=True, exist_ok=True)
    for c in charts:
        if c.chart is None:
            continue
        spec = c.chart.to_dict()
        svg = vl_convert.vegalite_to_svg(spec, vl_version=version)
        png = vl_convert.svg_to_png(svg, scale=2)
        for suffix, data in ((".svg", svg.encode()), (".png", png)):
            path = plots_dir / f"{c.name}{suffix}"
            with atomic_path(path) as tmp:
                tmp.write_bytes(data)
                tmp.chmod(0o644)
            written.append(path)
    for stale in plots_dir.glob("*"):  # a chart that became a note leaves no old file behind
        if stale.is_file() and stale not in written and stale.suffix in (".svg", ".png"):
            stale.unlink()
            integrity.forget(stale)  # and its checksum (infbench.core.integrity)
    return written


# --- tables -------------------------------------------------------------------------------------------------------

# column → header in the HTML summary table. The uncertainty, interval and stability columns are printed inside the
# figures they qualify (img/s ± u, p50 ± u, speedup (low–high), an "unstable" tag), not as columns of their own.
CELL_COLUMNS = {
    "machine": "machine",
    "backend": "backend",
    "precision": "precision",
    "device": "device",
    "image_size": "size (px)",
    "batch_size": "batch",
    "status": "status",
}
SUMMARY_COLUMNS = {
    **CELL_COLUMNS,
    "throughput_img_s": "img/s",
    "time_per_image_ms": "ms/img",
    "latency_ms_p50": "p50 (ms)",
    "latency_ms_p90": "p90 (ms)",
    "latency_ms_p99": "p99 (ms)",
    "speedup_vs_baseline": "speedup (×)",
    "repetitions": "repetitions",
    "disturbed_repetitions": "disturbed",
    "launch_bound": "launch-bound",
    "host_issue_fraction": "host issue",
    "load_s": "load (s)",
    "first_inference_s": "first inference (s)",
    "mode": "mode",
    "accuracy_top1": "top-1 acc.",
    "accuracy_drop": "acc. drop (pts)",
    "accuracy_image_size": "acc. measured at (px)",
    "over_tolerance": "over tol.",
    "top1_agreement": "top-1 agreement",
    "max_abs_logit_diff": "max |Δ logit|",
    "model_size_mib": "model (MiB)",
    "gflops_per_image": "GFLOP/img",
    "achieved_tflops": "TFLOP/s",
    "utilization_pct": "util. (%)",
    "arithmetic_intensity": "FLOP/byte",
    "device_memory_peak_mib": "device mem (MiB)",
    "allocator_memory_peak_mib": "allocator mem (MiB)",
    "host_memory_peak_mib": "host mem (MiB)",
    "gpu_util_pct": "GPU util (%)",
    "power_w": "power (W)",
    "energy_mj_per_image": "mJ/img",
    "energy_window_img_s": "energy window img/s",
    "model": "model",
    "error": "error",
}
# a figure → the column holding its uncertainty (%), printed as "value ± u%"
UNCERTAINTY = {
    "throughput_img_s": "throughput_uncertainty_pct",
    "latency_ms_p50": "latency_uncertainty_pct",
    "power_w": "power_uncertainty_pct",
    "energy_mj_per_image": "energy_uncertainty_pct",
}
TITLES = {  # header tooltips: what the less obvious columns mean
    "status": "ok; unstable: its ± is wider than the tolerance even after re-measuring; unstable (drift): its own "
    "repetitions agree within the tolerance, the machine's drift over the run does not (shown, never used by a "
    "finding); error, oom, timeout, unavailable: no numbers",
    "throughput_img_s": "batches back to back, one synchronisation per window; ± u: a rerun lands within it (95%)",
    "latency_ms_p50": "one batch at a time, synchronised after each; ± u: a rerun lands within it (95%)",
    "speedup_vs_baseline": "throughput over the plain torch eager fp32 baseline's; in brackets its interval; grey: "
    "the cell or its baseline is unstable",
    "repetitions": "undisturbed repetitions in the cell's figures, the adaptive ones (bench.extra_budget_s: measured "
    "where the interval stayed wider than the tolerance) included",
    "disturbed_repetitions": "repetitions run while something else loaded the machine (measured again)",
    "launch_bound": "the host's launches, not the device, set the pace",
    "host_issue_fraction": "share of the wall time the host spent issuing work",
    "load_s": "time to load or compile the artifact",
    "first_inference_s": "time to first inference: load plus the first batch, where torch.compile compiles and "
    "autotunes (median over repetitions; a warm compile cache shortens it)",
    "device_memory_peak_mib": "device-level peak (NVML, process baseline subtracted), the same for every backend",
    "allocator_memory_peak_mib": "the runtime allocator's own peak, where it has one",
}


def _number(value, column: str) -> str:
    if column in ("accuracy_top1", "top1_agreement"):
        return pct(value)
    if column == "max_abs_logit_diff":
        return f"{value:.3g}"
    if column == "host_issue_fraction":
        return f"{100 * value:.0f}%"
    if isinstance(value, int):
        return str(value)
    return num(value)


def _cell(row: dict, column: str) -> str:
    """One <td>: readable text (a figure with its ± uncertainty or interval), the raw value in data-v for sorting."""
    value = row.get(column)
    if value is None:
        return '<td class="null" data-v="">–</td>'
    if isinstance(value, bool):
        text = "yes" if value else "no"
        klass = ' class="over"' if column in ("over_tolerance", "launch_bound") and value else ""
        return f'<td{klass} data-v="{int(value)}">{text}</td>'
    if isinstance(value, (int, float)):
        klass = "n"
        if column in UNCERTAINTY:
            text = plus_minus(value, row.get(UNCERTAINTY[column]), span=span_of(row, column))
        elif column == "speedup_vs_baseline":
            text = _speedup(row)
            klass += "" if row.get("speedup_decided") else " shaky"
        else:
            text = _number(value, column)
        if column == "disturbed_repetitions" and value:
            klass += " disturbed"
        return f'<td class="{klass}" data-v="{value!r}">{html.escape(text)}</td>'
    if column == "status":
        text = f'<span class="tag">{_status(row)}</span>' if value == "unstable" else html.escape(str(value))
        return f'<td class="status-{html.escape(str(value))}" data-v="{html.escape(str(value))}">{text}</td>'
    return f"<td>{html.escape(str(value))}</td>"


def html_table(rows: list[dict], columns: dict[str, str], table_id: str, sortable: bool = True) -> str:
    head = "".join(
        f'<th title="{html.escape(TITLES[c])}">{html.escape(t)}</th>' if c in TITLES else f"<th>{html.escape(t)}</th>"
        for c, t in columns.items()
    )
    body = "\n".join(
        ('<tr class="unstable">' if r.get("status") == "unstable" else "<tr>")
        + "".join(_cell(r, c) for c in columns)
        + "</tr>"
        for r in rows
    )
    klass = "sortable" if sortable else ""
    return (
        f'<div class="table-wrap"><table id="{table_id}" class="{klass}"><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{body}\n</tbody></table></div>"
    )


ACCURACY_COLUMNS = {
    "variant": "variant",
    "backend": "backend",
    "precision": "precision",
    "device": "device",
    "image_size": "measured at (px)",
    "accuracy_top1": "top-1 accuracy",
    "accuracy_drop": "drop (points)",
    "over_tolerance": "over tolerance",
    "top1_agreement": "top-1 agreement with fp32",
    "max_abs_logit_diff": "max |Δ logit|",
    "model_size_mib": "model size (MiB)",
}
FAILURE_COLUMNS = {**CELL_COLUMNS, "error": "message"}
DROPPED_COLUMNS = {"backend": "backend", "precision": "precision", "device": "device", "reason": "reason"}
RAN_COLUMNS = {c: c for c in ("backend", "precision", "device", "runtime", "options")}


def what_ran(df: pl.DataFrame) -> list[dict]:
    """Each backend, precision and device once, with its runtime's versions and its options (issue 35)."""
    keys = ["backend", "precision", "device"]
    if not {"runtime", "options"} <= set(df.columns):  # a summary written before cells said what ran
        return []
    ran = df.filter(pl.col("runtime").is_not_null() | pl.col("options").is_not_null())
    return ran.select([*keys, "runtime", "options"]).unique().sort(keys).to_dicts()


# --- Markdown -----------------------------------------------------------------------------------------------------

MD_COLUMNS = {
    "backend": "backend",
    "precision": "precision",
    "device": "device",
    "image_size": "size",
    "batch_size": "batch",
    "status": "status",
    "throughput_img_s": "img/s ±",
    "latency_ms_p50": "p50 ms ±",
    "latency_ms_p99": "p99 ms",
    "speedup_vs_baseline": "speedup (interval)",
    "disturbed_repetitions": "disturbed",
    "launch_bound": "launch-bound",
    "top1_agreement": "top-1 agreement",
    "accuracy_drop": "accuracy drop",
    "accuracy_image_size": "accuracy at (px)",
    "energy_mj_per_image": "mJ/img ±",
}


VERDICT_WORDS = {"better": "faster", "worse": "slower", "same": "no meaningful difference", "undecided": "undecided"}


def _speedup(row: dict) -> str:
    """'2.97× (2.59–3.36) faster': the speedup, its interval and its verdict against the baseline."""
    if row.get("speedup_vs_baseline") is not None and (row.get("backend"), row.get("precision")) == (
        BASELINE["backend"],
        BASELINE["precision"],
    ):
        return "baseline"  # its ratio to itself says nothing
    verdict = VERDICT_WORDS.get(row.get("speedup_verdict"))
    return speedup_text(row) + (f" {verdict}" if verdict else "")


def _status(row: dict) -> str:
    """'unstable', or 'unstable (drift)' where only the machine's drift floor passes the tolerance."""
    return "unstable (drift)" if row.get("drift_limited") else "unstable"


def with_model_column(columns: dict[str, str], df: pl.DataFrame) -> dict[str, str]:
    """A study of several models: the model is the first column of every table of cells."""
    return {"model": "model", **columns} if several_models(df) else columns


def _md(row: dict, column: str) -> str:
    value = row.get(column)
    if value is None:
        return "–"
    if column == "status" and value == "unstable":
        return f"**{_status(row)}**"
    if column == "top1_agreement":
        return pct(value)
    if column in UNCERTAINTY:
        return plus_minus(value, row.get(UNCERTAINTY[column]))
    if column == "speedup_vs_baseline":
        return _speedup(row)
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return num(value)
    return str(value).replace("|", "\\|")


def cells_line(df: pl.DataFrame, meta: dict) -> str:
    """'18 cells: 18 measured (8 noisy), 0 failed; 5 repetitions disturbed and re-measured.' (plain text)."""
    unstable = df.filter(pl.col("status") == "unstable").height
    failed = failed_cells(df).height
    disturbed = _disturbed(df, meta)
    return (
        f"{df.height} cells: {df.height - failed} measured ({unstable} noisy), {failed} failed; "
        f"{disturbed} repetitions disturbed by other load and re-measured."
    )


def summary_markdown(df: pl.DataFrame, meta: dict, found: list[Finding]) -> str:
    columns = ({"machine": "machine"} if several_machines(df) else {}) | with_model_column(MD_COLUMNS, df)
    # not applicable to any cell here: launch-bound (CPU, synchronous runtimes), energy (no GPU)
    for column in ("launch_bound", "energy_mj_per_image"):
        if df.get_column(column).is_null().all():
            columns.pop(column)
    lines = [
        f"# infbench: {meta.get('model', 'model')} on {meta.get('dataset', 'dataset')}",
        "",
        f"{cells_line(df, meta)} Speedup against {meta.get('baseline') or BASELINE_TEXT}. "
        f"Created {meta.get('created', 'n/a')}.",
        "",
        f"{READING_MD}",
        "",
        "| " + " | ".join(columns.values()) + " |",
        "|"
        + "|".join(
            "---:" if c in ("image_size", "batch_size") or SCHEMA.get(c) in (pl.Float64, pl.Int64) else "---"
            for c in columns
        )
        + "|",
    ]
    for row in df.iter_rows(named=True):
        lines.append("| " + " | ".join(_md(row, c) for c in columns) + " |")
    lines += ["", "## Findings", ""] + [f"- {f.text}" for f in found]
    bad = failed_cells(df)
    if bad.height:
        lines += ["", "## Cells not ok", ""]
        for r in bad.iter_rows(named=True):
            lines.append(
                f"- {r['backend']} {r['precision']} {r['device']} {r['image_size']} px batch {r['batch_size']}: "
                f"**{r['status']}**: {(r.get('error') or 'no message').strip().splitlines()[0]}"
            )
    if meta.get("dropped"):
        lines += ["", "## Combinations dropped at expansion", ""]
        lines += [
            f"- {d.get('backend')} {d.get('precision')} {d.get('device')}: {d.get('reason')}" for d in meta["dropped"]
        ]
    gaps = (meta.get("devices") or {}).get("unmeasurable") or []
    if gaps:
        lines += ["", "## Not measured: no backend here can", ""] + [f"- {g}" for g in gaps]
    ran = what_ran(df)
    if ran:
        lines += ["", "## What ran", ""]
        lines += [
            f"- {r['backend']} {r['precision']} {r['device']}: {r['runtime'] or 'versions unknown'}; "
            f"options: {r['options'] or 'none'}"
            for r in ran
        ]
    return "\n".join(lines) + "\n"


# How to read the table, in both outputs.
READING = (
    "Throughput (img/s): batches back to back, images per second over a window. Latency (p50/p90/p99): one batch "
    "at a time, synchronised after each. Each cell is the median of several repetitions in fresh processes; "
    "± is the interval of that median from the repetitions (for 5 repetitions their range, which covers the median "
    "93.75% of the time; on the CPU at least the run's drift, so a rerun lands within it). Unstable (noisy): the ± "
    "is wider than the tolerance; the cell still counts. Every finding compares two cells by the ratio of their "
    "medians, with the interval of their repetitions' pairwise ratios and a margin m (the larger of the tolerance "
    "and the run's drift): faster where the whole interval lies beyond 1 + m, no meaningful difference where it "
    "lies within ±m, undecided otherwise. Disturbed: repetitions run while something else loaded the machine, "
    "measured again. Launch-bound: the host's launches, not the device, set the pace. Speedups compare throughput "
    "with the baseline's, their interval in brackets and their verdict after it."
)
READING_MD = READING.replace("Unstable (noisy):", "**Unstable** (noisy):")


# --- HTML ---------------------------------------------------------------------------------------------------------

STYLE = """
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; margin: 0 auto; max-width: 1400px;
       padding: 0 24px 48px; color: #1d1d1f; }
h1 { margin: 24px 0 4px; font-size: 24px; }
h2 { margin-top: 36px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
h3 { margin: 24px 0 4px; } .muted { color: #666; } nav a { margin-right: 12px; }
dl.meta { display: grid; grid-template-columns: max-content 1fr; gap: 2px 16px; margin: 12px 0; }
dl.meta dt { font-weight: 600; } dl.meta ul { margin: 0; padding-left: 18px; }
ul.findings li { margin: 4px 0; } ul.findings li.undetermined { color: #8a5a00; }
ul.findings li.undecided, ul.answers li.undecided { opacity: 0.6; }
ul.answers { font-size: 16px; padding-left: 20px; } ul.answers li { margin: 6px 0; }
ul.answers li.undetermined { color: #8a5a00; }
.chart { min-height: 40px; overflow-x: auto; width: 100%; }
.note { background: #fff7e0; border-left: 4px solid #e0b000; padding: 8px 12px; }
.table-wrap { overflow-x: auto; max-height: 640px; overflow-y: auto; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left; white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } td.null { color: #aaa; text-align: center; }
thead th { position: sticky; top: 0; background: #f4f4f6; } table.sortable th { cursor: pointer; user-select: none; }
table.sortable th.asc::after { content: " ▲"; } table.sortable th.desc::after { content: " ▼"; }
td.status-ok { color: #1a7f37; }
td[class^="status-"]:not(.status-ok):not(.status-unstable) { color: #b42318; font-weight: 600; }
td.over { color: #b42318; font-weight: 600; }
tr.unstable td { background: #fff4e5; color: #7a4b00; } td.status-unstable { font-weight: 600; }
span.tag { display: inline-block; padding: 0 6px; border-radius: 8px; background: #e8a317; color: #fff;
           font-size: 11px; font-weight: 600; }
td.shaky { color: #999; font-style: italic; } td.disturbed { color: #8a5a00; font-weight: 600; }
p.reading { max-width: 1100px; }
#failures td:last-child { white-space: pre-wrap; max-width: 700px; }
.files { font-size: 12px; }
"""

# Renders every chart (specs are JSON in the page), then marks the body so a test or a person can tell it is done.
RENDER = """
(async () => {
  const charts = Array.from(document.querySelectorAll("div.chart[data-spec]"));
  let rendered = 0, failed = 0;
  for (const el of charts) {
    try {
      const spec = JSON.parse(document.getElementById(el.dataset.spec).textContent);
      const actions = {export: true, source: false, compiled: false, editor: false};
      await vegaEmbed(el, spec, {renderer: "svg", actions});
      rendered++;
    } catch (err) {
      failed++;
      console.error("chart " + el.id + " failed: " + err);
      el.textContent = "This chart failed to render: " + err;
    }
  }
  document.body.dataset.chartsRendered = rendered;
  document.body.dataset.chartsFailed = failed;
  document.body.dataset.chartsDone = "true";
})();
"""

SORT = """
document.querySelectorAll("table.sortable").forEach((table) => {
  table.querySelectorAll("thead th").forEach((th, col) => {
    th.addEventListener("click", () => {
      const asc = !th.classList.contains("asc");
      table.querySelectorAll("thead th").forEach((h) => h.classList.remove("asc", "desc"));
      th.classList.add(asc ? "asc" : "desc");
      const body = table.tBodies[0];
      const key = (tr) => {
        const td = tr.children[col];
        return td.dataset.v !== undefined ? td.dataset.v : td.textContent;
      };
      const rows = Array.from(body.rows);
      rows.sort((a, b) => {
        const x = key(a), y = key(b);
        if (x === "" && y !== "") return 1;
        if (y === "" && x !== "") return -1;
        const nx = Number(x), ny = Number(y);
        const c = (x !== "" && y !== "" && !isNaN(nx) && !isNaN(ny)) ? nx - ny : String(x).localeCompare(String(y));
        return asc ? c : -c;
      });
      rows.forEach((r) => body.appendChild(r));
    });
  });
});
"""


def _json_script(element_id: str, data) -> str:
    text = json.dumps(data, separators=(",", ":"), default=str).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


def _disturbed(df: pl.DataFrame, meta: dict) -> int:
    """Repetitions disturbed by other load and measured again (from the cells, else meta's count)."""
    disturbed = int(df.get_column("disturbed_repetitions").fill_null(0).sum()) if df.height else 0
    return disturbed or int(meta.get("repetitions_disturbed") or 0)


def _cells_html(df: pl.DataFrame) -> str:
    """'12 cells ran; 2 failed; 1 unstable (…)', with links to the tables that show them."""
    failed = failed_cells(df).height
    unstable = df.filter(pl.col("status") == "unstable").height
    cells = f"{df.height - failed} of {df.height} cells measured; "
    cells += f'<a href="#failures">{failed} failed</a>' if failed else "none failed"
    if not unstable:
        return cells + "; none noisy"
    return cells + (
        f'; <a href="#summary">{unstable} noisy</a> (± wider than the tolerance: shown with their spread, and '
        "counted: a comparison is decided by the cells' repetitions)"
    )


def _machines_html(meta: dict) -> str:
    """Each machine of the report: hardware, then package versions."""
    e = html.escape
    items = []
    for m in meta.get("machines") or []:
        hardware = (
            m.get("cpu"),
            f"{m['cores']} cores" if m.get("cores") else None,
            m.get("gpu"),
            f"driver {m['driver']}" if m.get("driver") else None,
        )
        hw = ", ".join(str(x) for x in hardware if x)
        versions = ", ".join(f"{k} {v}" for k, v in sorted((m.get("versions") or {}).items()))
        items.append(
            f"<li><b>{e(str(m.get('machine') or 'this machine'))}</b>: {e(hw or 'hardware not recorded')}"
            f'<br><span class="muted">{e(versions or "versions not recorded")}</span></li>'
        )
    return "<ul>" + "".join(items) + "</ul>" if items else "not recorded"


def _accuracy_of(t: dict) -> str:
    if scored_by_agreement(t):
        return "no labelled images: accuracy is the agreement with this fp32 model"
    return f"test accuracy {pct(t['test_accuracy'])}" if t.get("test_accuracy") is not None else "accuracy not recorded"


def _model_row(meta: dict, accuracy) -> tuple[str, str]:
    """The header's model line: the model, its fp32 test accuracy and where it came from; one line per
    model in a study of several."""
    e = html.escape
    trained = meta.get("trained") or []
    if len(trained) > 1:
        lines = [
            f"{e(str(t['model']))} — " + _accuracy_of(t) + (f" ({e(t['origin'])})" if t.get("origin") else "")
            for t in trained
        ]
        return "Models", "<br>".join(lines)
    return (
        "Model",
        e(str(meta.get("model", "n/a")))
        + " — "
        + _accuracy_of(trained[0] if trained else {"test_accuracy": accuracy})
        + (f" ({e(meta['model_origin'])})" if meta.get("model_origin") else ""),
    )


def _header(df: pl.DataFrame, meta: dict) -> str:
    e = html.escape
    accuracy = meta.get("model_accuracy")
    disturbed = _disturbed(df, meta)
    tol = meta.get("tolerance_points")
    cap = meta.get("memory_cap_mib")
    rows = [
        ("Dataset", e(str(meta.get("dataset", "n/a")))),
        _model_row(meta, accuracy),
        ("Machines", _machines_html(meta)),
        *([("Devices", e(devices_note(meta["devices"])))] if meta.get("devices") else []),
        ("Created", e(str(meta.get("created", "n/a")))),
        ("Cells", _cells_html(df)),
        (
            "Repetitions",
            f"{disturbed} disturbed by other load on the machine and measured again"
            if disturbed
            else "none disturbed by other load",
        ),
        ("Baseline", e(meta.get("baseline") or BASELINE_TEXT)),
        ("Accuracy tolerance", f"{num(tol)} points" if tol is not None else "not set"),
        ("Memory cap", num(cap, "MiB") if cap is not None else "not set"),
    ]
    return '<dl class="meta">' + "".join(f"<dt>{k}</dt><dd>{v}</dd>" for k, v in rows) + "</dl>"


def _chart_section(c: Chart, specs: list[str]) -> str:
    e = html.escape
    head = f'<section id="chart-{c.name}" class="chart-section"><h3>{e(c.title)}</h3>'
    desc = f'<p class="muted">{e(c.description)}</p>' if c.description else ""
    if c.chart is None:
        return head + desc + f'<p class="note" data-note="{c.name}">{e(c.note or "No data.")}</p></section>'
    specs.append(_json_script(f"spec-{c.name}", c.chart.to_dict()))
    files = (
        f'<p class="files muted">Files: <a href="plots/{c.name}.svg">SVG</a> · <a href="plots/{c.name}.png">PNG</a></p>'
    )
    return head + desc + f'<div class="chart" id="vis-{c.name}" data-spec="spec-{c.name}"></div>{files}</section>'


def _table_or(rows: list[dict], columns: dict[str, str], table_id: str, empty: str) -> str:
    """The rows as a sortable table, or the sentence that says there are none."""
    return html_table(rows, columns, table_id) if rows else empty


def _accuracy_html(df: pl.DataFrame, meta: dict) -> str:
    acc = accuracy_rows(df, meta)
    columns = ACCURACY_COLUMNS if any(a.get("variant") for a in acc) else dict(list(ACCURACY_COLUMNS.items())[1:])
    return unlabelled_note(meta) + _table_or(acc, columns, "accuracy-table", NO_ACCURACY)


def unlabelled_note(meta: dict) -> str:
    """What accuracy means for a model whose images have no labels (said wherever its accuracy is shown)."""
    models = [str(t["model"]) for t in meta.get("trained") or [] if scored_by_agreement(t)]
    if not models:
        return ""
    return (
        f'<p class="note">{html.escape(", ".join(models))}: the images have no labels, so top-1 is the agreement '
        "with the fp32 model's top-1 on them (the fp32 model scores 100%), and a drop is the share of images whose "
        "top-1 a variant changed.</p>"
    )


NO_ACCURACY = '<p class="note">No accuracy figures: the accuracy jobs did not run.</p>'
NAV = (
    ("answer", "The answer"),
    ("findings", "Findings"),
    ("charts", "Charts"),
    ("summary", "Summary table"),
    ("accuracy", "Accuracy"),
    ("failures", "Failures"),
    ("dropped", "Dropped"),
    ("ran", "What ran"),
)


def _answer_html(found: list[Finding]) -> str:
    """The first screen: per goal the best variant, its margin over the next with the interval, and its
    accuracy cost; an undecided margin is faded and says so."""
    e = html.escape
    items = []
    for a in answers(found):
        klass = "answer" + ("" if a["decided"] else " undecided") + ("" if a["determined"] else " undetermined")
        if "best" not in a:
            items.append(f'<li class="{klass}"><b>{e(a["goal"])}</b>: {e(a["text"])}</li>')
            continue
        items.append(
            f'<li class="{klass}"><b>{e(a["goal"])}</b>: <strong>{e(a["best"])}</strong> — {e(a["figure"])}; '
            f"{e(a['margin'])}; {e(a['cost'])}</li>"
        )
    return '<ul class="answers">' + "".join(items) + "</ul>" if items else ""


def render_html(
    df: pl.DataFrame, meta: dict, charts: list[Chart], found: list[Finding], bundle: str, serving: str = ""
) -> str:
    e = html.escape
    specs: list[str] = []
    sections = "\n".join(_chart_section(c, specs) for c in charts)
    items = "\n".join(
        f'<li class="{"undetermined" if not f.determined else "" if f.decided else "undecided"}" '
        f'data-key="{e(f.key)}">{e(f.text)}</li>'
        for f in found
    )
    every_cell_ran = '<p class="muted">Every cell ran (ok or unstable).</p>'
    failures_html = _table_or(failed_cells(df).to_dicts(), FAILURE_COLUMNS, "failures-table", every_cell_ran)
    none_dropped = '<p class="muted">No combination was dropped at expansion.</p>'
    dropped_html = _table_or(meta.get("dropped") or [], DROPPED_COLUMNS, "dropped-table", none_dropped)
    summary_cols = {c: t for c, t in SUMMARY_COLUMNS.items() if c != "machine" or several_machines(df)}
    summary_cols = with_model_column(summary_cols, df)
    title = f"infbench: {meta.get('model', 'model')} on {meta.get('dataset', 'dataset')}"
    nav = " ".join(f'<a href="#{a}">{t}</a>' for a, t in NAV)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)}</title>
<style>{STYLE}</style>
<script>
{bundle}
</script>
</head>
<body>
<h1>{e(title)}</h1>
<p class="muted">Which way of running this image classifier is fastest on this machine,
at what cost in accuracy and memory.</p>
<nav>{nav}</nav>
<h2 id="answer">The answer</h2>
{_answer_html(found)}
{_header(df, meta)}
<h2 id="findings">Findings</h2>
<ul class="findings">
{items}
</ul>
<h2 id="charts">Charts</h2>
<p class="muted">Hover a mark for its exact values. Whiskers are the cells' intervals (a rerun lands within them);
faded bars are undecided comparisons (more repetitions or a quieter machine would decide them).</p>
{sections}
<h2 id="summary">Summary table</h2>
<p class="muted reading">{e(READING)}</p>
<p class="muted">Every cell; noisy (unstable) rows are shaded and tagged. Click a column header to sort; hover a
header for
what it means.</p>
{html_table(df.to_dicts(), summary_cols, "summary-table")}
<h2 id="accuracy">Accuracy per variant</h2>
{_accuracy_html(df, meta)}
<h2 id="failures">Failures</h2>
{failures_html}
<h2 id="dropped">Combinations dropped at expansion</h2>
{dropped_html}
{serving}
<h2 id="ran">What ran</h2>
<p class="muted">Each backend's runtime versions and its options on the device, defaults included.</p>
{_table_or(what_ran(df), RAN_COLUMNS, "ran-table", '<p class="muted">No cell says what ran.</p>')}
{"".join(specs)}
<script>{SORT}</script>
<script>{RENDER}</script>
</body>
</html>
"""


def build_report(summary: pl.DataFrame, meta: dict, out_dir: Path, serving_results: list[Path] = ()) -> None:
    """Write out_dir/index.html, out_dir/summary.md and out_dir/plots/<chart>.svg|png."""
    out_dir = Path(out_dir)
    df = complete(summary)
    charts = build_charts(df, meta)
    found = findings(df, meta)
    tolerance = df.get_column("tolerance_pct").drop_nulls()  # bench.tolerance, as the run had it
    tolerance = tolerance.max() / 100 if tolerance.len() else st.DEFAULT_TOLERANCE
    serving_charts, serving_html = serving.section(serving_results, _chart_section, html_table, tolerance)
    export_plots([*charts, *serving_charts], out_dir / "plots")
    page = render_html(df, meta, charts, found, javascript_bundle(), serving_html)
    for name, text in (("index.html", page), ("summary.md", summary_markdown(df, meta, found))):
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
            tmp.chmod(0o644)


def add_parser(sub) -> None:
    """`infbench report`."""
    s = sub.add_parser("report", help="summary + meta → index.html, summary.md, plots/")
    paths(s, "--summary", "--meta", "--out-dir")
    s.add_argument("--serving", type=Path, nargs="*", default=[], help="serving cells' results (infbench serve)")
    s.set_defaults(func=_command)


def _command(a) -> None:
    build_report(pl.read_parquet(a.summary), read_json(a.meta), a.out_dir, a.serving)
    print(f"report written to {a.out_dir / 'index.html'}")
