"""The precision variants: static INT8 (QDQ, calibrated), dynamic INT8, fp16; and their config.

Real ONNX Runtime quantisation on a tiny CNN (random weights) and real digits images, so these
run in seconds; the trained ResNet-18 is exercised in test_accuracy.py.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import yaml
from onnx import TensorProto, numpy_helper
from snakemake.utils import validate

from infbench.stages import data, export, quantize

REPO = Path(__file__).resolve().parents[1]
SCHEMA = REPO / "config" / "schema.yaml"
CALIBRATION_IMAGES = 37  # prime: no batch size > 1 divides it, the short-last-batch case


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    data.prepare("digits", Path("."), path, calib=CALIBRATION_IMAGES, test=64, seed=0)
    return path


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory) -> Path:
    """A small conv net (conv-BN-ReLU ×2, pool, linear) exported like export.py does."""
    import torch
    from torch import nn

    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()
    path = tmp_path_factory.mktemp("onnx") / "fp32.onnx"
    torch.onnx.export(
        net,
        (torch.zeros(2, 3, 32, 32),),
        str(path),
        input_names=["input"],
        output_names=["logits"],
        opset_version=17,
        dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}},
        dynamo=False,
    )
    export.stamp_norm(path, data.IMAGENET_NORM)  # as export.py records the model's input normalisation
    return path


def run(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_tiny_model_runs(tiny_onnx, dataset):
    x = data.to_input(data.load_split(dataset, "test")[0], 32)
    assert run(tiny_onnx, x).shape == (64, 10)


def test_calibration_batches_are_equal_and_cover_every_image():
    assert quantize.calibration_batch(200) == 25
    assert quantize.calibration_batch(64) == 32
    assert quantize.calibration_batch(37) == 1
    assert quantize.calibration_batch(5) == 5
    images = np.zeros((30, 3, 4, 4), np.float32)
    reader = quantize.reader(images, "input")
    batches = []
    while (item := reader.get_next()) is not None:
        batches.append(item["input"].shape[0])
    assert sum(batches) == 30 and len(set(batches)) == 1


def weight_scales(path: Path) -> dict[str, np.ndarray]:
    """Scale of every DequantizeLinear whose input is an initializer (the weights)."""
    model = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {
        n.input[0]: init[n.input[1]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in init and n.input[1] in init
    }


def activation_scales(path: Path) -> dict[str, float]:
    model = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {
        n.input[0]: float(init[n.input[1]])
        for n in model.graph.node
        if n.op_type == "QuantizeLinear" and n.input[0] not in init and init[n.input[1]].size == 1
    }


@pytest.mark.parametrize("method", quantize.CALIBRATION_METHODS)
def test_static_int8_is_calibrated_qdq_with_per_channel_weights(tiny_onnx, dataset, tmp_path, method):
    out = tmp_path / "int8_static.onnx"
    info = quantize.quantize_static(tiny_onnx, out, dataset, 32, method=method, samples=100)
    # The split holds 37 calibration images: all of them are used, and the file says so.
    assert info["calibration_samples"] == CALIBRATION_IMAGES
    meta = quantize.metadata(out)
    assert meta["mode"] == "static" and meta["calibration_method"] == method and meta["format"] == "QDQ"
    assert meta["calibration_samples"] == str(CALIBRATION_IMAGES) and meta["per_channel"] == "True"
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    # Per-channel: each conv weight has one scale per output channel.
    conv_scales = [s for s in weight_scales(out).values() if s.ndim == 1 and s.size in (8, 16)]
    assert len(conv_scales) >= 2
    # uint8 activations (U8S8, the fast path on x86)
    model = onnx.load(str(out))
    zero_points = {t.name: t.data_type for t in model.graph.initializer if t.name.endswith("_zero_point")}
    assert TensorProto.UINT8 in zero_points.values()

    x = data.to_input(data.load_split(dataset, "test")[0], 32)
    ref, got = run(tiny_onnx, x), run(out, x)
    assert got.dtype == np.float32 and got.shape == ref.shape
    spread = ref.max() - ref.min()
    assert np.abs(got - ref).max() < 0.25 * spread, (np.abs(got - ref).max(), spread)
    assert (got.argmax(1) == ref.argmax(1)).mean() >= 0.8


def test_entropy_calibration_is_not_minmax_under_another_name(tiny_onnx, dataset, tmp_path):
    """ORT's quantize_static builds its Entropy calibrator with 128 bins for 128 levels, which leaves
    the full range as the only threshold: without our own bins the scales equal MinMax's."""
    quantize.quantize_static(tiny_onnx, tmp_path / "minmax.onnx", dataset, 32, method="MinMax")
    quantize.quantize_static(tiny_onnx, tmp_path / "entropy.onnx", dataset, 32, method="Entropy")
    minmax, entropy = activation_scales(tmp_path / "minmax.onnx"), activation_scales(tmp_path / "entropy.onnx")
    assert minmax.keys() == entropy.keys()
    differing = [k for k in minmax if not np.isclose(minmax[k], entropy[k])]
    assert len(differing) >= len(minmax) // 2, (minmax, entropy)
    assert quantize.metadata(tmp_path / "entropy.onnx")["num_bins"] == "2048"


def test_static_int8_per_tensor_and_int8_activations(tiny_onnx, dataset, tmp_path):
    out = tmp_path / "int8_static.onnx"
    quantize.quantize_static(tiny_onnx, out, dataset, 32, per_channel=False, activation_type="int8", samples=10)
    assert quantize.metadata(out)["calibration_samples"] == "10"
    assert all(s.size == 1 for s in weight_scales(out).values())
    model = onnx.load(str(out))
    assert TensorProto.UINT8 not in {t.data_type for t in model.graph.initializer if t.name.endswith("_zero_point")}


