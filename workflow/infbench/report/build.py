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

from infbench import integrity
from infbench.io import atomic_path
from infbench.report.charts import Chart, build_charts
from infbench.report.findings import Finding, findings
from infbench.report.frame import SCHEMA, complete, num, pct, several_machines

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
            integrity.forget(stale)  # and its checksum (infbench.integrity)
    return written


# --- tables -------------------------------------------------------------------------------------------------------

SUMMARY_COLUMNS = {  # column → header in the HTML summary table; every summary column, readable names
    "machine": "machine",
    "backend": "backend",
    "precision": "precision",
    "device": "device",
    "image_size": "size (px)",
    "batch_size": "batch",
    "status": "status",
    "latency_ms_median": "median (ms)",
    "latency_ms_p90": "p90 (ms)",
    "latency_ms_p95": "p95 (ms)",
    "latency_ms_p99": "p99 (ms)",
    "latency_ms_mean": "mean (ms)",
    "latency_ms_min": "min (ms)",
    "latency_ms_max": "max (ms)",
    "latency_ms_std": "std (ms)",
    "ci95_rel": "95% CI (rel.)",
    "iterations": "iterations",
    "converged": "converged",
    "mode": "mode",
    "throughput_img_s": "img/s",
    "time_per_image_ms": "ms/img",
    "speedup_vs_baseline": "speedup (×)",
    "accuracy_top1": "top-1 acc.",
    "accuracy_drop": "acc. drop (pts)",
    "over_tolerance": "over tol.",
    "top1_agreement": "top-1 agreement",
    "max_abs_logit_diff": "max |Δ logit|",
    "model_size_mb": "model (MB)",
    "gflops_per_image": "GFLOP/img",
    "achieved_tflops": "TFLOP/s",
    "utilization_pct": "util. (%)",
    "arithmetic_intensity": "FLOP/byte",
    "device_memory_peak_mb": "device mem (MB)",
    "host_memory_peak_mb": "host mem (MB)",
    "gpu_util_pct": "GPU util (%)",
    "power_w": "power (W)",
    "energy_mj_per_image": "mJ/img",
    "model": "model",
    "error": "error",
}


def _cell(value, column: str) -> str:
    """One <td>: readable text, the raw value in data-v for sorting."""
    if value is None:
        return '<td class="null" data-v="">–</td>'
    if isinstance(value, bool):
        text = "yes" if value else "no"
        klass = ' class="over"' if column == "over_tolerance" and value else ""
        return f'<td{klass} data-v="{int(value)}">{text}</td>'
    if isinstance(value, (int, float)):
        if column in ("accuracy_top1", "top1_agreement"):
            text = pct(value)
        elif column == "ci95_rel":
            text = f"{100 * value:.2f}%"
        elif column == "max_abs_logit_diff":
            text = f"{value:.3g}"
        elif isinstance(value, int):
            text = str(value)
        else:
            text = num(value)
        return f'<td class="n" data-v="{value!r}">{text}</td>'
    klass = f' class="status-{html.escape(str(value))}"' if column == "status" else ""
    return f"<td{klass}>{html.escape(str(value))}</td>"


def html_table(rows: list[dict], columns: dict[str, str], table_id: str, sortable: bool = True) -> str:
    head = "".join(f"<th>{html.escape(title)}</th>" for title in columns.values())
    body = "\n".join("<tr>" + "".join(_cell(r.get(c), c) for c in columns) + "</tr>" for r in rows)
    klass = "sortable" if sortable else ""
    return (
        f'<div class="table-wrap"><table id="{table_id}" class="{klass}"><thead><tr>{head}</tr></thead>'
        f"<tbody>\n{body}\n</tbody></table></div>"
    )


def accuracy_rows(summary: pl.DataFrame, meta: dict) -> list[dict]:
    if meta.get("accuracy"):
        return [dict(a) for a in meta["accuracy"]]
    cols = ["backend", "precision", "device", "accuracy_top1", "accuracy_drop", "top1_agreement", "over_tolerance"]
    cols += ["max_abs_logit_diff", "model_size_mb"]
    have = summary.filter(pl.col("accuracy_top1").is_not_null())
    return have.select(cols).unique(["backend", "precision", "device"], maintain_order=True).to_dicts()


