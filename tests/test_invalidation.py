"""Precise invalidation: a change reruns exactly what it invalidates, nothing more, nothing less.

Each test starts from a copy of a workflow folder that a real Snakemake run took through
`report` (the `reported_workflow` fixture: the tiny grid, torch and onnxruntime fp32 on the CPU),
makes one change as a user would (the config, a module of the copy's own package, an installed
version) and reads the job counts of a dry run.
"""

from __future__ import annotations

import copy

import pytest
from conftest import TINY_CONFIG, planned_jobs, snakemake, write_config

CELLS = len(TINY_CONFIG["grid"]["backends"])  # one size, one batch, one device, fp32 each
REPS = TINY_CONFIG["bench"]["repetitions"]  # a job each (rule bench_repetition), then the cell's job
NEW_CELLS = {"bench_repetition": CELLS * REPS, "bench_cell": CELLS}
REPORT_JOBS = {"aggregate": 1, "render_report": 1, "report": 1}  # after any cell changed


def planned_outputs(workdir, *targets: str) -> list[str]:
    """Output files of the jobs a dry run plans (-p: every job's block, which the default profile leaves out)."""
    out = snakemake(workdir, "-n", "-p", *targets).stdout
    return [line.split("output:", 1)[1].strip() for line in out.splitlines() if line.strip().startswith("output:")]


def bench_outputs(workdir) -> list[str]:
    """The cells' and their repetitions' files a dry run plans."""
    study = "results/digits/resnet18"
    return sorted(
        o for o in planned_outputs(workdir, "report") if o.startswith((f"{study}/bench/", f"{study}/repetitions/"))
    )


ONNXRUNTIME_OUTPUTS = [
    "results/digits/resnet18/bench/onnxruntime/fp32/cpu/32x4.json",
    *(f"results/digits/resnet18/repetitions/onnxruntime/fp32/cpu/32x4/{r}.json" for r in range(1, REPS + 1)),
]


def config(**grid) -> dict:
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["grid"].update(grid)
    return cfg


def touch_module(workdir, rel: str) -> None:
    """A real edit of a module of the copy's package (the copy's package comes first on PYTHONPATH)."""
    path = workdir / "workflow" / "infbench" / rel
    path.write_text(path.read_text() + "\nEDITED = True  # an edit that changes the code\n")


def test_nothing_changed_nothing_runs(reported_copy):
    assert planned_jobs(reported_copy, "report") == {}


def test_another_cores_reruns_the_cpu_cells_whose_threads_it_changes(reported_copy):
    """A CPU cell runs as many threads as Snakemake gives its job: the suite's runs give 2 (--cores 2), and
    --cores 1 would measure one thread, so it reruns every CPU cell, not training."""
    jobs = planned_jobs(reported_copy, "--cores", "1", "report")
    assert jobs["bench_cell"] == CELLS and "train" not in jobs and "export_onnx" not in jobs, jobs


def test_a_batch_size_added_runs_only_its_cells_then_the_report(reported_copy):
    wd = reported_copy
    cells_before = {
        p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (wd / "results/digits/resnet18/bench").rglob("*.json")
    }
    assert len(cells_before) == CELLS
    # A batch below the largest one: the accuracy jobs run at the largest batch of the grid.
    write_config(wd, config(batch_sizes=[2, 4]))
    assert planned_jobs(wd, "report") == {**NEW_CELLS, **REPORT_JOBS}
    assert all(o.endswith("/32x2.json") or "/32x2/" in o for o in bench_outputs(wd))

    snakemake(wd, "report")  # the real run: the finished cells are neither rerun nor rewritten
    cells_after = {
        p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (wd / "results/digits/resnet18/bench").rglob("*.json")
    }
    assert len(cells_after) == 2 * CELLS
    assert {p: cells_after[p] for p in cells_before} == cells_before
    assert planned_jobs(wd, "report") == {}


def test_a_larger_batch_size_added_runs_only_its_cells_then_the_report(reported_copy):
    write_config(reported_copy, config(batch_sizes=[4, 8]))
    assert planned_jobs(reported_copy, "report") == {**NEW_CELLS, **REPORT_JOBS}


