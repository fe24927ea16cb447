"""The hardware probe: measured peaks are positive on the CPU; a missing device gives nulls."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infbench.measure import probe

torch = pytest.importorskip("torch")


def test_cpu_probe_is_sane_and_quick(tmp_path):
    out = tmp_path / "cpu.json"
    cmd = [sys.executable, "-m", "infbench.cli", "probe", "--device", "cpu", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    result = json.loads(out.read_text())
    assert result["status"] == "ok" and result["device"] == "cpu"
    assert set(result["peak_tflops"]) == set(probe.PRECISIONS["cpu"])
    fp32 = result["peak_tflops"]["fp32"]
    assert fp32 > 0.001  # > 1 GFLOP/s: any CPU this decade
    assert fp32 < 100  # < 100 TFLOP/s: no CPU
    for precision, peak in result["peak_tflops"].items():
        assert peak is None or peak > 0, precision
        if peak is None:  # only where this PyTorch build cannot do it, and then it says why
            assert result["matmul"][precision]["error"]
    assert 0.1 < result["bandwidth_gb_s"] < 10_000
    assert result["environment"]["cores"] >= 1
    assert result["wall_s"] < 30  # default settings: quick enough for every run of the workflow


def test_probe_budget_and_sizes_are_honoured():
    result = probe.probe("cpu", threads=1, budget_s=0.2, matmul_n=256, copy_mib=8)
    assert result["status"] == "ok"
    assert result["matmul"]["fp32"]["n"] == 256 and result["copy"]["mib"] == 8
    assert result["peak_tflops"]["fp32"] > 0 and result["bandwidth_gb_s"] > 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_cuda_probe_without_a_gpu_is_unavailable_with_nulls():
    result = probe.probe("cuda", threads=1)
    assert result["status"] == "unavailable" and "CUDA" in result["error"]
    assert set(result["peak_tflops"]) == set(probe.PRECISIONS["cuda"])
    assert all(v is None for v in result["peak_tflops"].values())
    assert result["bandwidth_gb_s"] is None


def test_peak_for_maps_cell_precisions_to_probe_precisions():
    measured = {"status": "ok", "peak_tflops": {"fp32": 1.0, "tf32": 2.0, "int8": 8.0, "fp16": None}, "matmul": {}}
    assert probe.peak_for(measured, "fp32") == (1.0, "fp32", None)
    assert probe.peak_for(measured, "tf32")[0] == 2.0
    assert probe.peak_for(measured, "int8")[:2] == (8.0, "int8")
    assert probe.peak_for(measured, "int8_dynamic")[:2] == (8.0, "int8")
    peak, precision, why = probe.peak_for(measured, "fp16")
    assert peak is None and precision == "fp16" and "fp16" in why
    assert probe.peak_for(None, "fp32")[0] is None
    rows = probe.peaks_rows([{**measured, "device": "cuda", "bandwidth_gb_s": 3000.0, "environment": {"machine": "m"}}])
    assert {
        "machine": "m",
        "device": "cuda",
        "precision": "tf32",
        "peak_tflops": 2.0,
        "bandwidth_gb_s": 3000.0,
        "status": "ok",
    } in rows
