"""PyTorch's own x86 INT8 on the CPU (issue 35 item 14): PT2E with torchao's X86InductorQuantizer,
calibrated on the calibration split, compiled by Inductor, scored like every variant; `unavailable`
with the install command where torchao cannot be imported. Real runs: a digits model trained here,
quantised and compiled for real."""

from __future__ import annotations

import copy
import json
import sys

import pytest
from conftest import REPO, TINY_CONFIG
from snakemake.utils import validate

from infbench.backends import torch_pt2e
from infbench.backends.registry import BACKENDS
from infbench.stages import accuracy, data, train
from infbench.study import grid


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("pt2e")
    dataset = root / "data.npz"
    data.prepare("digits", root, dataset, calib=64, test=200, seed=0)
    checkpoint = root / "checkpoint.pt"
    train.train(dataset, checkpoint, root / "metrics.json", "resnet18", "imagenet", 1, 64, None, None, 0, 2, 32)
    return root, dataset, checkpoint


def score(root, dataset, checkpoint, program):
    return accuracy.evaluate(
        "resnet18", "torch_pt2e", "int8", "cpu", program, checkpoint, dataset, 32, 32, 2, tolerance_points=1.0
    )


def test_pt2e_int8_is_a_cpu_precision_of_its_own_backend():
    assert BACKENDS["torch_pt2e"].support == {"cpu": ("int8",)}
    assert "torchao" in BACKENDS["torch_pt2e"].packages
    config = copy.deepcopy(TINY_CONFIG)
    config["grid"]["backends"] = {"torch": ["fp32"], "torch_pt2e": ["int8"]}
    config["grid"]["devices"] = ["cpu"]
    validate(config, str(REPO / "config" / "schema.yaml"), set_default=True)
    cells, _ = grid.expand(config)
    pt2e = [c for c in cells if c.backend == "torch_pt2e"]
    assert pt2e and grid.artifact_path(pt2e[0], "digits").endswith("/pt2e/int8.pt2")


def test_pt2e_int8_is_calibrated_compiled_and_scored(trained):
    root, dataset, checkpoint = trained
    program = root / "pt2e" / "int8.pt2"
    info = torch_pt2e.quantize_pt2e(checkpoint, dataset, program, 32, 64, 2)
    assert info["quantize_nodes"] > 10 and info["calibration_samples"] == 64, info
    assert json.loads(program.with_suffix(".json").read_text())["torchao"] == "0.18.0"
    result = score(root, dataset, checkpoint, program)
    assert result["status"] == "ok", result
    assert result["top1_agreement"] > 0.9, result  # INT8 agrees with fp32 on the test split
    assert abs(result["accuracy_drop"]) < 5, result  # points
    assert result["artifact_info"]["quantize_nodes"] == info["quantize_nodes"]


def test_without_torchao_the_cells_say_what_to_install(trained, tmp_path, monkeypatch):
    root, dataset, checkpoint = trained
    monkeypatch.setitem(sys.modules, "torchao", None)  # `import torchao` raises ImportError
    program = tmp_path / "int8.pt2"
    stub = torch_pt2e.quantize_pt2e(checkpoint, dataset, program, 32, 64, 1)
    assert "pip install torchao" in stub["error"]
    result = score(root, dataset, checkpoint, program)
    assert result["status"] == "unavailable" and "pip install torchao" in result["error"], result