def test_a_training_hyper_parameter_reruns_training_and_everything_downstream(reported_copy):
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["train"]["lr"] = 0.04
    write_config(reported_copy, cfg)
    jobs = planned_jobs(reported_copy, "report")
    # Upstream of training (the dataset) and independent of it (the hardware probe) are kept.
    assert "prepare_data" not in jobs and "probe" not in jobs, jobs
    assert jobs["train"] == 1 and jobs["export_onnx"] == 1
    assert jobs["bench_cell"] == CELLS and jobs["bench_repetition"] == CELLS * REPS
    assert jobs["aggregate"] == 1 and jobs["report"] == 1
    if "accuracy" in jobs:  # one per variant, all downstream of the checkpoint
        assert jobs["accuracy"] == CELLS


def test_a_backend_code_change_reruns_only_that_backends_cells(reported_copy):
    touch_module(reported_copy, "backends/onnxruntime.py")
    jobs = planned_jobs(reported_copy, "report")
    assert (
        jobs.pop("bench_cell") == 1
        and jobs.pop("bench_repetition") == REPS
        and jobs.pop("aggregate") == 1
        and jobs.pop("render_report") == 1
        and jobs.pop("report") == 1
    )
    assert jobs in ({}, {"accuracy": 1}), jobs  # its accuracy job runs the same backend code
    assert bench_outputs(reported_copy) == ONNXRUNTIME_OUTPUTS


def test_a_measurement_code_change_reruns_every_cell_but_not_training(reported_copy):
    touch_module(reported_copy, "measure/timing.py")
    jobs = planned_jobs(reported_copy, "report")
    assert jobs["bench_cell"] == CELLS and "train" not in jobs and "export_onnx" not in jobs, jobs


def test_a_judging_setting_reruns_the_cells_jobs_not_their_repetitions(reported_copy):
    """The tolerance judges repetitions already measured: the cells combine them again, nothing is re-measured."""
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["bench"]["tolerance"] = 0.5
    write_config(reported_copy, cfg)
    assert planned_jobs(reported_copy, "report") == {"bench_cell": CELLS, **REPORT_JOBS}


def test_a_measuring_setting_reruns_the_repetitions(reported_copy):
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["bench"]["warmup_s"] = 0.3
    write_config(reported_copy, cfg)
    assert planned_jobs(reported_copy, "report") == {**NEW_CELLS, **REPORT_JOBS}


def fake_distribution(site, name: str, version: str) -> None:
    """An installed distribution as importlib.metadata sees it: a `.dist-info` folder with METADATA.

    Installing or upgrading a package for real is what a user does; here the versions rules read
    (`grid.backend_versions`, `importlib.metadata.version`) come from the first matching
    `.dist-info` on sys.path, so one placed on the copy's PYTHONPATH entry (its `workflow/`,
    which comes before site-packages) reports that version while the real package still imports.
    """
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")


@pytest.mark.parametrize(
    "name, change",
    [("onnxruntime", "upgraded"), ("onnxruntime-gpu", "newly installed")],
)
def test_a_backend_package_change_reruns_only_its_cells(reported_copy, name, change):
    fake_distribution(reported_copy / "workflow", name, "99.0.0")
    jobs = planned_jobs(reported_copy, "report")
    assert (
        jobs.pop("bench_cell") == 1
        and jobs.pop("bench_repetition") == REPS
        and jobs.pop("aggregate") == 1
        and jobs.pop("render_report") == 1
        and jobs.pop("report") == 1
    ), change
    assert jobs in ({}, {"accuracy": 1}), jobs
    assert bench_outputs(reported_copy) == ONNXRUNTIME_OUTPUTS


def test_a_chart_change_reruns_only_the_report(reported_copy):
    charts = reported_copy / "workflow" / "infbench" / "report" / "charts.py"
    if not charts.exists():
        pytest.skip("no chart module yet")
    touch_module(reported_copy, "report/charts.py")
    assert planned_jobs(reported_copy, "report") == {"render_report": 1, "report": 1}


def test_an_aggregation_change_reruns_the_aggregation_and_the_report(reported_copy):
    touch_module(reported_copy, "report/aggregate.py")
    assert planned_jobs(reported_copy, "report") == {"aggregate": 1, "render_report": 1, "report": 1}


