"""The lines a run prints (infbench.flow.progress) and the plan (infbench.flow.plan), on result files written here."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path

from conftest import REPO, TINY_CONFIG

from infbench.core.cell import Cell
from infbench.flow import plan, progress
from infbench.study import grid


def write_result(root: Path, cell: Cell, **fields) -> Path:
    path = root / grid.bench_result_path(cell, "digits")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"cell": dataclasses.asdict(cell), **fields}))
    return path


def cell(backend="onnxruntime", precision="int8", size=64, batch=32, device="cpu") -> Cell:
    return Cell("resnet18", backend, precision, device, size, batch)


def test_cell_line_has_result_uncertainty_and_speedup_against_the_baseline_on_disk(tmp_path):
    write_result(tmp_path, cell("torch", "fp32"), status="ok", throughput_img_s=727.0)
    path = write_result(
        tmp_path, cell(), status="ok", throughput_img_s=2254.4, throughput_uncertainty_pct=1.3, stability="stable"
    )
    line = progress.cell_line(path)
    assert line.split() == "resnet18 onnxruntime int8 cpu 64×32 2,254 img/s ±1.3% 3.1× torch fp32".split(), line


def test_cell_line_without_a_baseline_result_has_no_speedup(tmp_path):
    path = write_result(tmp_path, cell(), status="ok", throughput_img_s=85.25, timing={"ci95_rel": 0.021})
    assert progress.cell_line(path).split()[-3:] == ["85.2", "img/s", "±2.1%"]


def test_the_baseline_cell_says_so(tmp_path):
    path = write_result(tmp_path, cell("torch", "fp32"), status="ok", throughput_img_s=700.0)
    assert progress.cell_line(path).endswith("baseline")


def test_unstable_and_failed_cells_say_so(tmp_path):
    write_result(tmp_path, cell("torch", "fp32"), status="ok", throughput_img_s=1000.0)
    unstable = write_result(
        tmp_path, cell(), status="unstable", throughput_img_s=1500.0, throughput_uncertainty_pct=9.0
    )
    assert progress.cell_line(unstable).split()[-4:] == ["1.5×", "torch", "fp32", "unstable"]
    wide = write_result(
        tmp_path,
        cell(batch=2),
        status="unstable",
        throughput_img_s=857.0,
        throughput_uncertainty_pct=62.0,
        throughput_min_img_s=506.0,
        throughput_max_img_s=1177.0,
    )
    assert "857 img/s (range 506–1,177)" in progress.cell_line(wide) and "±" not in progress.cell_line(wide)
    failed = write_result(
        tmp_path, cell(batch=8), status="oom", error="CUDA out of memory. Tried to allocate 2 GiB\ntraceback…"
    )
    assert progress.cell_line(failed).endswith("  oom: CUDA out of memory. Tried to allocate 2 GiB")
    bare = write_result(tmp_path, cell(batch=4))  # no status, no numbers: what there is, nothing invented
    assert progress.cell_line(bare).split()[-1] == "unknown"


def test_colour_only_when_asked(tmp_path):
    path = write_result(tmp_path, cell(), status="error", error="RuntimeError: boom")
    assert "\033[" not in progress.cell_line(path)
    assert progress.cell_line(path, color=True).count("\033[31m") == 1


def test_time_left_from_the_jobs_that_finished():
    p = progress.Progress({"train": 1, "bench_cell": 4, "report": 1, "total": 6}, now=0)
    p.start(1, "train", now=0)
    p.finish(1, now=60)
    assert p.time_left() == 5 * 60  # nothing else finished yet: every job counts at the mean so far
    p.start(2, "bench_cell", now=60)
    p.finish(2, now=70)
    assert p.time_left() == 3 * 10 + 1 * 35  # cells at their own mean, the report at the mean of all
    assert p.cell_counter() == "[1/4]"
    assert p.figure() == "33% · ~1 min left"


def test_duration_words():
    assert [progress.duration(s) for s in (0.4, 45, 150, 3600 + 5 * 60)] == ["0 s", "45 s", "2 min", "1 h 05 min"]


def test_plan_counts_cells_done_and_estimates_from_earlier_results(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["grid"]["batch_sizes"] = [4, 8]
    config["bench"].update(repetitions=1)
    config["model"] = {"name": "resnet18"}
    write_result(tmp_path, cell("torch", "fp32", 32, 4), status="ok", wall_s=30.0)
    write_result(tmp_path, cell("torch", "fp32", 64, 16), status="ok", wall_s=50.0)  # another grid's, same backend
    rows = {r["backend"]: r for r in plan.plan(config, tmp_path)}
    assert (rows["torch"]["cells"], rows["torch"]["done"]) == (2, 1)
    assert rows["torch"]["seconds_left"] == 40.0 and rows["torch"]["estimate"] == "mean of 2 earlier cells"
    default = plan.default_cell_s(config, "cpu")
    assert rows["onnxruntime"]["seconds_left"] == 2 * default and rows["onnxruntime"]["estimate"] == "default"
    text = plan.lines(config, tmp_path)
    assert text[0].startswith("Plan: 4 cells on cpu; 1 done, 3 to measure")


def test_plan_takes_an_overlays_backends_as_the_whole_map_as_the_workflow_does(tmp_path):
    """`infbench plan --configfile config/cifar10.yaml benchmarks/h100_seeds.yaml` plans the seeds' seven
    variants (168 cells), as Snakemake runs them, not the union with cifar10.yaml's backends."""
    text = plan.main([REPO / "config" / "cifar10.yaml", REPO / "benchmarks" / "h100_seeds.yaml"], tmp_path)
    assert text[0].startswith("Plan: 168 cells on cuda; 0 done, 168 to measure")
    planned = {line.split()[1] for line in text[1:] if line.startswith("  cuda ")}
    assert planned == {"torch", "torch_cudagraphs", "torchscript", "torch_compile_max_autotune", "onnxruntime"}


def test_progress_lines_name_the_model_of_a_several_model_run(tmp_path):
    """Issue 35, item 1: 'repetition 5 of openvino int8 cpu 32×1: 428 img/s' — of which model? Both the cell's and
    the repetition's line name it."""
    cell = {"model": "mobilenet_v3_small", "backend": "openvino", "precision": "int8", "device": "cpu"}
    cell |= {"image_size": 32, "batch_size": 1}
    rep = tmp_path / "5.json"
    rep.write_text(json.dumps({"repetition": 5, "cell": cell, "status": "ok", "throughput": {"img_s": 428.0}}))
    assert progress.repetition_line(rep) == "repetition 5 of mobilenet_v3_small openvino int8 cpu 32×1: 428 img/s"
    result = tmp_path / "32x1.json"
    result.write_text(json.dumps({"cell": cell, "status": "ok", "throughput_img_s": 428.0}))
    assert progress.cell_line(result).startswith("mobilenet_v3_small openvino int8 cpu 32×1")
