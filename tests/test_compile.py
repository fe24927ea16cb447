"""The compile stage: rules, paths and config of the ahead-of-time artifacts, through Snakemake.

AOTInductor runs for real on the CPU (tiny shape); Torch-TensorRT, not installable here, must leave
a stub whose cell reports `unavailable` with the import error, without failing the workflow.
"""

from __future__ import annotations

import copy
import importlib.util
import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import MEASURED, REPO, TINY_CONFIG, copy_workflow, planned_jobs, snakemake

HAS_TORCH_TENSORRT = importlib.util.find_spec("torch_tensorrt") is not None


def defined_rules() -> set[str]:
    rules = set()
    for smk in (REPO / "workflow" / "rules").glob("*.smk"):
        rules |= set(re.findall(r"^rule (\w+):", smk.read_text(), re.M))
    return rules


def study_config(**grid_overrides) -> dict:
    """config/cifar10.yaml on digits, minus precisions whose artifact rule is not in this checkout."""
    from infbench.backends.registry import spec
    from infbench.core.cell import Cell

    config = yaml.safe_load((REPO / "config" / "cifar10.yaml").read_text())
    config["dataset"] = "digits"
    rules = defined_rules()
    for backend, precisions in config["grid"]["backends"].items():
        keep = []
        for p in precisions:
            rule = spec(backend).artifact(Cell("resnet18", backend, p, "cuda", 224, 1)).rule
            if rule in rules:
                keep.append(p)
        config["grid"]["backends"][backend] = keep or precisions[:1]
    config["grid"].update(grid_overrides)
    return config


def test_study_grid_plans_compile_jobs_per_shape_and_precision(tmp_path):
    config = study_config(image_sizes=[224, 384], batch_sizes=[1, 8])
    workdir = copy_workflow(tmp_path / "wf", config)
    jobs = planned_jobs(workdir, "report")
    # 2 sizes × 2 batches per AOTInductor precision on each device it runs on
    aoti_precisions = set(config["grid"]["backends"]["aotinductor"])
    aoti_cpu = aoti_precisions & {"fp32", "bf16"}
    assert jobs["compile_aoti"] >= 4 * (len(aoti_precisions) + len(aoti_cpu))
    assert jobs["compile_torch_tensorrt"] >= 4 * len(config["grid"]["backends"]["torch_tensorrt"])
    assert jobs["bench_cell"] > 100 and jobs["train"] == 1
    assert not (workdir / "results").exists()


def test_dry_run_shows_the_compile_commands(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["grid"] = {
        "image_sizes": [32],
        "batch_sizes": [2],
        "devices": ["cpu", "cuda"],
        "backends": {"aotinductor": ["fp32"], "torch_tensorrt": ["fp16"]},
    }
    workdir = copy_workflow(tmp_path / "wf", config)
    out = snakemake(
        workdir,
        "-n",
        "-p",
        "results/digits/resnet18/bench/torch_tensorrt/fp16/cuda/32x2.json",
        "results/digits/resnet18/bench/aotinductor/fp32/cpu/32x2.json",
    ).stdout
    assert "infbench compile-aoti" in out and "--device cpu --precision fp32 --size 32 --batch 2" in out
    assert "infbench compile-torch-tensorrt" in out and "--precision fp16 --size 32 --batch 2" in out
    assert "results/digits/resnet18/aoti/cpu/fp32/32x2.pt2" in out
    assert "results/digits/resnet18/torch_tensorrt/fp16/32x2.ep" in out


def test_backend_options_reach_the_cell_command_and_rerun_only_that_backend(tmp_path):
    config = copy.deepcopy(TINY_CONFIG)
    config["grid"]["backends"] = {"torch": ["fp32"], "torchscript": ["fp32"]}
    config["backend_options"] = {"torch": {"channels_last": True}}
    workdir = copy_workflow(tmp_path / "wf", config)
    out = snakemake(workdir, "-n", "-p", "results/digits/resnet18/bench/torch/fp32/cpu/32x4.json").stdout
    assert "--option channels_last=true" in out


def test_workflow_profile_limits_gpu_jobs_to_one():
    # Snakemake loads profiles/default/ next to the Snakefile by itself (its --workflow-profile default).
    profile = yaml.safe_load((REPO / "profiles" / "default" / "config.yaml").read_text())
    assert "gpu=1" in profile["resources"]


def test_aoti_and_unavailable_tensorrt_cells_through_snakemake(reported_copy):
    """compile_aoti builds a real package on the CPU and its cell measures it; the Torch-TensorRT
    rule leaves a stub and its cell reports 'unavailable' with the import error. (In a copy of the
    default study: the reference, FLOP count and CPU probe the cells read are up to date there.)"""
    config = yaml.safe_load((reported_copy / "config" / "config.yaml").read_text())
    config["grid"]["backends"] = {"aotinductor": ["fp32"], "torch_tensorrt": ["fp16"]}
    config["grid"]["devices"] = ["cpu", "cuda"]
    (reported_copy / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    aoti_cell = "results/digits/resnet18/bench/aotinductor/fp32/cpu/32x4.json"
    trt_cell = "results/digits/resnet18/bench/torch_tensorrt/fp16/cuda/32x4.json"
    snakemake(reported_copy, aoti_cell, trt_cell, timeout=1800)
    package = reported_copy / "results/digits/resnet18/aoti/cpu/fp32/32x4.pt2"
    assert package.stat().st_size > 0
    aoti = json.loads((reported_copy / aoti_cell).read_text())
    assert aoti["status"] in MEASURED, aoti.get("error")  # measured (stable or not: that is the machine's)
    assert aoti["agreement"]["top1_agreement"] >= 0.99
    trt = json.loads((reported_copy / trt_cell).read_text())
    assert trt["status"] == "unavailable", trt
    if not HAS_TORCH_TENSORRT:
        stub = json.loads((reported_copy / "results/digits/resnet18/torch_tensorrt/fp16/32x4.ep").read_text())
        assert "torch_tensorrt" in stub["error"]
    # Nothing left to do: the artifacts are cached, the cells are not rerun.
    assert planned_jobs(reported_copy, aoti_cell, trt_cell) == {}


@pytest.mark.skipif(HAS_TORCH_TENSORRT, reason="torch_tensorrt is installed here")
def test_compile_torch_tensorrt_cli_writes_stub_and_exits_zero(tmp_path):
    from infbench.cli import main

    out = tmp_path / "x.ep"
    assert (
        main(
            [
                "compile-torch-tensorrt",
                "--checkpoint",
                str(tmp_path / "none.pt"),
                "--out",
                str(out),
                "--precision",
                "fp16",
                "--size",
                "32",
                "--batch",
                "1",
            ]
        )
        == 0
    )
    assert json.loads(out.read_text())["kind"] == "infbench-unavailable-artifact"
    assert Path(out).exists()
