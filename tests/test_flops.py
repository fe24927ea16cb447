"""FLOPs per image (FlopCounterMode), bytes moved, and a cell's achieved FLOP/s and utilisation.

The counts are checked against closed forms: grouped and depthwise convolutions, linear layers over
tokens, attention (Q·Kᵀ and A·V) through SDPA, `nn.MultiheadAttention` and a transformer layer, and
a whole torchvision MobileNet-V3 against a count from its own modules' shapes.
`benchmarks/flops_check.py` compares whole models with fvcore and ptflops."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from infbench.measure import flops
from infbench.stages import model as model_lib

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional
MAC = flops.FLOPS_PER_MULTIPLY_ADD

RESNET18_224_GFLOP = 3.6  # 1.82 G multiply-adds, a multiply-add counted as 2 FLOPs


@pytest.mark.parametrize("num_classes", [1000, 10])
def test_resnet18_at_224_is_about_3_6_gflop(num_classes):
    info = flops.count(model_lib.build("resnet18", num_classes, "imagenet"), 224)
    assert info["gflops_per_image"] == pytest.approx(RESNET18_224_GFLOP, rel=0.05)
    # Convolutions are the work; the classifier is a rounding error.
    assert info["flops_by_op"]["aten.convolution"] / info["flops_per_image"] > 0.99


@pytest.mark.parametrize("groups", [1, 4, 16])  # dense, grouped, depthwise (groups = channels)
def test_grouped_and_depthwise_convolutions_count_k2_cin_over_groups_cout_per_output_pixel(groups):
    net = nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),  # 16×16 out
        nn.Conv2d(16, 32, 5, stride=2, padding=2, dilation=1, groups=groups),  # 8×8 out
    )
    info = flops.count(net, 16)
    expected = 3 * 3 * 3 * 16 * 16 * 16 + 5 * 5 * (16 // groups) * 32 * 8 * 8
    assert info["flops_per_image"] == MAC * expected
    assert info["uncounted_ops"] == []


class _TokenAttention(nn.Module):
    """Patchify, then one attention layer over the tokens, mean-pool, classify: the kinds of
    attention a ViT runs (`kind`): F.scaled_dot_product_attention on per-head tensors,
    `nn.MultiheadAttention`, or a whole `nn.TransformerEncoderLayer` (fused at inference)."""

    def __init__(self, kind: str, dim=32, heads=4, patch=4, ffn=64, classes=10):
        super().__init__()
        self.kind, self.heads = kind, heads
        self.patchify = nn.Conv2d(3, dim, patch, stride=patch)
        if kind == "sdpa":
            self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        elif kind == "mha":
            self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        else:
            self.attn = nn.TransformerEncoderLayer(dim, heads, ffn, dropout=0.0, batch_first=True)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        t = self.patchify(x).flatten(2).transpose(1, 2)  # (B, L, D): the linear layers see 3-D input
        if self.kind == "sdpa":
            b, n, d = t.shape
            q, k, v = self.qkv(t).view(b, n, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
            t = self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))
        elif self.kind == "mha":
            t = self.attn(t, t, t, need_weights=False)[0]
        else:
            t = self.attn(t)
        return self.head(t.mean(1))


@pytest.mark.parametrize("kind", ["sdpa", "mha", "encoder_layer"])
def test_attention_counts_projections_and_both_matrix_products(kind):
    dim, patch, size, ffn, classes = 32, 4, 16, 64, 10
    tokens = (size // patch) ** 2
    info = flops.count(_TokenAttention(kind, dim=dim, patch=patch, ffn=ffn, classes=classes), size)
    macs = (
        patch * patch * 3 * dim * tokens  # patchify convolution
        + tokens * dim * 4 * dim  # q, k, v and output projections
        + 2 * tokens * tokens * dim  # Q·Kᵀ and A·V over all heads
        + (2 * tokens * dim * ffn if kind == "encoder_layer" else 0)  # the layer's feed-forward
        + dim * classes
    )
    assert info["flops_per_image"] == MAC * macs
    assert info["uncounted_ops"] == []


def test_a_kernel_the_counter_cannot_see_into_is_listed_not_silently_zero():
    # nn.MultiheadAttention's fused inference kernel, left on here: PyTorch's counter has no formula
    # for it. `count` turns it off; the counter alone must still say what it missed.
    mha = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    x = torch.zeros(2, 10, 32)
    counter = flops.flop_counter()
    with torch.inference_mode(), counter:
        mha(x, x, x, need_weights=False)
    assert counter.uncounted == {"aten._native_multi_head_attention"}


def _module_macs(net, size: int) -> int:
    """Multiply-adds of every Conv2d and Linear from its own shapes (forward hooks), independent of
    the dispatch-level counter: k·k·Cin/groups per output element, in_features per linear output."""
    total = 0

    def hook(module, inputs, out):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            k = module.kernel_size[0] * module.kernel_size[1]
            total += out.numel() * k * module.in_channels // module.groups
        else:
            total += out.numel() * module.in_features

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    with torch.inference_mode():
        net.eval()(torch.zeros(1, 3, size, size))
    for h in handles:
        h.remove()
    return total


def test_mobilenet_v3_matches_its_modules_closed_form_and_torchvisions_figure():
    torchvision = pytest.importorskip("torchvision")
    net = torchvision.models.get_model("mobilenet_v3_small", weights=None, num_classes=1000)
    info = flops.count(net, 224)
    assert info["flops_per_image"] == MAC * _module_macs(net, 224)  # depthwise convs and SE included
    # torchvision's own figure for this model (multiply-adds, GMAC to 3 decimals, no download).
    published = torchvision.models.get_model_weights("mobilenet_v3_small").DEFAULT.meta["_ops"]
    assert info["gflops_per_image"] / MAC == pytest.approx(published, abs=0.0005)


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
    model_lib.save(ckpt, net, model_lib.Facts("resnet18", 10, stem="cifar"))
    out = tmp_path / "flops" / "32.json"
    cmd = [sys.executable, "-m", "infbench.cli", "flops", "--checkpoint", str(ckpt), "--size", "32", "--out", str(out)]
    subprocess.run(cmd, check=True, capture_output=True)
    info = json.loads(out.read_text())
    assert info["model"] == "resnet18" and info["stem"] == "cifar" and info["image_size"] == 32
    assert info["flops_per_multiply_add"] == 2 and info["uncounted_ops"] == []
    # CIFAR stem at 32×32 keeps full resolution in the first stage: 0.56 G multiply-adds, 1.11 GFLOP.
    assert info["gflops_per_image"] == pytest.approx(flops.count(net, 32)["gflops_per_image"])
    assert 1.0 < info["gflops_per_image"] < 1.2
