"""Accuracy of every variant: real ORT sessions on the trained ResNet-18 of the tiny workflow.

The trained model comes from conftest's `trained_workflow` (trained once per session, read-only
here); one test runs the accuracy stage through a real Snakemake run, in a copy of the default study.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import onnx
import polars as pl
import pytest
from conftest import TINY_CONFIG, planned_jobs, snakemake, write_config
from onnx import numpy_helper

from infbench.backends.base import run_batches
from infbench.core.cell import Cell
from infbench.core.integrity import DamagedInput
from infbench.stages import accuracy, quantize

KEYS = {
    "variant",
    "backend",
    "precision",
    "device",
    "accuracy_top1",
    "accuracy_drop",
    "top1_agreement",
    "max_abs_logit_diff",
    "model_size_mib",
    "over_tolerance",
    "tolerance_points",
    "images",
}
NUMBERS = ["accuracy_top1", "accuracy_drop", "top1_agreement", "max_abs_logit_diff", "over_tolerance", "images"]
MODEL = "results/digits/resnet18"


def files(workdir: Path) -> dict[str, Path]:
    return {
        "checkpoint": workdir / MODEL / "checkpoint.pt",
        "fp32": workdir / MODEL / "onnx/fp32.onnx",
        "dataset": workdir / "results/digits/data.npz",
    }


def evaluate(
    workdir: Path, backend: str, precision: str, artifact: Path, device: str = "cpu", tolerance: float = 1.0
) -> dict:
    f = files(workdir)
    return accuracy.evaluate(
        model="resnet18",
        backend=backend,
        precision=precision,
        device=device,
        artifact=artifact,
        checkpoint=f["checkpoint"],
        dataset=f["dataset"],
        image_size=32,
        batch=32,
        threads=2,
        tolerance_points=tolerance,
    )


def corrupt(src: Path, dest: Path, prefix: str = "fc.weight") -> list[str]:
    """Zero the initializers of the final fully connected layer (whatever form quantisation gave
    them): every image then gets the same logits, the bias."""
    model = onnx.load(str(src))
    names = []
    for i, tensor in enumerate(model.graph.initializer):
        if tensor.name.startswith(prefix):
            array = numpy_helper.to_array(tensor)
            model.graph.initializer[i].CopyFrom(numpy_helper.from_array(np.zeros_like(array), tensor.name))
            names.append(tensor.name)
    assert names, f"no initializer named {prefix}* in {src}"
    onnx.save(model, str(dest))
    return names


# -- the numbers, without a model ------------------------------------------------------------------


def test_compare_counts_drop_in_points_and_flags_over_tolerance():
    labels = np.array([0, 1, 2, 3] * 25)
    reference = np.eye(4)[labels] * 5.0  # 100 % right
    logits = reference.copy()
    logits[:3] = np.eye(4)[(labels[:3] + 1) % 4] * 5.0  # three wrong: 97 %
    r = accuracy.compare(logits, reference, labels, tolerance_points=1.0)
    assert r["accuracy_top1"] == 0.97 and r["reference_top1"] == 1.0
    assert r["accuracy_drop"] == pytest.approx(3.0) and r["over_tolerance"] is True
    assert r["top1_agreement"] == 0.97 and r["max_abs_logit_diff"] == 5.0 and r["images"] == 100
    assert accuracy.compare(logits, reference, labels, tolerance_points=3.0)["over_tolerance"] is False
    same = accuracy.compare(reference, reference, labels, tolerance_points=0.0)
    assert same["accuracy_drop"] == 0.0 and same["over_tolerance"] is False and same["max_abs_logit_diff"] == 0.0


def test_non_finite_logits_are_not_hidden():
    labels = np.array([0, 1])
    reference = np.eye(2)
    r = accuracy.compare(np.array([[np.nan, 0.0], [0.0, 1.0]]), reference, labels, 1.0)
    assert r["max_abs_logit_diff"] == float("inf")


class FixedShape:
    """A stand-in backend that, like a TensorRT engine, only takes its one batch size."""

    def __init__(self, batch):
        self.batch, self.seen = batch, []

    def prepare(self, x):
        assert x.shape[0] == self.batch
        self.seen.append(x.shape[0])
        return x

    def run(self, x):
        return x.reshape(len(x), -1)[:, :3] * 2

    def synchronize(self):
        pass

    def to_numpy(self, out):
        return out


def test_backend_sees_only_its_batch_size_and_every_image_is_scored_once():
    images = np.arange(10 * 3 * 2 * 2, dtype=np.float32).reshape(10, 3, 2, 2)
    backend = FixedShape(4)
    out = run_batches(backend, images, 4)
    assert backend.seen == [4, 4, 4] and out.shape == (10, 3)
    np.testing.assert_array_equal(out, images.reshape(10, -1)[:, :3] * 2)


def test_variant_names():
    assert accuracy.variant_name(Cell("resnet18", "onnxruntime", "int8", "cpu", 32, 8)) == "onnx/int8_static"
    assert accuracy.variant_name(Cell("resnet18", "torch", "bf16", "cpu", 32, 8)) == "checkpoint"
    assert accuracy.variant_name(Cell("resnet18", "aotinductor", "fp32", "cpu", 32, 8)) == "aoti/cpu/fp32/32x8"


# -- real sessions on the trained model ------------------------------------------------------------


@pytest.fixture(scope="module")
def variants(trained_workflow, tmp_path_factory) -> dict[str, Path]:
    """int8_static and int8_dynamic of the trained model, built as the workflow builds them."""
    f = files(trained_workflow)
    out = tmp_path_factory.mktemp("variants")
    quantize.quantize_static(f["fp32"], out / "int8_static.onnx", f["dataset"], 32)
    quantize.quantize_dynamic(f["fp32"], out / "int8_dynamic.onnx")
    return {"int8": out / "int8_static.onnx", "int8_dynamic": out / "int8_dynamic.onnx", "fp32": f["fp32"]}


def test_fp32_onnx_matches_the_reference(trained_workflow, variants):
    r = evaluate(trained_workflow, "onnxruntime", "fp32", variants["fp32"])
    assert r["status"] == "ok" and KEYS <= set(r)
    assert r["accuracy_drop"] == 0.0 and r["top1_agreement"] == 1.0 and r["max_abs_logit_diff"] < 1e-3
    assert r["images"] == TINY_CONFIG["split"]["test"] and r["variant"] == "onnx/fp32"
    # The tiny model learned something: the tolerance checks below mean something.
    assert r["accuracy_top1"] > 0.3


def test_static_int8_is_within_tolerance_and_a_quarter_of_the_size(trained_workflow, variants):
    r = evaluate(trained_workflow, "onnxruntime", "int8", variants["int8"])
    assert r["status"] == "ok" and r["over_tolerance"] is False, r
    assert r["accuracy_drop"] <= 1.0 and r["top1_agreement"] >= 0.95
    assert 0 < r["max_abs_logit_diff"] < 5
    fp32_mib = variants["fp32"].stat().st_size / 2**20
    assert r["model_size_mib"] < fp32_mib / 3.5


def test_dynamic_int8_is_evaluated_and_flagged_when_over_tolerance(trained_workflow, variants, tmp_path):
    r = evaluate(trained_workflow, "onnxruntime", "int8_dynamic", variants["int8_dynamic"])
    assert r["status"] == "ok" and all(r[k] is not None for k in NUMBERS)
    assert r["over_tolerance"] is (r["accuracy_drop"] > 1.0)  # its drop is shown, whatever it is
    # A dynamic model whose final layer is broken is flagged, with its numbers.
    broken = tmp_path / "int8_dynamic.onnx"
    corrupt(variants["int8_dynamic"], broken)
    bad = evaluate(trained_workflow, "onnxruntime", "int8_dynamic", broken)
    assert bad["status"] == "ok" and bad["over_tolerance"] is True, bad
    assert bad["accuracy_drop"] > 1.0 and bad["top1_agreement"] < 0.5


def test_a_corrupted_variant_is_flagged_with_its_numbers(trained_workflow, tmp_path):
    """Zeroed final Gemm weights: the file loads, runs fast, and computes something else."""
    broken = tmp_path / "int8_static.onnx"
    assert corrupt(files(trained_workflow)["fp32"], broken) == ["fc.weight"]
    r = evaluate(trained_workflow, "onnxruntime", "int8", broken, tolerance=1.0)
    assert r["status"] == "ok" and r["over_tolerance"] is True
    assert r["accuracy_drop"] == pytest.approx((r["reference_top1"] - r["accuracy_top1"]) * 100, abs=1e-6)
    assert r["accuracy_drop"] > 10 and r["accuracy_top1"] < 0.25  # one class for every image
    assert r["top1_agreement"] < 0.5 and r["max_abs_logit_diff"] > 1
    assert r["model_size_mib"] > 0 and r["tolerance_points"] == 1.0


def test_torch_precisions_use_the_checkpoint(trained_workflow):
    ckpt = files(trained_workflow)["checkpoint"]
    fp32 = evaluate(trained_workflow, "torch", "fp32", ckpt)
    assert fp32["status"] == "ok" and fp32["accuracy_drop"] == 0.0 and fp32["max_abs_logit_diff"] == 0.0
    bf16 = evaluate(trained_workflow, "torch", "bf16", ckpt)
    assert bf16["status"] == "ok" and 0 < bf16["max_abs_logit_diff"] < 2
    # what ran: the weights cast to bf16, half the fp32 ones (issue 28), not the checkpoint file
    assert bf16["model_size_mib"] == pytest.approx(fp32["model_size_mib"] / 2, rel=0.01)
    assert fp32["model_size_mib"] == pytest.approx(ckpt.stat().st_size / 2**20, rel=0.05)


def test_a_missing_device_gives_unavailable_with_null_numbers(trained_workflow, variants):
    r = evaluate(trained_workflow, "onnxruntime", "fp32", variants["fp32"], device="cuda")
    if r["status"] == "ok":
        pytest.skip("this machine has a CUDA execution provider")
    assert r["status"] == "unavailable" and r["error"]
    assert all(r[k] is None for k in NUMBERS)


def test_a_broken_artifact_is_no_result_but_a_file_to_rebuild(trained_workflow, tmp_path):
    """A damaged input is not the variant's accuracy: no error result, the job fails naming the rule
    that rebuilds the file (`infbench.cli` then removes it; tests/test_integrity.py)."""
    broken = tmp_path / "int8_static.onnx"
    broken.write_bytes(b"\x08\x01truncated")
    with pytest.raises(DamagedInput) as info:
        evaluate(trained_workflow, "onnxruntime", "int8", broken)
    assert str(broken) in str(info.value) and "'quantize_int8'" in str(info.value)


# -- through Snakemake -----------------------------------------------------------------------------


def test_workflow_builds_variants_scores_each_and_joins_the_summary(reported_copy):
    """From the default study (conftest's `reported_run`: torch and onnxruntime fp32 on the CPU, scored):
    the INT8 variants and the CUDA cells added, then what a change of each setting reruns."""
    config = copy.deepcopy(TINY_CONFIG)
    config["grid"]["devices"] = ["cpu", "cuda"]
    config["grid"]["backends"] = {"torch": ["fp32"], "onnxruntime": ["fp32", "int8", "int8_dynamic"]}
    config["quantize"] = {"calibration_method": "Percentile", "calibration_samples": 48}
    config["accuracy"] = {"tolerance_points": 1.0}
    write_config(reported_copy, config)
    jobs = planned_jobs(reported_copy, "results/digits/resnet18/report/summary.csv")
    # one per backend × precision × device with cells (cuda has torch fp32 and onnxruntime fp32), but
    # the default study's two (fp32 on the CPU, at the same tolerance): they are up to date
    assert jobs["accuracy"] == 6 - 2 and jobs["quantize_int8"] == 2 and "convert_fp16" not in jobs
    snakemake(reported_copy, "results/digits/resnet18/report/summary.csv")

    root = reported_copy / "results/digits/resnet18/accuracy"
    got = {p.relative_to(root).with_suffix("").as_posix(): json.loads(p.read_text()) for p in root.rglob("*.json")}
    assert set(got) == {
        "torch/fp32/cpu",
        "onnxruntime/fp32/cpu",
        "onnxruntime/int8/cpu",
        "onnxruntime/int8_dynamic/cpu",
        "torch/fp32/cuda",
        "onnxruntime/fp32/cuda",
    }
    for key, r in got.items():
        assert KEYS <= set(r), key
    static, dynamic = got["onnxruntime/int8/cpu"], got["onnxruntime/int8_dynamic/cpu"]
    assert static["status"] == "ok" and static["over_tolerance"] is False and static["variant"] == "onnx/int8_static"
    assert static["images"] == config["split"]["test"]
    assert dynamic["status"] == "ok" and dynamic["over_tolerance"] is (dynamic["accuracy_drop"] > 1.0)
    assert quantize.metadata(reported_copy / MODEL / "onnx/int8_static.onnx")["calibration_samples"] == "48"
    for key in ("torch/fp32/cuda", "onnxruntime/fp32/cuda"):
        if got[key]["status"] != "ok":  # no GPU here
            assert got[key]["status"] == "unavailable" and got[key]["accuracy_top1"] is None

    df = pl.read_csv(reported_copy / "results/digits/resnet18/report/summary.csv")
    row = df.filter((pl.col("backend") == "onnxruntime") & (pl.col("precision") == "int8")).row(0, named=True)
    assert row["accuracy_top1"] == pytest.approx(static["accuracy_top1"])
    assert row["over_tolerance"] is False and row["model_size_mib"] == pytest.approx(static["model_size_mib"])
    assert row["top1_agreement"] >= 0.9  # the cell's own check at its size
    meta = json.loads((reported_copy / "results/digits/resnet18/report/meta.json").read_text())
    assert meta["tolerance_points"] == 1.0 and len(meta["accuracy"]) == 6

    # A calibration change rebuilds the static model only, and reruns what reads it.
    config["quantize"]["calibration_method"] = "MinMax"
    write_config(reported_copy, config)
    jobs = planned_jobs(reported_copy, "results/digits/resnet18/report/summary.csv")
    assert jobs["quantize_int8"] == 1 and jobs["accuracy"] == 1 and jobs["bench_cell"] == 1, jobs
    # A tolerance change rescores, and rebuilds nothing.
    config["quantize"]["calibration_method"] = "Percentile"
    config["accuracy"]["tolerance_points"] = 0.5
    write_config(reported_copy, config)
    jobs = planned_jobs(reported_copy, "results/digits/resnet18/report/summary.csv")
    assert "quantize_int8" not in jobs and "bench_cell" not in jobs and jobs["accuracy"] == 6, jobs
    # A grid value added (a larger batch, a size) runs its cells only: accuracy is at a fixed shape.
    config["accuracy"]["tolerance_points"] = 1.0
    config["grid"]["batch_sizes"] = [4, 8]
    config["grid"]["image_sizes"] = [32, 48]
    write_config(reported_copy, config)
    jobs = planned_jobs(reported_copy, "results/digits/resnet18/report/summary.csv")
    assert "accuracy" not in jobs and "quantize_int8" not in jobs and jobs["bench_cell"] == 18, jobs
