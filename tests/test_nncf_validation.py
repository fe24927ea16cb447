"""NNCF's accuracy control (issue 35 item 12): it checks its drop on a validation split distinct from the
calibration and test images, and quantize.exclude_* are recorded as not applied to NNCF's models. Real
runs: a digits model trained, exported and quantised by NNCF here."""

from __future__ import annotations

import numpy as np
import pytest

from infbench.stages import data, export, train


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    root = tmp_path_factory.mktemp("nncf")
    dataset = root / "data.npz"
    data.prepare("digits", root, dataset, calib=32, test=100, seed=0, validation=60)
    checkpoint = root / "checkpoint.pt"
    train.train(dataset, checkpoint, root / "m.json", "resnet18", "imagenet", 1, 64, 0.05, 0.0005, 0, 2, 32)
    onnx = root / "fp32.onnx"
    export.export_onnx(checkpoint, onnx, dataset, 32, 17, 8, 1e-3)
    return root, dataset, onnx


def test_the_validation_split_is_neither_calibration_nor_test(exported):
    _, dataset, _ = exported
    sizes = {name: len(data.load_split(dataset, name)[1]) for name in ("train", "calib", "val", "test")}
    assert sizes == {"train": 1797 - 192, "calib": 32, "val": 60, "test": 100}
    seen = {}
    for name in ("calib", "val", "test"):
        x, _ = data.load_split(dataset, name)
        seen[name] = {row.tobytes() for row in x.reshape(len(x), -1)}
    # distinct images (the digits hold a few exact duplicates, which a split cannot tell apart)
    assert len(seen["val"] & seen["calib"]) <= 1 and len(seen["val"] & seen["test"]) <= 2


def test_accuracy_control_validates_on_the_validation_split(exported):
    from infbench.backends.openvino_nncf import quantize_nncf

    root, dataset, onnx = exported
    info = quantize_nncf(onnx, root / "ac.xml", dataset, 32, 32, 1.0, "Sigmoid, /fc/Gemm")
    assert info["validation_images"] == 60 and info["calibration_samples"] == 32
    assert np.isclose(info["validation_drop_points"], (info["validation_top1_fp32"] - info["validation_top1"]) * 100)
    assert "do not apply to NNCF's models" in info["not_applied"] and "Sigmoid" in info["not_applied"]


def test_the_nncf_rule_passes_the_exclusions_to_be_recorded():
    from infbench.backends.openvino_nncf import cli_args

    config = {
        "train": {"image_size": 32},
        "quantize": {"calibration_samples": 200, "exclude_op_types": ["Sigmoid"], "exclude_nodes": ["/a b/Conv"]},
        "accuracy": {"tolerance_points": 1.0},
    }
    assert "--unapplied-exclusions 'Sigmoid, /a b/Conv'" in cli_args("int8_nncf_ac", config, "d.npz")
