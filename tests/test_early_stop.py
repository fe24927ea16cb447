"""A GPU cell stops after two repetitions that agree well inside the tolerance (issue 36,
infbench/measure/early_stop.py); a CPU cell, or two GPU repetitions that disagree, keep the planned rest."""

from __future__ import annotations

import shutil

from conftest import REPO, copy_workflow, planned_jobs

from infbench.bench.repeat import repeat
from infbench.core.cell import Cell
from infbench.measure.early_stop import EARLY_REPETITIONS, repetitions_needed
from infbench.measure.early_stop import planned_jobs as jobs_for

TOLERANCE = 0.05


def rep(img_s: float, windows_rel: float = 0.002, disturbed: str | None = None, started: float = 0.0) -> dict:
    """A repetition as the measuring process writes it (the fields repeat() and the verdict read)."""
    return {
        "status": "ok",
        "error": None,
        "started": started,
        "process_s": 3.0,
        "canary_before_ms": None,
        "canary_after_ms": None,
        "foreign_cores": 0.0,
        "spare_cores": 0,
        "disturbed": disturbed,
        "throughput": {"img_s": img_s, "ci95_rel": windows_rel},
    }


def test_a_gpu_cell_plans_two_repetition_jobs_and_a_cpu_cell_all_of_them():
    assert jobs_for("cuda", 3) == EARLY_REPETITIONS == 2
    assert jobs_for("cuda", 2) == 2
    assert jobs_for("cpu", 3) == 3 and jobs_for("cpu", 5) == 5


def test_two_gpu_repetitions_that_agree_well_inside_the_tolerance_are_enough():
    assert repetitions_needed("cuda", [rep(10000), rep(10050)], TOLERANCE, 3) == 2


def test_a_third_where_the_two_or_their_windows_do_not_agree_well_inside_the_tolerance():
    # 5% apart: ±2.5%, inside the 5% tolerance but not well inside it (at most 40% of it, ±2%)
    assert repetitions_needed("cuda", [rep(10000), rep(10500)], TOLERANCE, 3) == 3
    # the processes agree, one's windows spread ±3%
    assert repetitions_needed("cuda", [rep(10000, 0.03), rep(10010)], TOLERANCE, 3) == 3
    # a disturbed one is replaced, never counted as agreement
    assert repetitions_needed("cuda", [rep(10000), rep(10010, disturbed="canary")], TOLERANCE, 3) == 3
    # a third repetition measured: the planned count judges the cell
    assert repetitions_needed("cuda", [rep(10000), rep(10010), rep(10020)], TOLERANCE, 3) == 3


def test_the_cpu_keeps_every_planned_repetition_however_well_two_agree():
    assert repetitions_needed("cpu", [rep(500), rep(500.5)], TOLERANCE, 3) == 3


def test_repeat_stops_after_two_agreeing_gpu_repetitions_without_measuring_another():
    """repeat() over the two repetition jobs' results: no third process is started (none could be on
    this CPU-only machine: a started repetition of a CUDA cell would come back as an error)."""
    cell = Cell("resnet18", "torch_compile_max_autotune", "fp16", "cuda", 224, 64)
    args = {
        "repetitions": {"repetitions": 3, "max_extra": 2},
        "tolerance": TOLERANCE,
        "interference": {"canary_slowdown": 1.3, "foreign_cores": 0.25},
    }
    earlier = [rep(20000, started=1.0), rep(20080, started=2.0)]
    runs, failure = repeat(cell, args, 60, {}, earlier)
    assert failure is None and [r["throughput"]["img_s"] for r in runs] == [20000, 20080]


def test_the_seeds_grid_plans_two_repetition_jobs_per_gpu_cell(tmp_path):
    wd = copy_workflow(tmp_path / "wd")
    (wd / "benchmarks").mkdir()
    shutil.copy2(REPO / "benchmarks" / "h100_seeds.yaml", wd / "benchmarks")
    args = ("--configfile", "config/cifar10.yaml", "benchmarks/h100_seeds.yaml", "--config", "dataset=digits")
    jobs = planned_jobs(wd, "report", *args)
    assert jobs["bench_cell"] == 168 and jobs["bench_repetition"] == 2 * 168
