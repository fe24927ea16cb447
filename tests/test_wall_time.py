"""benchmarks/wall_time.py on a real finished study (the tiny CPU grid run through `report`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))
import wall_time  # noqa: E402

STUDY = "results/digits/resnet18"


def test_wall_time_splits_the_run_and_each_repetition(reported_workflow, tmp_path):
    study = reported_workflow / STUDY
    b = wall_time.breakdown(study)
    cells = sorted((study / "bench").rglob("*.json"))
    assert b["cells"] == len(cells) > 0
    # Snakemake's job times: the span ends with the report, every cell was one bench job inside it
    assert b["span_ends_at"] == "render_report"
    assert b["rules"]["bench_cell"]["jobs"] == len(cells)
    # the first repetitions (2 in the tiny config) are jobs of their own; their time around the process is counted
    assert b["rules"]["bench_repetition"]["jobs"] == 2 * len(cells)
    assert b["repetition_jobs_outside_their_process_s"] > 0
    assert 0 < b["rules"]["bench_cell"]["wall_s"] <= b["span_s"]
    assert {"prepare_data", "train", "aggregate", "render_report"} <= set(b["rules"])
    # every repetition recorded its split: the phases add up to the processes' time
    assert "unsplit" not in b["phases_s"]
    assert {"start", "load", "first_batch", "warmup", "measure"} <= set(b["phases_s"])
    assert sum(b["phases_s"].values()) == pytest.approx(b["repetition_s"], rel=1e-6)
    runs = [r for c in cells for r in json.loads(c.read_text())["repetition_runs"]]
    assert b["repetitions"] == len(runs)
    for rep in runs:
        assert rep["started"] <= rep["load_started_at"] <= rep["measure_started_at"] <= rep["measure_ended_at"]
        assert rep["measure_ended_at"] <= rep["ended"]
    for c in cells:  # time to first inference: the load (the host read included) plus the first batch
        result = json.loads(c.read_text())
        assert result["first_inference_s"] >= result["load_s"] > 0
    assert all(0 <= rep["read_s"] <= rep["load_s"] for rep in runs)  # the host part of the load
    assert all(
        rep["read_s"] > 0 for c in cells for rep in json.loads(c.read_text())["repetition_runs"] if "/torch/" in str(c)
    )
    assert b["phases_s"]["read"] > 0

    out = tmp_path / "wt"
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "wall_time.py"), str(study), "--out", str(out)],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert "| bench_cell |" in done.stdout and "measurement (throughput and energy windows" in done.stdout
    assert out.with_suffix(".md").read_text() == done.stdout
    assert json.loads(out.with_suffix(".json").read_text())["cells"] == len(cells)


def test_wall_time_names_a_folder_that_is_no_study(tmp_path):
    done = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "wall_time.py"), str(tmp_path)], capture_output=True, text=True
    )
    assert done.returncode != 0
    assert "has no bench/ folder" in done.stderr and "results/digits/resnet18" in done.stderr


def test_a_repetition_without_the_split_counts_as_unsplit():
    rep = {"process_s": 5.0, "load_s": 1.5, "started": 100.0}
    assert wall_time.repetition_phases(rep) == {"load": 1.5, "unsplit": 3.5}


def test_union_counts_overlapping_jobs_once():
    assert wall_time.union_s([(0, 2), (1, 3), (5, 6)]) == 4