def test_a_backend_that_builds_on_another_also_hashes_its_code():
    """torchscript reuses torch_eager's loading and precision set-up: an edit there must rerun it too."""
    from infbench.study import grid

    assert grid.backend_modules("torchscript") == ["base", "torch_eager", "torchscript"]
    assert grid.backend_modules("onnxruntime") == ["base", "onnxruntime"]
    assert "torch_eager" in grid.backend_modules(grid.BACKENDS["torch_compile_max_autotune"].module)


def test_a_batch_size_beyond_the_agreement_images_runs_only_its_cells_then_the_report(reported_copy):
    """Issue 28 item 10: a batch larger than agreement_images (8) and every batch size of the grid changed the
    per-size reference file's image count, and with it every cell of the grid."""
    write_config(reported_copy, config(batch_sizes=[4, 9]))
    assert planned_jobs(reported_copy, "report") == {**NEW_CELLS, **REPORT_JOBS}


def test_a_cuda_option_reruns_no_cpu_cell(reported_copy):
    """Issue 28 item 7: the CUDA execution provider's options do nothing on the CPU, so they rerun nothing there."""
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["backend_options"] = {"onnxruntime": {"enable_cuda_graph": True, "prefer_nhwc": True}}
    write_config(reported_copy, cfg)
    assert planned_jobs(reported_copy, "report") == {}


# -- issue 35: what a change reruns, precisely ------------------------------------------------------------------------


def edit_module(workdir, rel: str, old: str, new: str) -> None:
    """A real edit of one place in a module of the copy's package."""
    path = workdir / "workflow" / "infbench" / rel
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} not once in {rel}"
    path.write_text(text.replace(old, new))


@pytest.mark.parametrize(
    "module", ["bench/combine.py", "bench/repeat.py", "measure/budget.py", "measure/repetitions.py"]
)
def test_a_judging_code_change_judges_again_without_measuring_again(reported_copy, module):
    """Issue 35 item 10: combining and judging repetitions reruns the cells' jobs (which read the repetitions
    already measured), never a repetition."""
    touch_module(reported_copy, module)
    assert planned_jobs(reported_copy, "report") == {"bench_cell": CELLS, **REPORT_JOBS}


def test_a_reworded_error_message_reruns_nothing(reported_copy):
    """Issue 35 item 10: the text of a raised message in stages/model.py (which training and every measuring
    process run) is not what they compute: rewording it neither retrains nor re-measures."""
    edit_module(reported_copy, "stages/model.py", "does not exist", "is not there")
    assert planned_jobs(reported_copy, "report") == {}


def test_a_changed_option_default_reruns_that_backends_cells(reported_copy):
    """Issue 35 item 5: a backend's option defaults (backends/registry.py) are part of what its cells ran."""
    edit_module(
        reported_copy,
        "backends/registry.py",
        'Option("fixed_shape", bool, False,',
        'Option("fixed_shape", bool, True,',
    )
    jobs = planned_jobs(reported_copy, "report")
    assert jobs.pop("bench_cell") == 1 and jobs.pop("bench_repetition") == REPS, jobs
    assert jobs in (REPORT_JOBS, {**REPORT_JOBS, "accuracy": 1}), jobs
    assert bench_outputs(reported_copy) == ONNXRUNTIME_OUTPUTS


def test_a_package_only_another_precision_imports_reruns_nothing(reported_copy):
    """Issue 35 item 10: installing or upgrading NNCF re-measured OpenVINO's fp32 cells, which never import it;
    an OpenVINO upgrade does re-measure them."""
    pytest.importorskip("openvino")
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["grid"]["backends"] = {**cfg["grid"]["backends"], "openvino": ["fp32"]}
    write_config(reported_copy, cfg)
    snakemake(reported_copy, "report")
    fake_distribution(reported_copy / "workflow", "nncf", "99.0.0")
    assert planned_jobs(reported_copy, "report") == {}
    fake_distribution(reported_copy / "workflow", "openvino", "99.0.0")
    jobs = planned_jobs(reported_copy, "report")
    assert jobs.get("bench_cell") == 1 and jobs.get("bench_repetition") == REPS, jobs
