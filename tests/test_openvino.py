"""The openvino backend, for real on this CPU: its cells and accuracy through Snakemake, NNCF's builds
(one that cannot meet its tolerance), and what happens where OpenVINO or NNCF cannot be imported.
Plus one torch_compile CPU cell through the bench CLI (its compile time in the result)."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MEASURED, TINY_CONFIG, protocol_args, snakemake, write_config

from infbench.backends.openvino import bf16_reason, cpu_capabilities
from infbench.backends.registry import spec
from infbench.study import grid

pytest.importorskip("openvino")
pytest.importorskip("nncf")

STUDY = "results/digits/resnet18"
REFERENCE = f"{STUDY}/reference/32.npz"  # up to date in the default study (conftest's reported_copy)
PRECISIONS = ["fp32", "int8", "int8_nncf", "int8_nncf_ac"]


def config_with(backends: dict) -> dict:
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["grid"]["backends"] = backends
    cfg["model"] = {"name": "resnet18"}  # (the schema's default, given: grid.expand reads it)
    cfg["accuracy"] = {"expected_tensorrt": []}  # the TensorRT estimates are other tests' business
    return cfg


def test_openvino_cells_and_their_accuracy_through_the_workflow(reported_copy):
    write_config(reported_copy, config_with({"openvino": PRECISIONS}))
    cells, _ = grid.expand(config_with({"openvino": PRECISIONS}))
    targets = [grid.bench_result_path(c, "digits") for c in cells]
    targets += [f"{STUDY}/accuracy/openvino/{p}/cpu.json" for p in PRECISIONS]
    snakemake(reported_copy, *targets)
    for cell in cells:
        result = json.loads((reported_copy / grid.bench_result_path(cell, "digits")).read_text())
        assert result["status"] in MEASURED, (cell.precision, result["error"])
        assert result["throughput_img_s"] > 0 and result["load_s"] > 0  # read + compile, before timing
        log = (reported_copy / f"{STUDY}/logs/repetitions/openvino/{cell.precision}/cpu/32x4/1.log").read_text()
        assert "compiled for (4, 3, 32, 32), f32, 1 stream(s), 2 thread(s)" in log  # the defaults, pinned f32
    for precision in PRECISIONS:
        acc = json.loads((reported_copy / f"{STUDY}/accuracy/openvino/{precision}/cpu.json").read_text())
        assert acc["status"] == "ok" and acc["images"] == 128 and 0 < acc["accuracy_top1"] <= 1, acc
    fp32 = json.loads((reported_copy / f"{STUDY}/accuracy/openvino/fp32/cpu.json").read_text())
    assert fp32["top1_agreement"] == 1.0  # f32 inference precision: the PyTorch reference's answers
    ac = json.loads((reported_copy / f"{STUDY}/accuracy/openvino/int8_nncf_ac/cpu.json").read_text())
    assert ac["artifact_info"]["max_drop_points"] == 1.0 and "tolerance_met" in ac["artifact_info"]
    assert ac["model_size_mib"] < fp32["model_size_mib"] / 2  # the .bin counted: int8 weights, mostly
    assert (reported_copy / f"{STUDY}/openvino/int8_nncf.bin").stat().st_size > 0


def test_an_accuracy_control_that_cannot_meet_its_tolerance_says_by_how_much(trained_workflow, tmp_path):
    """A tolerance no model can meet (top-1 50 points above fp32's): NNCF reverts what it can, and the build
    records the miss instead of failing."""
    from infbench.backends.openvino_nncf import quantize_nncf

    out = tmp_path / "int8_nncf_ac.xml"
    info = quantize_nncf(
        trained_workflow / f"{STUDY}/onnx/fp32.onnx", out, trained_workflow / "results/digits/data.npz", 32, 16, -50.0
    )
    assert info["tolerance_met"] is False
    assert info["missed_by_points"] == pytest.approx(info["validation_drop_points"] + 50)
    assert json.loads(out.with_suffix(".json").read_text()) == info
    assert out.with_suffix(".bin").stat().st_size > 0


def hidden(*modules: str) -> dict:
    """An environment in which `modules` cannot be imported, in every Python process started with it (a
    sitecustomize on PYTHONPATH; the measuring process is a child of the bench command)."""
    folder = Path(os.environ.get("PYTEST_TMP", "/tmp")) / f"hide-{'-'.join(modules)}-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(
        "import sys\n" + "".join(f"sys.modules[{m!r}] = None\n" for m in modules)  # None: ImportError on import
    )
    return {**os.environ, "PYTHONPATH": f"{folder}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


def infbench(workdir: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**(env or os.environ)}
    env["PYTHONPATH"] = f"{env.get('PYTHONPATH', '')}{os.pathsep}{workdir / 'workflow'}"
    cmd = [sys.executable, "-m", "infbench.cli", *args]
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def bench_args(precision: str, artifact: str, out: Path, backend: str = "openvino") -> list[str]:
    return [
        "bench", "--backend", backend, "--precision", precision, "--device", "cpu", "--size", "32", "--batch", "4",
        "--artifact", artifact, "--reference", REFERENCE, "--threads", "2", "--out", str(out), *protocol_args(),
    ]  # fmt: skip


def test_without_openvino_or_nncf_the_cells_are_unavailable_with_the_install_command(reported_copy):
    no_openvino = hidden("openvino")
    out = reported_copy / "cell.json"
    infbench(reported_copy, *bench_args("fp32", f"{STUDY}/onnx/fp32.onnx", out), env=no_openvino)
    cell = json.loads(out.read_text())
    assert cell["status"] == "unavailable" and "pip install openvino nncf" in cell["error"], cell
    # NNCF missing: its build writes a stub (exit 0); a cell reading it is unavailable, naming NNCF
    stub = reported_copy / f"{STUDY}/openvino/int8_nncf.xml"
    infbench(
        reported_copy, "quantize-nncf", "--onnx", f"{STUDY}/onnx/fp32.onnx", "--out", str(stub),
        "--dataset", "results/digits/data.npz", "--image-size", "32", "--samples", "16", env=hidden("nncf"),
    )  # fmt: skip
    infbench(reported_copy, *bench_args("int8_nncf", str(stub), out))
    cell = json.loads(out.read_text())
    assert cell["status"] == "unavailable" and "NNCF cannot be imported" in cell["error"], cell
    acc = reported_copy / "acc.json"
    infbench(
        reported_copy, "accuracy", "--backend", "openvino", "--precision", "int8", "--device", "cpu",
        "--artifact", f"{STUDY}/onnx/fp32.onnx", "--checkpoint", f"{STUDY}/checkpoint.pt",
        "--dataset", "results/digits/data.npz", "--image-size", "32", "--out", str(acc), env=no_openvino,
    )  # fmt: skip
    record = json.loads(acc.read_text())
    assert record["status"] == "unavailable" and "pip install openvino nncf" in record["error"], record


def test_bf16_is_dropped_at_expansion_on_a_cpu_without_it():
    assert "no bf16 instructions" in bf16_reason(("FP32", "INT8", "BIN"))
    assert bf16_reason(("FP32", "BF16", "INT8")) is None
    assert bf16_reason(None) is None  # OpenVINO missing: the cells say so, with what to install
    cells, dropped = grid.expand(config_with({"openvino": ["fp32", "bf16"]}))
    here = bf16_reason(cpu_capabilities())  # this CPU, as OpenVINO's CPU plugin reports it
    bf16_cells = [c for c in cells if c.precision == "bf16"]
    assert (bf16_cells == []) == (here is not None)
    assert [d.reason for d in dropped if d.precision == "bf16"] == ([here] if here else [])


def test_openvino_options_are_checked_with_their_allowed_values():
    openvino = spec("openvino")
    assert openvino.option_values({}) == {"hint": "latency", "streams": 1, "inference_threads": 0, "pinning": None}
    with pytest.raises(ValueError, match="hint='fast'.*expected one of latency, throughput"):
        openvino.option_values({"hint": "fast"})
    assert openvino.options_schema()["properties"]["hint"]["enum"] == ["latency", "throughput"]
    assert openvino.parse_options(["hint=throughput", "streams=0"])["streams"] == 0


def test_a_torch_compile_cpu_cell_through_the_bench_cli_reports_its_compile_time(reported_copy):
    out = reported_copy / "compiled.json"
    infbench(reported_copy, *bench_args("fp32", f"{STUDY}/checkpoint.pt", out, backend="torch_compile"))
    cell = json.loads(out.read_text())
    assert cell["status"] in MEASURED, cell["error"]
    runs = cell["repetition_runs"]
    # torch.compile compiles in the first call: its first batch, timed before the warm-up, holds the compile
    assert all(r["first_batch_s"] > 0 for r in runs) and cell["first_inference_s"] >= cell["load_s"]
    assert any(k.startswith("fxgraph_cache") for r in runs for k in (r.get("compile_cache") or {})), runs