ACCURACY_COLUMNS = {
    "variant": "variant",
    "backend": "backend",
    "precision": "precision",
    "device": "device",
    "accuracy_top1": "top-1 accuracy",
    "accuracy_drop": "drop (points)",
    "over_tolerance": "over tolerance",
    "top1_agreement": "top-1 agreement with fp32",
    "max_abs_logit_diff": "max |Δ logit|",
    "model_size_mb": "model size (MB)",
}
FAILURE_COLUMNS = {
    "machine": "machine",
    "backend": "backend",
    "precision": "precision",
    "device": "device",
    "image_size": "size (px)",
    "batch_size": "batch",
    "status": "status",
    "error": "message",
}
DROPPED_COLUMNS = {"backend": "backend", "precision": "precision", "device": "device", "reason": "reason"}

# --- Markdown -----------------------------------------------------------------------------------------------------

MD_COLUMNS = {
    "backend": "backend",
    "precision": "precision",
    "device": "device",
    "image_size": "size",
    "batch_size": "batch",
    "status": "status",
    "latency_ms_median": "median ms",
    "throughput_img_s": "img/s",
    "speedup_vs_baseline": "speedup",
    "top1_agreement": "top-1 agreement",
    "accuracy_drop": "accuracy drop",
}


def _md(value, column: str) -> str:
    if value is None:
        return "–"
    if column == "top1_agreement":
        return pct(value)
    if column == "speedup_vs_baseline":
        return f"{value:.2f}×"
    if isinstance(value, float):
        return num(value)
    return str(value).replace("|", "\\|")


