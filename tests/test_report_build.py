"""build_report on hand-made tables: an offline index.html, summary.md, plots/*.svg|png, the tables' rows."""

from __future__ import annotations

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import polars as pl
import pytest
from report_example import example  # tests/report_example.py: a made-up summary (not a measurement)

from infbench.report.build import build_report
from infbench.report.charts import build_charts


class Page(HTMLParser):
    """Collects external references, tables (id → rows of cell texts) and notes of an HTML page."""

    def __init__(self):
        super().__init__()
        self.refs: list[str] = []
        self.tables: dict[str, list[list[str]]] = {}
        self.notes: dict[str, str] = {}
        self.chart_divs: list[str] = []
        self._table = self._row = self._cell = self._note = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("src", "href", "data", "action", "poster"):
            if a.get(key):
                self.refs.append(f"{tag} {key}={a[key]}")
        if tag == "table":
            self._table = self.tables.setdefault(a.get("id", f"table{len(self.tables)}"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag in ("td", "th") and self._row is not None:
            self._cell = []
        elif tag == "p" and "data-note" in a:
            self._note = a["data-note"]
            self.notes[self._note] = ""
        elif tag == "div" and "data-spec" in a:
            self.chart_divs.append(a["id"])

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._row is not None:
            self._table.append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "p":
            self._note = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell.append(data)
        if self._note is not None:
            self.notes[self._note] += data


def parse(path: Path) -> Page:
    page = Page()
    page.feed(path.read_text(encoding="utf-8"))
    return page


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    summary, meta = example(machines=1, gpu=True)
    out = tmp_path_factory.mktemp("report")
    build_report(summary, meta, out)
    return summary, meta, out


def test_index_is_self_contained(built):
    _, _, out = built
    text = (out / "index.html").read_text(encoding="utf-8")
    page = parse(out / "index.html")
    external = [r for r in page.refs if re.search(r"=\s*(https?:)?//", r)]
    assert external == [], external
    assert not re.search(r"<(script|link|img|iframe)[^>]+(src|href)\s*=\s*[\"']?(https?:)?//", text, re.I)
    # the libraries are inlined once: one large script, every chart's spec as JSON beside it
    scripts = re.findall(r"<script(?: type=\"([^\"]*)\")?[^>]*>(.*?)</script>", text, re.S)
    big = [body for kind, body in scripts if not kind and len(body) > 100_000]
    assert len(big) == 1 and "vegaEmbed" in big[0]
    specs = [body for kind, body in scripts if kind == "application/json"]
    assert len(specs) == len(page.chart_divs) == 11
    # every linked file is a local plot that exists
    for ref in page.refs:
        target = ref.split("=", 1)[1]
        if not target.startswith("#"):
            assert (out / target).is_file(), ref


def test_header_names_dataset_model_machine_and_cells(built):
    summary, meta, out = built
    text = (out / "index.html").read_text(encoding="utf-8")
    assert "digits" in text and "resnet18" in text and "98.10%" in text
    assert "example-box" in text and "Example GPU 80GB" in text and "onnxruntime 1.32.0" in text
    failed = summary.filter(~pl.col("status").is_in(["ok", "unstable"])).height
    unstable = summary.filter(pl.col("status") == "unstable").height
    assert (failed, unstable) == (2, 2)
    measured = summary.height - failed
    assert f"{measured} of {summary.height} cells measured" in text
    assert f'<a href="#failures">{failed} failed</a>' in text and f'<a href="#summary">{unstable} noisy</a>' in text
    disturbed = meta["repetitions_disturbed"]
    assert disturbed == 4 and f"{disturbed} disturbed by other load on the machine and measured again" in text
    assert "torch fp32 (plain eager) on the same machine, device, image size and batch size" in text


def test_summary_table_prints_uncertainty_and_marks_unstable_and_launch_bound(built):
    summary, _, out = built
    text = (out / "index.html").read_text(encoding="utf-8")
    rows = parse(out / "index.html").tables["summary-table"]
    head = rows[0]
    col = {name: head.index(name) for name in ("backend", "status", "img/s", "p50 (ms)", "speedup (×)", "launch-bound")}
    col["disturbed"] = head.index("disturbed")
    by_cell = {tuple(r[:5]): r for r in rows[1:]}  # backend, precision, device, size, batch (one machine)
    # every measured cell: value ± its uncertainty (e.g. "5,422 ± 2.9%"), as in the summary
    cell = summary.filter(
        (pl.col("backend") == "onnxruntime")
        & (pl.col("precision") == "int8")
        & (pl.col("image_size") == 32)
        & (pl.col("batch_size") == 4)
    ).row(0, named=True)
    row = by_cell[("onnxruntime", "int8", "cpu", "32", "4")]
    assert re.fullmatch(r"[\d,.]+ ± 2\.0%", row[col["img/s"]]), row[col["img/s"]]
    assert row[col["p50 (ms)"]].endswith(" ± 3.0%")
    assert row[col["disturbed"]] == "1" == str(cell["disturbed_repetitions"])
    assert re.fullmatch(r"\d\.\d\d× \(\d\.\d\d–\d\.\d\d\) faster", row[col["speedup (×)"]]), row[col["speedup (×)"]]
    # unstable cells: shown with their numbers, tagged and their rows marked
    shaky = by_cell[("torch", "fp32", "cpu", "64", "16")]
    assert shaky[col["status"]] == "unstable" and shaky[col["img/s"]].endswith(" ± 14.0%")
    assert len(re.findall(r'<tr class="unstable">', text)) == 2
    assert len(re.findall(r'<span class="tag">unstable</span>', text)) == 2
    # launch-bound: yes for small-batch torch eager on CUDA, blank (not applicable) on CPU
    assert by_cell[("torch", "fp16", "cuda", "32", "1")][col["launch-bound"]] == "yes"
    assert by_cell[("torch", "fp16", "cuda", "32", "64")][col["launch-bound"]] == "no"
    assert by_cell[("torch", "fp32", "cpu", "32", "1")][col["launch-bound"]] == "–"


def test_plots_exported_for_every_chart(built):
    summary, meta, out = built
    drawn = [c.name for c in build_charts(summary, meta) if c.chart is not None]
    assert len(drawn) == 11  # with GPU cells every chart has data
    for name in drawn:
        svg = out / "plots" / f"{name}.svg"
        png = out / "plots" / f"{name}.png"
        assert svg.read_text().lstrip().startswith("<svg") and "<path" in svg.read_text()
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 1000
    assert sorted(p.stem for p in (out / "plots").glob("*.svg")) == sorted(drawn)
    assert sorted(parse(out / "index.html").chart_divs) == sorted(f"vis-{n}" for n in drawn)


def test_failures_dropped_and_accuracy_tables_list_their_rows(built):
    summary, meta, out = built
    page = parse(out / "index.html")
    failures = page.tables["failures-table"][1:]
    expected = summary.filter(~pl.col("status").is_in(["ok", "unstable"]))  # unstable cells are not failures
    assert len(failures) == expected.height == 2
    assert {r[6] for r in failures} == {"oom", "unavailable"}
    assert any("CUDA out of memory" in r[7] for r in failures)
    assert any("torch_tensorrt is not installed" in r[7] for r in failures)
    dropped = page.tables["dropped-table"][1:]
    assert [r[3] for r in dropped] == [d["reason"] for d in meta["dropped"]]
    accuracy = page.tables["accuracy-table"]
    assert len(accuracy) - 1 == len(meta["accuracy"])
    dyn = next(r for r in accuracy if r[2] == "int8-dynamic")
    assert "yes" in dyn  # over tolerance
    summary_rows = page.tables["summary-table"]
    assert len(summary_rows) - 1 == summary.height


def test_summary_markdown(built):
    summary, _, out = built
    md = (out / "summary.md").read_text(encoding="utf-8")
    header = (
        "| backend | precision | device | size | batch | status | img/s ± | p50 ms ± | p99 ms "
        "| speedup (interval) | disturbed | launch-bound | top-1 agreement | accuracy drop |"
    )
    assert header in md
    table_rows = [line for line in md.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(table_rows) == summary.height + 1
    assert "85 cells: 83 measured (2 noisy), 2 failed; 4 repetitions disturbed by other load and re-measured." in md
    assert sum("| **unstable** |" in line for line in table_rows) == 2
    assert all(" ± " in line for line in table_rows[1:] if "| ok |" in line)
    assert "## Findings" in md and "- [cpu] Highest throughput: onnxruntime int8" in md
    assert "**oom**" in md and "fp16 needs a GPU execution provider" in md
    failures = md.split("## Cells not ok")[1].split("##")[0]
    assert "unstable" not in failures  # unstable cells have numbers: they are in the table, not the failures


def test_cpu_only_and_missing_figures_become_notes(tmp_path):
    """No GPU: the NVML chart becomes a note; no accuracy/FLOPs/memory: their charts become notes too."""
    summary, meta = example(machines=1, gpu=False)
    summary = summary.with_columns(
        pl.lit(None, pl.Float64).alias(c)
        for c in ("accuracy_top1", "accuracy_drop", "utilization_pct", "achieved_tflops", "host_memory_peak_mib")
    ).with_columns(pl.lit(None, pl.Boolean).alias("over_tolerance"))
    meta = {**meta, "accuracy": [], "peaks": []}
    build_report(summary, meta, tmp_path)
    page = parse(tmp_path / "index.html")
    assert "No GPU cells: NVML figures" in page.notes["energy"]
    assert "accuracy" in page.notes["accuracy_vs_throughput"].lower()
    assert "utilisation" in page.notes["utilization"].lower()
    assert set(page.notes) == {"energy", "accuracy_vs_throughput", "utilization", "memory", "roofline"}
    assert not (tmp_path / "plots" / "energy.svg").exists()
    assert (tmp_path / "plots" / "throughput_vs_batch.svg").exists()
    md = (tmp_path / "summary.md").read_text()
    assert "could not be determined" in md


def test_nan_and_infinite_values_become_nulls(tmp_path):
    """A NaN or infinite figure must not reach the page: it is not valid JSON and the charts would not render."""
    summary, meta = example(machines=1, gpu=False)
    summary = summary.with_columns(
        pl.when(pl.col("batch_size") == 1)
        .then(float("nan"))
        .otherwise(pl.col("throughput_uncertainty_pct"))
        .alias("throughput_uncertainty_pct"),
        pl.when(pl.col("batch_size") == 4)
        .then(float("inf"))
        .otherwise(pl.col("speedup_vs_baseline"))
        .alias("speedup_vs_baseline"),
    )
    build_report(summary, meta, tmp_path)
    text = (tmp_path / "index.html").read_text(encoding="utf-8")

    def reject(constant):
        raise AssertionError(f"{constant} in a chart spec")

    specs = re.findall(r'<script type="application/json" id="[^"]+">(.*?)</script>', text, re.S)
    assert len(specs) >= 8
    for spec in specs:
        json.loads(spec, parse_constant=reject)


def test_two_machines_side_by_side(tmp_path):
    summary, meta = example(machines=2, gpu=False)
    build_report(summary, meta, tmp_path)
    text = (tmp_path / "index.html").read_text(encoding="utf-8")
    assert "@ older-box" in text and "@ example-box" in text  # series keyed by machine in the charts
    page = parse(tmp_path / "index.html")
    assert page.tables["summary-table"][0][0] == "machine"
    assert "| machine |" in (tmp_path / "summary.md").read_text()


def test_nothing_ok_and_all_null_columns(tmp_path):
    rows = [
        {
            "model": "resnet18",
            "backend": b,
            "precision": "fp32",
            "device": "cpu",
            "image_size": 32,
            "batch_size": 1,
            "status": s,
            "error": e,
        }
        for b, s, e in [("torch", "timeout", "no result within 120 s"), ("onnxruntime", "error", "boom")]
    ]
    build_report(pl.DataFrame(rows), {"dataset": "digits", "model": "resnet18"}, tmp_path)
    page = parse(tmp_path / "index.html")
    assert page.chart_divs == []
    assert len(page.notes) == 11 and all("No cell was measured" in n for n in page.notes.values())
    assert sorted(r[6] for r in page.tables["failures-table"][1:]) == ["error", "timeout"]
    assert {r[7] for r in page.tables["failures-table"][1:]} == {"no result within 120 s", "boom"}
    assert list((tmp_path / "plots").iterdir()) == []
    # rebuilding with data removes nothing it should keep, and a later empty build leaves no stale plot
    summary, meta = example(machines=1, gpu=False)
    build_report(summary, meta, tmp_path)
    assert (tmp_path / "plots" / "latency.svg").exists()
    build_report(pl.DataFrame(rows), {}, tmp_path)
    assert list((tmp_path / "plots").iterdir()) == []


def test_charts_draw_intervals_and_unstable_cells(built):
    """Throughput, time per image, latency and speedup charts carry the 95% interval of every drawn cell."""
    summary, meta, _ = built
    specs = {c.name: c.chart.to_dict() for c in build_charts(summary, meta) if c.chart is not None}
    ends = {
        "throughput_vs_batch": ("tput_low", "tput_high", "throughput_img_s"),
        "throughput_vs_size": ("tput_low", "tput_high", "throughput_img_s"),
        "time_per_image": ("tpi_low", "tpi_high", "time_per_image_ms"),
        "latency": ("p50_low", "p50_high", "latency_ms_p50"),
        "speedup": ("speedup_low", "speedup_high", "speedup_vs_baseline"),
    }
    for name, (low, high, value) in ends.items():
        text = json.dumps(specs[name])
        assert f'"field": "{high}"' in text, name  # an encoded interval end (y2 / x2)
        values = specs[name]["data"]["values"]
        assert all(v[low] < v[value] < v[high] for v in values), name
        # noisy (unstable) cells are drawn too, failed ones are not
        assert {v["status"] for v in values} == {"ok", "unstable"}, name
    assert '"field": "latency_ms_p99"' in json.dumps(specs["latency"])
    speedups = specs["speedup"]["data"]["values"]
    # only an undecided speedup is faded; the noisy baseline's own (64 px, batch 16) is undecided
    assert any(not v["speedup_decided"] for v in speedups) and any(v["speedup_decided"] for v in speedups)


def test_a_cell_unstable_for_the_machines_drift_alone_is_tagged_so_in_both_tables():
    from infbench.report.build import _cell, _md

    limited = {"status": "unstable", "drift_limited": True}
    assert '<span class="tag">unstable (drift)</span>' in _cell(limited, "status")
    assert _md(limited, "status") == "**unstable (drift)**"
    assert _md({"status": "unstable", "drift_limited": False}, "status") == "**unstable**"
