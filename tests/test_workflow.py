"""The whole workflow on a tiny config, through real Snakemake runs."""

from __future__ import annotations

import json
import shlex
import subprocess

import polars as pl
import pytest
from conftest import MEASURED, TINY_CONFIG, copy_workflow, planned_jobs

REQUIRED_COLUMNS = [
    "model",
    "backend",
    "precision",
    "device",
    "image_size",
    "batch_size",
    "status",
    "error",
    "stability",
    "repetitions",
    "disturbed_repetitions",
    "throughput_uncertainty_pct",
    "latency_ms_p50",
    "latency_ms_p90",
    "latency_ms_p99",
    "throughput_img_s",
    "time_per_image_ms",
    "speedup_vs_baseline",
    "speedup_low",
    "speedup_high",
    "launch_bound",
    "baseline",
]


def test_dry_run_lists_jobs_and_runs_none(tmp_path):
    workdir = copy_workflow(tmp_path / "wf", TINY_CONFIG)
    jobs = planned_jobs(workdir, "report")
    assert jobs["bench_cell"] == 2 and jobs["train"] == 1 and jobs["report"] == 1
    assert not (workdir / "results").exists()


def test_report_end_to_end_then_nothing_to_do(reported_workflow, report_again):
    """The suite's default study (conftest's `reported_run`: the trained tiny workflow through a real
    `snakemake report`), then `snakemake report` once more on a copy of it."""
    report = reported_workflow / "results/digits/resnet18/report"
    for name in ("index.html", "summary.md", "summary.csv", "summary.parquet"):
        assert (report / name).stat().st_size > 0, name
    df = pl.read_parquet(report / "summary.parquet")
    assert set(REQUIRED_COLUMNS) <= set(df.columns)
    assert df.height == 2 and df["status"].is_in(MEASURED).all(), df.select("backend", "status", "error")
    assert (df["throughput_img_s"] > 0).all() and (df["repetitions"] >= 2).all()  # more where they disagreed
    baseline = df.filter(pl.col("backend") == "torch")
    assert baseline["speedup_vs_baseline"].to_list() == [pytest.approx(1.0)]
    # Each cell checked that it computes the same thing as the fp32 reference, on real images.
    assert (df["top1_agreement"] >= 0.99).all()
    # Repetitions separated in time: every cell's first repetition ran before any cell's second.
    repetitions = reported_workflow / "results/digits/resnet18/repetitions"
    reps = [json.loads(p.read_text()) for p in repetitions.rglob("*.json")]
    assert sorted(r["repetition"] for r in reps) == [1, 1, 2, 2]
    assert max(r["started"] for r in reps if r["repetition"] == 1) < min(
        r["started"] for r in reps if r["repetition"] == 2
    )

    _, again = report_again
    assert "Nothing to be done" in again


def test_a_cell_reruns_by_hand_from_its_log(reported_copy):
    """The command line at the top of a cell's log (written by the default study's run) measures the cell again."""
    log = reported_copy / "results/digits/resnet18/logs/bench/onnxruntime/fp32/cpu/32x4.log"
    first = log.read_text().splitlines()[0]
    assert first.startswith("command: infbench bench ")
    argv = shlex.split(first.removeprefix("command: "))
    out = reported_copy / "by_hand.json"
    argv[argv.index("--out") + 1] = str(out)
    subprocess.run(argv, cwd=reported_copy, check=True, capture_output=True)
    result = json.loads(out.read_text())
    assert result["status"] in MEASURED and result["cell"]["batch_size"] == 4
