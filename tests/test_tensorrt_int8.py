"""The TensorRT paths up to the TensorRT call, on the CPU: the calibration split reaches Model
Optimizer, the Q/DQ ONNX for the TensorRT EP is symmetric int8 node by node, both INT8 variants'
expected accuracy is measured and reaches the report, and the Torch-TensorRT settings are the
strongly typed ones. TensorRT itself is not installable here: its calls stay behind the
availability checks (tests/test_compile.py covers the 'unavailable' stub)."""

from __future__ import annotations

import copy
import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import TINY_CONFIG, snakemake, write_config
from onnx import TensorProto, numpy_helper

from infbench.backends import unavailable
from infbench.backends.base import run_batches
from infbench.backends.tensorrt import modelopt, torch_tensorrt
from infbench.stages import data, quantize

HAS_MODELOPT = importlib.util.find_spec("modelopt") is not None
needs_modelopt = pytest.mark.skipif(
    not HAS_MODELOPT, reason=f"nvidia-modelopt is not installed: {modelopt.MODELOPT_INSTALL}"
)

CALIBRATION = 48  # images in the calibration split of these tests


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("data") / "digits.npz"
    data.prepare("digits", Path("."), path, calib=CALIBRATION, test=64, seed=0)
    return path


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """An untrained ResNet-18 checkpoint in the format `infbench train` writes."""
    import torch

    from infbench.stages.model import Facts, save
    from infbench.stages.model import build as build_model

    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    model = build_model("resnet18", 10, "imagenet")
    save(path, model, Facts("resnet18", 10))
    return path


# --- Torch-TensorRT: the model it compiles ---------------------------------------------------------------------------


@needs_modelopt
def test_int8_build_calibrates_on_the_calibration_split(checkpoint, dataset):
    """The int8 build path (once broken: it asked for a split 'calibration' that data.py never
    writes): every calibration image, and only those, goes through the model while Model Optimizer
    calibrates, and every quantiser ends up with a range."""
    import torch
    from modelopt.torch.quantization.nn import TensorQuantizer

    seen = []
    original = torch.nn.Conv2d.forward

    def spy(self, x):  # the first convolution sees the images themselves
        if self.in_channels == 3:
            seen.append(x.detach().clone())
        return original(self, x)

    torch.nn.Conv2d.forward = spy
    try:
        model, example = torch_tensorrt.torch_tensorrt_model(
            checkpoint, "int8", 32, 8, "cpu", dataset, calib_images=1000
        )
    finally:
        torch.nn.Conv2d.forward = original
    expected = data.to_input(data.load_split(dataset, "calib")[0], 32)
    got = torch.cat(seen).numpy()
    assert got.shape == expected.shape == (CALIBRATION, 3, 32, 32)  # asked for 1000, the split has 48
    np.testing.assert_allclose(got, expected, atol=0.05)  # fake-quantised input: within one int8 step
    enabled = [m for m in model.modules() if isinstance(m, TensorQuantizer) and m.is_enabled]
    assert len(enabled) >= 40  # input and weight quantisers of every conv and the fc
    assert all(m.amax is not None and float(m.amax.min()) > 0 for m in enabled)
    assert example.shape == (8, 3, 32, 32) and example.dtype == torch.float32


def test_int8_build_without_a_dataset_says_what_is_missing(checkpoint):
    with pytest.raises(ValueError, match="--dataset"):
        torch_tensorrt.torch_tensorrt_model(checkpoint, "int8", 32, 8, "cpu", None, 16)


@pytest.mark.parametrize("precision,dtype", [("fp32", "float32"), ("fp16", "float16"), ("bf16", "bfloat16")])
def test_float_builds_carry_their_precision_in_the_model(checkpoint, precision, dtype):
    """Strong typing: the precision is the dtype of the weights and of the example input."""
    import torch

    model, example = torch_tensorrt.torch_tensorrt_model(checkpoint, precision, 32, 4, "cpu", None, 16)
    assert {p.dtype for p in model.parameters()} == {getattr(torch, dtype)}
    assert example.dtype == getattr(torch, dtype) and example.shape == (4, 3, 32, 32)


def test_torch_tensorrt_settings_are_strongly_typed_with_tf32_off():
    def compile_2_14(exported_program, inputs=None, *, arg_inputs=None, disable_tf32=False, **kwargs):
        """dynamo.compile of Torch-TensorRT 2.13+: strong typing always on, no switch."""

    def compile_2_12(exported_program, inputs=None, *, enabled_precisions=None, use_explicit_typing=True, **kw):
        """dynamo.compile of Torch-TensorRT 2.12, which still had the switch."""

    for precision in ("fp32", "fp16", "bf16", "int8"):
        settings = torch_tensorrt.torch_tensorrt_settings(compile_2_14, precision, 2)
        assert settings["disable_tf32"] is True, precision
        assert "enabled_precisions" not in settings and "use_explicit_typing" not in settings
        assert settings["workspace_size"] == 2 * 2**30 and settings["min_block_size"] == 1
        assert torch_tensorrt.torch_tensorrt_settings(compile_2_12, precision, 2)["use_explicit_typing"] is True