def summary_markdown(df: pl.DataFrame, meta: dict, found: list[Finding]) -> str:
    columns = ({"machine": "machine"} if several_machines(df) else {}) | MD_COLUMNS
    lines = [
        f"# infbench: {meta.get('model', 'model')} on {meta.get('dataset', 'dataset')}",
        "",
        f"{df.height} cells, {df.filter(pl.col('status') != 'ok').height} not ok; "
        f"speedup against {meta.get('baseline') or 'torch fp32 on the same device, size and batch'}. "
        f"Created {meta.get('created', 'n/a')}.",
        "",
        "| " + " | ".join(columns.values()) + " |",
        "|"
        + "|".join(
            "---:" if c in ("image_size", "batch_size") or c in SCHEMA and SCHEMA[c] == pl.Float64 else "---"
            for c in columns
        )
        + "|",
    ]
    for row in df.iter_rows(named=True):
        lines.append("| " + " | ".join(_md(row.get(c), c) for c in columns) + " |")
    lines += ["", "## Findings", ""] + [f"- {f.text}" for f in found]
    bad = df.filter(pl.col("status") != "ok")
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
    return "\n".join(lines) + "\n"


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
.chart { min-height: 40px; overflow-x: auto; }
.note { background: #fff7e0; border-left: 4px solid #e0b000; padding: 8px 12px; }
.table-wrap { overflow-x: auto; max-height: 640px; overflow-y: auto; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 12px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #eee; text-align: left; white-space: nowrap; }
td.n { text-align: right; font-variant-numeric: tabular-nums; } td.null { color: #aaa; text-align: center; }
thead th { position: sticky; top: 0; background: #f4f4f6; } table.sortable th { cursor: pointer; user-select: none; }
table.sortable th.asc::after { content: " ▲"; } table.sortable th.desc::after { content: " ▼"; }
td.status-ok { color: #1a7f37; } td[class^="status-"]:not(.status-ok) { color: #b42318; font-weight: 600; }
td.over { color: #b42318; font-weight: 600; }
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


def _header(df: pl.DataFrame, meta: dict) -> str:
    e = html.escape
    accuracy = meta.get("model_accuracy")
    not_ok = df.filter(pl.col("status") != "ok").height
    total = df.height
    cells = f"{total} cells ran; "
    cells += f'<a href="#failures">{not_ok} not ok</a>' if not_ok else "all ok"
    machines = []
    for m in meta.get("machines") or []:
        hw = ", ".join(
            str(x)
            for x in (
                m.get("cpu"),
                f"{m['cores']} cores" if m.get("cores") else None,
                m.get("gpu"),
                f"driver {m['driver']}" if m.get("driver") else None,
            )
            if x
        )
        versions = ", ".join(f"{k} {v}" for k, v in sorted((m.get("versions") or {}).items()))
        machines.append(
            f"<li><b>{e(str(m.get('machine') or 'this machine'))}</b>: {e(hw or 'hardware not recorded')}"
            f'<br><span class="muted">{e(versions or "versions not recorded")}</span></li>'
        )
    tol = meta.get("tolerance_points")
    cap = meta.get("memory_cap_mb")
    rows = [
        ("Dataset", e(str(meta.get("dataset", "n/a")))),
        (
            "Model",
            e(str(meta.get("model", "n/a")))
            + (f" — test accuracy {pct(accuracy)}" if accuracy is not None else " — accuracy not recorded"),
        ),
        ("Machines", "<ul>" + "".join(machines) + "</ul>" if machines else "not recorded"),
        ("Created", e(str(meta.get("created", "n/a")))),
        ("Cells", cells),
        ("Baseline", e(meta.get("baseline") or "torch fp32 on the same device, size and batch")),
        ("Accuracy tolerance", f"{num(tol)} points" if tol is not None else "not set"),
        ("Memory cap", num(cap, "MB") if cap is not None else "not set"),
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


def render_html(df: pl.DataFrame, meta: dict, charts: list[Chart], found: list[Finding], bundle: str) -> str:
    e = html.escape
    specs: list[str] = []
    sections = "\n".join(_chart_section(c, specs) for c in charts)
    items = "\n".join(
        f'<li class="{"" if f.determined else "undetermined"}" data-key="{e(f.key)}">{e(f.text)}</li>' for f in found
    )
    failures = df.filter(pl.col("status") != "ok").to_dicts()
    failures_html = (
        html_table(failures, FAILURE_COLUMNS, "failures-table")
        if failures
        else '<p class="muted">Every cell ran ok.</p>'
    )
    dropped = meta.get("dropped") or []
    dropped_html = (
        html_table(dropped, DROPPED_COLUMNS, "dropped-table")
        if dropped
        else '<p class="muted">No combination was dropped at expansion.</p>'
    )
    acc = accuracy_rows(df, meta)
    acc_columns = ACCURACY_COLUMNS if any(a.get("variant") for a in acc) else dict(list(ACCURACY_COLUMNS.items())[1:])
    accuracy_html = (
        html_table(acc, acc_columns, "accuracy-table")
        if acc
        else '<p class="note">No accuracy figures: the accuracy jobs did not run.</p>'
    )
    summary_cols = {c: t for c, t in SUMMARY_COLUMNS.items() if c != "machine" or several_machines(df)}
    title = f"infbench: {meta.get('model', 'model')} on {meta.get('dataset', 'dataset')}"
    nav = " ".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("findings", "Findings"),
            ("charts", "Charts"),
            ("summary", "Summary table"),
            ("accuracy", "Accuracy"),
            ("failures", "Failures"),
            ("dropped", "Dropped"),
        )
    )
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
{_header(df, meta)}
<h2 id="findings">Findings</h2>
<ul class="findings">
{items}
</ul>
<h2 id="charts">Charts</h2>
<p class="muted">Hover a mark for its exact values. Only cells that ran ok are drawn.</p>
{sections}
<h2 id="summary">Summary table</h2>
<p class="muted">Every cell; click a column header to sort.</p>
{html_table(df.to_dicts(), summary_cols, "summary-table")}
<h2 id="accuracy">Accuracy per variant</h2>
{accuracy_html}
<h2 id="failures">Failures</h2>
{failures_html}
<h2 id="dropped">Combinations dropped at expansion</h2>
{dropped_html}
{"".join(specs)}
<script>{SORT}</script>
<script>{RENDER}</script>
</body>
</html>
"""


def build_report(summary: pl.DataFrame, meta: dict, out_dir: Path) -> None:
    """Write out_dir/index.html, out_dir/summary.md and out_dir/plots/<chart>.svg|png."""
    out_dir = Path(out_dir)
    df = complete(summary)
    charts = build_charts(df, meta)
    found = findings(df, meta)
    export_plots(charts, out_dir / "plots")
    page = render_html(df, meta, charts, found, javascript_bundle())
    for name, text in (("index.html", page), ("summary.md", summary_markdown(df, meta, found))):
        with atomic_path(out_dir / name) as tmp:
            tmp.write_text(text, encoding="utf-8")
            tmp.chmod(0o644)
