"""Two machines in one report (`report.compare`): this run beside the H100 results kept in docs/h100/ (a report
folder: its summary.csv), through a real Snakemake run; the report then renders in headless Chromium."""

from __future__ import annotations

import shutil
from pathlib import Path

import polars as pl
import pytest
import yaml
from conftest import REPO, snakemake

from infbench.report import compare

H100 = REPO / "docs" / "h100"


def test_compared_folders_of_every_kind_load(reported_copy):
    from_summary = compare.load(H100, "H100")
    assert len(from_summary) == pl.read_csv(H100 / "summary.csv").height
    assert {r["_machine"] for r in from_summary} == {"H100"}
    first = from_summary[0]
    assert first["cell"]["device"] == "cuda" and first["throughput_img_s"] > 0
    bench = reported_copy / "results/digits/resnet18/bench"
    for folder in (bench, bench.parent, bench.parent / "report"):  # <study>/bench, <study>, <study>/report
        loaded = compare.load(folder, "here")
        assert len(loaded) == 2 and {r["cell"]["backend"] for r in loaded} == {"torch", "onnxruntime"}, folder
    with pytest.raises(FileNotFoundError, match="holds no results"):
        compare.load(reported_copy / "config", "nothing")


def test_this_run_beside_the_h100_in_one_report(reported_copy, tmp_path):
    extra = reported_copy / "compare.yaml"
    extra.write_text(yaml.safe_dump({"report": {"compare": [{"label": "H100", "path": str(H100)}]}}))
    snakemake(reported_copy, "report", "--configfile", str(extra))
    df = pl.read_parquet(reported_copy / "results/digits/resnet18/report/summary.parquet")
    machines = dict(df.group_by("machine").len().iter_rows())
    assert machines.pop("H100") == 28 and list(machines.values()) == [2], machines
    h100 = df.filter(pl.col("machine") == "H100")
    assert h100.filter((pl.col("backend") == "torch") & (pl.col("precision") == "fp32"))[
        "speedup_vs_baseline"
    ].to_list() == [1.0, 1.0]
    html = (reported_copy / "results/digits/resnet18/report/index.html").read_text()
    assert "<b>H100</b>" in html and "[H100, cuda] Highest throughput" in html

    browser = pytest.importorskip("test_report_browser")
    if not Path(browser.CHROMIUM).exists():
        pytest.skip(f"headless Chromium not found at {browser.CHROMIUM} (apt-get install chromium)")
    state = browser.check_report(reported_copy / "results/digits/resnet18/report/index.html", tmp_path / "compare.png")
    assert state["problems"] == [], state["problems"]
    assert state["failed"] == 0 and state["rendered"] == len(state["charts"]) > 0
    for chart in state["charts"]:
        assert chart["marks"] > 0, f"{chart['id']} drew no marks"


def test_a_label_with_a_space_and_a_changed_compared_folder(reported_copy):
    """Issue 35 item 9: `--compare {label}={path}` is quoted (a label with a space), and the compared run's
    results are inputs of the report, so that a changed compared folder rebuilds it."""
    from conftest import planned_jobs

    other = reported_copy / "other machine"
    shutil.copytree(H100, other)
    extra = reported_copy / "compare.yaml"
    extra.write_text(yaml.safe_dump({"report": {"compare": [{"label": "H100 node", "path": str(other)}]}}))
    snakemake(reported_copy, "report", "--configfile", str(extra))
    df = pl.read_parquet(reported_copy / "results/digits/resnet18/report/summary.parquet")
    assert df.filter(pl.col("machine") == "H100 node").height == 28
    assert planned_jobs(reported_copy, "report", "--configfile", str(extra)) == {}
    summary = pl.read_csv(other / "summary.csv", infer_schema_length=None)
    summary.head(10).write_csv(other / "summary.csv")  # the compared run changed: fewer cells
    planned = planned_jobs(reported_copy, "report", "--configfile", str(extra))
    assert planned.get("aggregate") == 1 and planned.get("render_report") == 1, planned