def test_compile_cli_without_torch_tensorrt_records_why_and_what_to_install(tmp_path, checkpoint, dataset):
    if importlib.util.find_spec("torch_tensorrt") is not None:
        pytest.skip("torch_tensorrt is installed here")
    from infbench.cli import main

    out, info = tmp_path / "m.ep", tmp_path / "m.json"
    args = ["compile-torch-tensorrt", "--checkpoint", str(checkpoint), "--out", str(out), "--info", str(info)]
    assert main(args + ["--precision", "int8", "--size", "32", "--batch", "4", "--dataset", str(dataset)]) == 0
    stub = json.loads(out.read_text())
    assert stub["kind"] == unavailable.UNAVAILABLE_KIND and "pip install torch-tensorrt" in stub["error"]
    assert json.loads(info.read_text())["shape"] == [4, 3, 32, 32]


# --- ONNX Runtime TensorRT EP: the symmetric Q/DQ model ------------------------------------------------------------


@pytest.fixture(scope="module")
def trained(reported_workflow, tmp_path_factory) -> Path:
    """A copy of the default study (the tiny workflow trained one epoch on digits, its cells measured
    and reported), for real accuracy numbers; a report here reruns only what a test changes."""
    import shutil

    workdir = tmp_path_factory.mktemp("trt") / "wf"
    shutil.copytree(reported_workflow, workdir, symlinks=True)
    return workdir


@pytest.fixture(scope="module")
def qdq(trained) -> Path:
    snakemake(trained, "results/digits/resnet18/onnx/int8_trt.onnx")
    return trained / "results/digits/resnet18/onnx/int8_trt.onnx"


def test_qdq_model_is_symmetric_int8_node_by_node(qdq):
    model = onnx.load(str(qdq))
    constants = {t.name: t for t in model.graph.initializer}
    producer = {out: n for n in model.graph.node for out in n.output}
    qdq_nodes = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert len(qdq_nodes) > 40
    for node in qdq_nodes:
        zero_point = constants[node.input[2]]
        assert zero_point.data_type == TensorProto.INT8, node.name  # int8, never uint8
        assert not numpy_helper.to_array(zero_point).any(), node.name  # symmetric: zero point 0
        assert (numpy_helper.to_array(constants[node.input[1]]) > 0).all(), node.name
        quantized = constants.get(node.input[0])
        if node.op_type == "DequantizeLinear" and quantized is not None:  # a weight
            assert quantized.data_type == TensorProto.INT8, node.name  # no int32 bias dequantisation
            values = numpy_helper.to_array(quantized)
            assert values.min() >= -127 and values.max() <= 127, node.name  # TensorRT's weight range
    # every convolution and the classifier get both inputs through DequantizeLinear: all of them run in int8
    compute = [n for n in model.graph.node if n.op_type in ("Conv", "Gemm", "MatMul")]
    assert len(compute) == 21  # ResNet-18: 20 convolutions and the fc
    for node in compute:
        assert producer[node.input[0]].op_type == "DequantizeLinear", node.name
        assert producer[node.input[1]].op_type == "DequantizeLinear", node.name
        if len(node.input) > 2:  # the bias stays float
            assert constants[node.input[2]].data_type == TensorProto.FLOAT, node.name
    assert quantize.metadata(qdq)["mode"] == "tensorrt"
    assert quantize.tensorrt_qdq_problems(qdq) == []


def test_the_checker_names_an_asymmetric_model(trained, tmp_path):
    """The CPU variant (uint8, asymmetric activations) is exactly what TensorRT refuses."""
    snakemake(trained, "results/digits/resnet18/onnx/int8_static.onnx")
    problems = quantize.tensorrt_qdq_problems(trained / "results/digits/resnet18/onnx/int8_static.onnx")
    assert problems and any("UINT8" in p for p in problems)


# --- expected accuracy on TensorRT, through Snakemake and into the report ------------------------------------------


