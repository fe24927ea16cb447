"""FLOPs per image (FlopCounterMode), bytes moved, and a cell's achieved FLOP/s and utilisation."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infbench import model as model_lib
from infbench.measure import flops

torch = pytest.importorskip("torch")

RESNET18_224_GFLOP = 3.6  # 1.82 G multiply-adds, a multiply-add counted as 2 FLOPs


@pytest.mark.parametrize("num_classes", [1000, 10])
def test_resnet18_at_224_is_about_3_6_gflop(num_classes):
    info = flops.count(model_lib.build("resnet18", num_classes, "imagenet"), 224)
    assert info["gflops_per_image"] == pytest.approx(RESNET18_224_GFLOP, rel=0.05)
    # Convolutions are the work; the classifier is a rounding error.
    assert info["flops_by_op"]["aten.convolution"] / info["flops_per_image"] > 0.99


def test_flops_are_per_image_and_scale_with_pixels():
    net = model_lib.build("resnet18", 10, "imagenet")
    one = flops.count(net, 224, batch=1)
    four = flops.count(net, 224, batch=4)
    assert four["flops_per_image"] == pytest.approx(one["flops_per_image"], rel=1e-9)
    assert four["activation_elements_per_image"] == pytest.approx(one["activation_elements_per_image"], rel=1e-9)
    half = flops.count(net, 112)
    # About 4× for twice the side (not exactly: the small feature maps are padded).
    assert 3.5 < one["flops_per_image"] / half["flops_per_image"] < 4.2


def test_bytes_and_arithmetic_intensity():
    info = flops.count(model_lib.build("resnet18", 10, "imagenet"), 224)
    assert info["param_elements"] == sum(p.numel() for p in model_lib.build("resnet18", 10).parameters())
    # The fused estimate lies below the unfused upper bound and above the network's input.
    assert 3 * 224 * 224 < info["activation_elements_per_image"] < info["activation_elements_unfused_per_image"]
    fp32_b1 = flops.bytes_per_image(info, "fp32", 1)
    fp32_b32 = flops.bytes_per_image(info, "fp32", 32)
    assert fp32_b1 == pytest.approx(4 * (info["param_elements"] + info["activation_elements_per_image"]))
    assert fp32_b32 < fp32_b1  # the weights are read once per batch
    assert flops.bytes_per_image(info, "fp16", 8) == pytest.approx(flops.bytes_per_image(info, "fp32", 8) / 2)
    assert flops.bytes_per_image(info, "int8", 8) < flops.bytes_per_image(info, "fp16", 8)


def _probe(**peaks):
    return {"status": "ok", "device": "cpu", "peak_tflops": peaks, "bandwidth_gb_s": 10.0, "matmul": {}}


def test_utilisation_is_against_the_probe_peak_of_the_precision():
    info = {"gflops_per_image": 2.0, "param_elements": 1000, "activation_elements_per_image": 1000}
    probe = _probe(fp32=1.0, int8=4.0)
    fp32 = flops.cell_metrics(info, probe, "fp32", 8, throughput_img_s=100)
    assert fp32["achieved_tflops"] == pytest.approx(0.2)  # 2 GFLOP × 100 img/s
    assert fp32["utilization_pct"] == pytest.approx(20.0)
    assert fp32["peak_precision"] == "fp32" and fp32["bandwidth_gb_s"] == 10.0
    assert fp32["arithmetic_intensity"] == pytest.approx(2e9 / (4 * 1000 / 8 + 4 * 1000))
    dynamic = flops.cell_metrics(info, probe, "int8_dynamic", 8, throughput_img_s=100)
    assert dynamic["peak_precision"] == "int8" and dynamic["utilization_pct"] == pytest.approx(5.0)
    # No measured peak for the precision: utilisation null, with the reason; FLOPs still there.
    bf16 = flops.cell_metrics(info, probe, "bf16", 8, throughput_img_s=100)
    assert bf16["utilization_pct"] is None and "bf16" in bf16["note"]
    assert bf16["achieved_tflops"] == pytest.approx(0.2)
    # A failed cell (no throughput) or an unavailable probe: nulls, never zeros.
    failed = flops.cell_metrics(info, probe, "fp32", 8, throughput_img_s=None)
    assert failed["achieved_tflops"] is None and failed["utilization_pct"] is None
    gone = flops.cell_metrics(info, {"status": "unavailable", "error": "no GPU"}, "fp16", 8, 100)
    assert gone["utilization_pct"] is None and "unavailable" in gone["note"]
    assert flops.cell_metrics(None, None, "fp32", 8, 100)["gflops_per_image"] is None


def test_flops_cli_counts_a_trained_checkpoint(tmp_path):
    net = model_lib.build("resnet18", 10, "cifar")
    ckpt = tmp_path / "checkpoint.pt"
    torch.save(
        {"arch": "resnet18", "stem": "cifar", "num_classes": 10, "image_size": 32, "state_dict": net.state_dict()}, ckpt
    )
    out = tmp_path / "flops" / "32.json"
    cmd = [sys.executable, "-m", "infbench.cli", "flops", "--checkpoint", str(ckpt), "--size", "32", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    info = json.loads(out.read_text())
    assert info["model"] == "resnet18" and info["stem"] == "cifar" and info["image_size"] == 32
    # CIFAR stem at 32×32 keeps full resolution in the first stage: 0.56 G multiply-adds, 1.11 GFLOP.
    assert info["gflops_per_image"] == pytest.approx(flops.count(net, 32)["gflops_per_image"])
    assert 1.0 < info["gflops_per_image"] < 1.2