def test_dynamic_int8(tiny_onnx, dataset, tmp_path):
    out = tmp_path / "int8_dynamic.onnx"
    quantize.quantize_dynamic(tiny_onnx, out)
    assert quantize.metadata(out)["mode"] == "dynamic"
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert "DynamicQuantizeLinear" in ops and ({"ConvInteger", "MatMulInteger"} & ops)
    x = data.to_input(data.load_split(dataset, "test")[0], 32)
    assert run(out, x).shape == (64, 10)
    assert out.stat().st_size < tiny_onnx.stat().st_size


def test_fp16_keeps_float32_inputs_and_outputs(tiny_onnx, dataset, tmp_path):
    out = tmp_path / "fp16.onnx"
    quantize.convert_fp16(tiny_onnx, out)
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)  # topologically sorted, types consistent
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [TensorProto.FLOAT]
    assert [o.type.tensor_type.elem_type for o in model.graph.output] == [TensorProto.FLOAT]
    weights = [t for t in model.graph.initializer if t.dims and np.prod(t.dims) > 1]
    assert weights and all(t.data_type == TensorProto.FLOAT16 for t in weights)
    x = data.to_input(data.load_split(dataset, "test")[0], 32)
    ref, got = run(tiny_onnx, x), run(out, x)  # the CPU EP runs it too (for this check only)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, ref, atol=2e-2 * np.abs(ref).max())
    assert out.stat().st_size < 0.75 * tiny_onnx.stat().st_size  # weights halve; graph overhead does not


def test_a_failed_build_leaves_no_file(tmp_path, dataset):
    broken = tmp_path / "fp32.onnx"
    broken.write_bytes(b"not a model")
    out = tmp_path / "int8_static.onnx"
    with pytest.raises(Exception):  # noqa: B017  (ORT/onnx raise their own types)
        quantize.quantize_static(broken, out, dataset, 32)
    assert not out.exists() and list(tmp_path.glob(".int8_static*")) == []


def test_cli_static_needs_the_calibration_split(tiny_onnx, tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "infbench.cli",
            "quantize-int8",
            "--onnx",
            str(tiny_onnx),
            "--out",
            str(tmp_path / "x.onnx"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1 and "--dataset" in proc.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_cli_builds_each_variant(tiny_onnx, dataset, tmp_path):
    variants = {
        "static": ["--dataset", str(dataset), "--method", "Percentile", "--samples", "16", "--no-per-channel"],
        "dynamic": ["--mode", "dynamic"],
    }
    for name, args in variants.items():
        out = tmp_path / f"int8_{name}.onnx"
        subprocess.run(
            [sys.executable, "-m", "infbench.cli", "quantize-int8", "--onnx", str(tiny_onnx), "--out", str(out), *args],
            check=True,
            capture_output=True,
        )
    static = quantize.metadata(tmp_path / "int8_static.onnx")
    assert static["calibration_method"] == "Percentile" and static["per_channel"] == "False"
    assert static["calibration_samples"] == "16"
    assert quantize.metadata(tmp_path / "int8_dynamic.onnx")["mode"] == "dynamic"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "infbench.cli",
            "convert-fp16",
            "--onnx",
            str(tiny_onnx),
            "--out",
            str(tmp_path / "fp16.onnx"),
        ],
        check=True,
        capture_output=True,
    )
    assert quantize.metadata(tmp_path / "fp16.onnx")["keep_io_types"] == "True"


# -- the config ------------------------------------------------------------------------------------


def default_config() -> dict:
    return yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def test_default_config_benchmarks_static_int8_and_leaves_dynamic_opt_in():
    config = default_config()
    validate(config, str(SCHEMA), set_default=True)
    assert config["grid"]["backends"]["onnxruntime"] == ["fp32", "int8"]
    assert config["quantize"] == {
        "calibration_method": "MinMax",
        "calibration_samples": 200,
        "per_channel": True,
        "activation_type": "uint8",
        "exclude_op_types": [],
        "exclude_nodes": [],
    }
    assert config["accuracy"]["tolerance_points"] == 1.0


def test_schema_fills_in_quantize_and_accuracy_defaults():
    config = default_config()
    del config["quantize"], config["accuracy"]
    validate(config, str(SCHEMA), set_default=True)
    assert config["quantize"]["calibration_method"] == "MinMax" and config["quantize"]["per_channel"] is True
    assert config["quantize"]["calibration_samples"] == 200
    assert config["accuracy"] == {"tolerance_points": 1.0, "batch_size": 32, "expected_tensorrt": []}


@pytest.mark.parametrize("method", ["MinMax", "Entropy", "Percentile"])
def test_schema_accepts_calibration_methods(method):
    config = default_config()
    config["quantize"]["calibration_method"] = method
    validate(config, str(SCHEMA), set_default=True)


@pytest.mark.parametrize(
    "key, value",
    [
        ("calibration_method", "KL"),
        ("calibration_method", "minmax"),
        ("calibration_method", "Distribution"),  # ORT has it, for transformers; not offered
        ("calibration_samples", 0),
        ("per_channel", "yes"),
        ("activation_type", "int4"),
        ("calibration_bins", 2048),  # unknown key
    ],
)
def test_schema_rejects_bad_quantize_settings(key, value):
    config = default_config()
    config["quantize"][key] = value
    with pytest.raises(Exception, match="Error validating config file"):
        validate(config, str(SCHEMA), set_default=True)


def test_schema_rejects_a_negative_tolerance():
    config = copy.deepcopy(default_config())
    config["accuracy"]["tolerance_points"] = -1
    with pytest.raises(Exception, match="Error validating config file"):
        validate(config, str(SCHEMA), set_default=True)