def test_expected_tensorrt_accuracy_is_measured_and_reported(trained, qdq, tmp_path):
    import shutil

    workdir = tmp_path / "wf"
    shutil.copytree(trained, workdir, symlinks=True)
    config = copy.deepcopy(TINY_CONFIG)
    config["accuracy"] = {"expected_tensorrt": ["onnxruntime_trt", "torch_tensorrt"]}
    write_config(workdir, config)
    snakemake(workdir, "report")
    results = {
        b: json.loads((workdir / f"results/digits/resnet18/accuracy/expected_tensorrt/{b}.json").read_text())
        for b in ("onnxruntime_trt", "torch_tensorrt")
    }
    qdq_result = results["onnxruntime_trt"]
    assert qdq_result["status"] == "ok", qdq_result["error"]
    assert qdq_result["images"] == TINY_CONFIG["split"]["test"]
    assert qdq_result["top1_agreement"] >= 0.9  # int8 keeps the fp32 decisions
    assert abs(qdq_result["accuracy_drop"]) <= 5
    assert 0 < qdq_result["model_size_mib"] < 15  # int8 weights: about a quarter of the 43 MiB fp32 model
    modelopt_result = results["torch_tensorrt"]
    if HAS_MODELOPT:
        assert modelopt_result["status"] == "ok", modelopt_result["error"]
        assert modelopt_result["top1_agreement"] >= 0.9 and abs(modelopt_result["accuracy_drop"]) <= 5
        assert modelopt_result["reference_top1"] == qdq_result["reference_top1"]
    else:
        assert modelopt_result["status"] == "unavailable" and "pip install nvidia-modelopt" in modelopt_result["error"]
    html = (workdir / "results/digits/resnet18/report/index.html").read_text()
    assert html.count("expected accuracy on TensorRT") >= 2
    # rows of their own: they attach to no benchmark cell
    summary = (workdir / "results/digits/resnet18/report/summary.csv").read_text()
    assert "onnxruntime_trt" not in summary and "torch_tensorrt" not in summary


def test_quantize_rule_arguments_for_tensorrt_ignore_the_cpu_activation_type():
    settings = {"calibration_method": "Entropy", "calibration_samples": 100, "per_channel": True}
    args = quantize.cli_args("trt", {**settings, "activation_type": "uint8"}, "d.npz", 32)
    assert args.startswith("--mode trt ") and "--method Entropy --samples 100" in args
    assert "--activation-type" not in args  # TensorRT's int8 is fixed, the config's uint8 is for the CPU


# --- ONNX Runtime TensorRT EP: what the session is given ------------------------------------------------------------


@pytest.mark.parametrize("precision,variant", [("fp32", "fp32"), ("fp16", "fp16"), ("int8", "int8_trt")])
def test_tensorrt_ep_reads_the_model_that_carries_its_precision(precision, variant):
    from infbench.backends.registry import spec
    from infbench.core.cell import Cell

    artifact = spec("onnxruntime_trt").artifact(Cell("resnet18", "onnxruntime_trt", precision, "cuda", 224, 8))
    assert artifact.path == f"onnx/{variant}.onnx"


def test_tensorrt_ep_options_pin_the_profile_and_cache_per_shape(tmp_path, monkeypatch):
    from infbench.backends.tensorrt.onnxruntime_trt import OnnxRuntimeTensorRT
    from infbench.core.cell import Cell

    monkeypatch.chdir(tmp_path)
    model = Path("results/digits/resnet18/onnx/m.onnx")  # an ONNX file of a study (no sidecar: its own digest)
    model.parent.mkdir(parents=True)
    model.write_bytes(b"an onnx model")
    digest = hashlib.sha256(b"an onnx model").hexdigest()[:16]
    options = {}
    for precision in ("fp32", "fp16", "int8"):
        cell = Cell("resnet18", "onnxruntime_trt", precision, "cuda", 224, 8)
        options[precision] = OnnxRuntimeTensorRT(cell, model, 1).trt_options("input")
    for precision, o in options.items():
        assert o["trt_profile_min_shapes"] == o["trt_profile_opt_shapes"] == o["trt_profile_max_shapes"]
        assert o["trt_profile_min_shapes"] == "input:8x3x224x224"
        assert o["trt_engine_cache_enable"] == "True"
        cache = tmp_path / f"results/cache/ort_trt/digits/resnet18/{digest}/{precision}/224x8"
        assert Path(o["trt_engine_cache_path"]) == cache
        assert Path(o["trt_engine_cache_path"]).is_dir()
    assert options["fp16"]["trt_fp16_enable"] == "True" and options["fp32"]["trt_fp16_enable"] == "False"
    assert options["int8"]["trt_int8_enable"] == "True" and options["fp16"]["trt_int8_enable"] == "False"


def test_tensorrt_ep_without_tensorrt_is_unavailable_with_what_to_install():
    if importlib.util.find_spec("tensorrt") is not None:
        pytest.skip("tensorrt is installed here")
    from infbench.backends.base import BackendUnavailable
    from infbench.backends.tensorrt.onnxruntime_trt import OnnxRuntimeTensorRT
    from infbench.core.cell import Cell

    runner = OnnxRuntimeTensorRT(Cell("resnet18", "onnxruntime_trt", "int8", "cuda", 32, 4), Path("m.onnx"), 1)
    with pytest.raises(BackendUnavailable, match="pip install onnxruntime-gpu tensorrt-cu13==10"):
        runner.check_available()


