"""`grid.devices: auto`: the devices found here and the GPU backends that are installed.

On a machine without a GPU (CI) the CPU tests run; the CUDA one runs where PyTorch sees a GPU:
`pytest -q tests/test_devices.py` on the GPU machine."""

from __future__ import annotations

import copy
from importlib import metadata

import pytest
import torch
from conftest import TINY_CONFIG

from infbench.flow import plan
from infbench.study import devices, grid


def auto_config(backends: dict) -> dict:
    config = copy.deepcopy(TINY_CONFIG)
    config["grid"].update(devices="auto", backends=backends)
    config["model"] = {"name": "resnet18"}
    return config


def installed(name: str) -> bool:
    try:
        metadata.version(name)
        return True
    except metadata.PackageNotFoundError:
        return False


def test_auto_is_the_cpu_plus_cuda_where_pytorch_sees_a_gpu():
    assert devices.resolve("auto") == (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    assert devices.resolve(["cuda"]) == ["cuda"]  # a list is kept as it is


def test_a_missing_gpu_package_is_named_with_its_install_command():
    reason = devices.missing_on_cuda("onnxruntime")
    if installed("onnxruntime-gpu"):
        assert reason is None
    else:
        assert reason.startswith("onnxruntime on cuda needs onnxruntime-gpu, not installed")
        assert "pip install -e '.[gpu]'" in reason
    assert devices.missing_on_cuda("torch") is None  # a CUDA build of PyTorch is all it needs


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_auto_without_a_gpu_plans_cpu_cells_only():
    cells, dropped = grid.expand(auto_config({"torch": ["fp32"], "torch_compile_max_autotune": ["fp16"]}))
    assert {c.device for c in cells} == {"cpu"} and len(cells) == 1
    assert [d.reason for d in dropped] == ["torch_compile_max_autotune does not run on cpu (runs on: cuda)"]
    meta = devices.summary("auto", {"torch": ["fp32"]})
    assert meta == {"requested": "auto", "found": ["cpu"]}
    assert devices.note(meta) == "auto (found here: cpu; CUDA counts when PyTorch sees a GPU)"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_auto_with_a_gpu_adds_cuda_cells_of_the_installed_backends():
    cells, dropped = grid.expand(auto_config({"torch": ["fp32"], "onnxruntime": ["fp32"], "torch_tensorrt": ["fp16"]}))
    on_cuda = {c.backend for c in cells if c.device == "cuda"}
    assert "torch" in on_cuda
    assert ("onnxruntime" in on_cuda) == installed("onnxruntime-gpu")
    not_installed = [d for d in dropped if "not installed" in d.reason]
    assert {d.backend for d in not_installed} == {"onnxruntime", "torch_tensorrt"} - on_cuda
    meta = devices.summary("auto", {"torch": ["fp32"], "onnxruntime": ["fp32"], "torch_tensorrt": ["fp16"]})
    assert meta["found"] == ["cpu", "cuda"] and len(meta["not_installed"]) == len(not_installed)


@pytest.mark.skipif(installed("torch-tensorrt") or installed("tensorrt"), reason="TensorRT is installed here")
def test_gpu_int8_without_tensorrt_is_said_in_the_plan_and_the_report(tmp_path):
    """The seeds' GPU grid asks for no INT8 (only TensorRT runs it on CUDA, and it is not installed): the
    devices' note, the report's summary.md and `infbench plan` say so, naming both TensorRT backends and how
    to install each, instead of leaving a silent gap. A precision an installed backend runs is not a gap."""
    from report_example import example

    from infbench.report.build import summary_markdown

    seeds = {"torch": ["fp32", "fp16"], "torch_cudagraphs": ["fp16"], "onnxruntime": ["fp32", "fp16"]}
    meta = devices.summary(["cuda"], seeds)
    [gap] = meta["unmeasurable"]
    assert gap.startswith("int8 on cuda, which only onnxruntime_trt and torch_tensorrt run")
    assert "pip install -e '.[tensorrt]'" in gap and "pip install -e '.[ort-tensorrt]'" in gap
    assert "not measured, no backend here can: int8 on cuda" in devices.note(meta)
    # bf16 and tf32 are absent from this grid too, but PyTorch runs them here: the grid's choice, not a gap
    assert not any(g.startswith(("bf16", "tf32")) for g in meta["unmeasurable"])
    # asked for (its cells then say `unavailable` with the reason), or a CPU-only study: nothing to add
    assert "unmeasurable" not in devices.summary(["cuda"], {**seeds, "torch_tensorrt": ["int8"]})
    assert "unmeasurable" not in devices.summary(["cpu"], seeds)
    # int8 asked of ONNX Runtime (on the CPU only: its CUDA provider has none) leaves the GPU's gap open
    assert devices.summary(["cuda"], {**seeds, "onnxruntime": ["fp32", "int8"]})["unmeasurable"] == [gap]

    summary, report_meta = example(machines=1, gpu=True)
    md = summary_markdown(summary, {**report_meta, "devices": meta}, [])
    assert md.split("## Not measured: no backend here can\n\n")[1].startswith(f"- {gap}")
    config = auto_config(seeds)
    config["grid"]["devices"] = ["cuda"]
    assert f"  not measured: {gap}" in plan.lines(config, tmp_path)