# --- on a GPU with TensorRT (skipped here): the TensorRT calls themselves --------------------------------------------
# Torch-TensorRT 2.14 (TensorRT 11.1) and onnxruntime-gpu's TensorRT EP (TensorRT 10) need separate
# environments (envs/tensorrt.yaml, envs/ort_tensorrt.yaml): each test below runs where its stack is.

HAS_CUDA = importlib.util.find_spec("torch") is not None and __import__("torch").cuda.is_available()
needs_torch_tensorrt = pytest.mark.skipif(
    not (HAS_CUDA and importlib.util.find_spec("torch_tensorrt") and HAS_MODELOPT),
    reason="needs a CUDA GPU, torch-tensorrt and nvidia-modelopt",
)


def _ort_trt() -> bool:
    import onnxruntime as ort

    return (
        HAS_CUDA
        and importlib.util.find_spec("tensorrt") is not None
        and ("TensorrtExecutionProvider" in ort.get_available_providers())
    )


@needs_torch_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16", "bf16", "int8"])
def test_torch_tensorrt_on_cuda_matches_its_expectation(trained, precision, tmp_path):
    """Build, save, load through the backend, and compare with what the CPU predicts: fp32 with
    eager fp32, int8 with the Model Optimizer model the expected accuracy comes from."""
    import torch

    from infbench.backends.tensorrt.torch_tensorrt import TorchTensorRT
    from infbench.core.cell import Cell
    from infbench.stages import accuracy

    ckpt = trained / "results/digits/resnet18/checkpoint.pt"
    dataset = trained / "results/data/digits.npz"
    out = tmp_path / f"{precision}.ep"
    info = torch_tensorrt.build_torch_tensorrt(ckpt, out, precision, 32, 8, dataset, calib_images=64)
    assert info["compile_s"] > 0 and info["settings"]["disable_tf32"] is True
    assert json.loads(out.with_suffix(".json").read_text())["compile_s"] == info["compile_s"]
    runner = TorchTensorRT(
        Cell("resnet18", "torch_tensorrt", precision, "cuda", 32, 8), out, 1, "compile_torch_tensorrt"
    )
    runner.check_available()
    runner.load()
    x = data.to_input(data.load_split(dataset, "test")[0], 32)
    logits = run_batches(runner, x, 8)
    if precision == "int8":
        expected = modelopt.modelopt_logits(ckpt, dataset, 32, 64, x, 8)
    else:
        expected = accuracy.reference_logits(ckpt, x)
    agreement = float((logits.argmax(1) == expected.argmax(1)).mean())
    assert agreement >= (0.999 if precision == "fp32" else 0.95), agreement
    if precision == "fp32":  # TF32 off: IEEE fp32 up to summation order
        assert np.abs(logits - expected).max() < 1e-3 * max(1.0, np.abs(expected).max())
    torch.cuda.empty_cache()


@pytest.mark.skipif(
    not _ort_trt(), reason="needs a CUDA GPU, tensorrt 10 and onnxruntime-gpu's TensorrtExecutionProvider"
)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_onnxruntime_tensorrt_ep_on_cuda_matches_its_expectation(trained, qdq, precision, monkeypatch):
    """The session builds its engine in load (cached per shape), and int8 computes what the Q/DQ
    model computes on the CPU."""
    from infbench.backends.registry import spec
    from infbench.backends.tensorrt.onnxruntime_trt import OnnxRuntimeTensorRT
    from infbench.core.cell import Cell
    from infbench.stages import accuracy

    monkeypatch.chdir(trained)
    snakemake(trained, "results/digits/resnet18/onnx/fp16.onnx")
    cell = Cell("resnet18", "onnxruntime_trt", precision, "cuda", 32, 8)
    artifact = trained / spec("onnxruntime_trt").artifact(cell).path
    runner = OnnxRuntimeTensorRT(cell, artifact, 1, "quantize_int8")
    runner.check_available()
    runner.load()
    assert list(runner.engine_cache().glob("*.engine"))  # built before anything is timed
    x = data.to_input(data.load_split(trained / "results/data/digits.npz", "test")[0], 32)
    logits = run_batches(runner, x, 8)
    ckpt = trained / "results/digits/resnet18/checkpoint.pt"
    expected = (
        modelopt.qdq_logits("resnet18", qdq, x, 8, 2) if precision == "int8" else accuracy.reference_logits(ckpt, x)
    )
    agreement = float((logits.argmax(1) == expected.argmax(1)).mean())
    assert agreement >= (0.999 if precision == "fp32" else 0.95), agreement
