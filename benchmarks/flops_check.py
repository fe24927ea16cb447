"""infbench's FLOP count beside independent counters, one model of each family, at 224×224.

A check, not a test: it needs fvcore and ptflops (`pip install fvcore ptflops`) and takes about a
minute on one CPU core. Every count is in multiply-adds (GMAC) here, for one image, 1000 classes:
infbench counts a multiply-add as 2 FLOPs, fvcore and ptflops as 1, so infbench's GFLOP / 2 is compared.

Counters and what each one covers:

* infbench: `torch.utils.flop_counter.FlopCounterMode` on aten kernels (convolution with its
  groups, matrix products, attention Q·Kᵀ and A·V) plus infbench's CPU attention formula; nothing else.
* fvcore: traces the model with TorchScript and counts conv, linear, matmul, einsum, bmm, and also
  batch/layer/group norm (1–2 per element) and adaptive pooling. `conv+matmul` below is its count of
  the same kernels as infbench's; `total` adds the norms and pooling. It has no handle for
  `aten::scaled_dot_product_attention` and skips it (listed as unsupported): on a ViT it misses
  attention exactly, which the `attention` column (closed form, 2 matmuls per block) accounts for.
* ptflops `aten`: a dispatch mode like infbench's, over mm/matmul/addmm/bmm/convolution. It has no
  attention formula either (the closed form is added to it as to fvcore), and it counts a linear
  layer's bias add (one per output), so models of biased linear layers (ConvNeXt, ViT) come out a
  few tenths of a percent above the others.
* ptflops `pytorch`: module hooks, counting also bias adds, batch norm, activations and pooling
  (elementwise, 1 per element), and `nn.MultiheadAttention` by its own formula; functional calls
  outside a module (ConvNeXt's layer scale, SE's multiply) are not seen. Its hook for timm's
  `Attention` counts Q·Kᵀ, softmax and A·V but, as the hooked module's children are not visited,
  not the qkv and output projections inside it: on a timm ViT it is far below the others.
* torchvision: the `_ops` figure in the weights' metadata (GFLOPS in its docs; multiply-adds),
  read without downloading any weights.

  PYTHONPATH=workflow python benchmarks/flops_check.py [--max-diff 0.01]
Exits 1 where infbench differs from fvcore's conv+matmul count (plus the closed-form attention) by
more than --max-diff.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import sys
import warnings

MODELS = [  # (name, family)
    ("resnet18", "ResNet: dense 3×3 convolutions"),
    ("mobilenet_v3_large", "depthwise + squeeze-excitation, Hardswish"),
    ("efficientnet_b0", "depthwise + squeeze-excitation, SiLU"),
    ("convnext_tiny", "depthwise 7×7 + LayerNorm, channel MLPs as linear layers"),
    ("vit_b_16", "attention (nn.MultiheadAttention), fixed 224×224 input"),
    ("timm:vit_small_patch16_224", "attention (timm, F.scaled_dot_product_attention)"),
]
SIZE = 224
_FVCORE_MATMUL_OPS = ("conv", "linear", "matmul", "addmm", "bmm", "einsum", "mm")


def build(name: str):
    """A randomly initialised model of `name` with 1000 classes (`timm:` prefix for timm)."""
    if name.startswith("timm:"):
        import timm

        return timm.create_model(name.removeprefix("timm:"), pretrained=False, num_classes=1000).eval()
    import torchvision

    return torchvision.models.get_model(name, weights=None, num_classes=1000).eval()


def attention_gmac(model, name: str) -> float:
    """Closed form of a ViT's attention at SIZE: per block, Q·Kᵀ and A·V, 2·L²·D multiply-adds."""
    if name == "vit_b_16":
        blocks, dim, patch = len(model.encoder.layers), model.hidden_dim, model.patch_size
    elif name.startswith("timm:vit"):
        blocks, dim, patch = len(model.blocks), model.embed_dim, model.patch_embed.patch_size[0]
    else:
        return 0.0
    tokens = (SIZE // patch) ** 2 + 1  # patches + class token
    return blocks * 2 * tokens * tokens * dim / 1e9


def infbench_gmac(model) -> float:
    from infbench.measure import flops

    info = flops.count(model, SIZE)
    if info["uncounted_ops"]:
        print(f"  infbench: uncounted kernels {info['uncounted_ops']}")
    return info["flops_per_image"] / flops.FLOPS_PER_MULTIPLY_ADD / 1e9


def fvcore_gmac(model) -> tuple[float, float, list[str]]:
    """fvcore's total, its conv+matmul part (the kernels infbench counts), and the attention ops it skipped."""
    import torch
    from fvcore.nn import FlopCountAnalysis

    analysis = FlopCountAnalysis(model, (torch.zeros(1, 3, SIZE, SIZE),))
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    by_op = analysis.by_operator()
    matmul = sum(n for op, n in by_op.items() if op in _FVCORE_MATMUL_OPS)
    skipped = sorted(op for op in analysis.unsupported_ops() if "attention" in op)
    return analysis.total() / 1e9, matmul / 1e9, skipped


def ptflops_gmac(model, backend: str) -> float:
    from ptflops import get_model_complexity_info

    with contextlib.redirect_stdout(io.StringIO()):
        macs, _ = get_model_complexity_info(
            model, (3, SIZE, SIZE), as_strings=False, print_per_layer_stat=False, backend=backend
        )
    return macs / 1e9


def torchvision_gmac(name: str) -> float | None:
    """The multiply-adds torchvision's weights metadata gives (GFLOPS in its docs), where it has them."""
    if name.startswith("timm:"):
        return None
    import torchvision

    return torchvision.models.get_model_weights(name).DEFAULT.meta.get("_ops")


def _rel(a: float | None, b: float | None) -> str:
    return "" if a is None or not b else f"{100 * (a / b - 1):+.2f}%"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--max-diff", type=float, default=0.01, help="largest relative difference to fvcore accepted")
    a = p.parse_args(argv)
    import torch

    torch.set_num_threads(1)
    warnings.filterwarnings("ignore")
    print(f"GMAC per image at {SIZE}×{SIZE} (infbench: its GFLOP / 2). attention: closed form, added to the")
    print("fvcore and ptflops-aten counts (neither counts it); Δ: infbench against that sum.")
    print(
        f"{'model':28} {'infbench':>9} {'fvcore':>9} {'ptf.aten':>9} {'attention':>9} {'Δ fvcore':>9} "
        f"{'Δ ptf.aten':>10} {'fvc.total':>9} {'ptf.modules':>11} {'torchvision':>11} {'Δ tv':>7}"
    )
    worst = 0.0
    for name, family in MODELS:
        try:
            model = build(name)
        except ImportError as exc:
            print(f"{name:28} skipped: {exc}")
            continue
        ours = infbench_gmac(model)
        fv_total, fv_matmul, skipped = fvcore_gmac(model)
        attn = attention_gmac(model, name)
        if attn and "aten::scaled_dot_product_attention" not in skipped:
            print(f"  fvcore counted attention on {name}: the closed form must not be added")
            return 1
        pt_aten, pt_mod = ptflops_gmac(model, "aten"), ptflops_gmac(model, "pytorch")
        tv = torchvision_gmac(name)
        worst = max(worst, abs(ours / (fv_matmul + attn) - 1))
        print(
            f"{name:28} {ours:9.4f} {fv_matmul:9.4f} {pt_aten:9.4f} {attn:9.4f} {_rel(ours, fv_matmul + attn):>9} "
            f"{_rel(ours, pt_aten + attn):>10} {fv_total:9.4f} {pt_mod:11.4f} {'' if tv is None else f'{tv:.3f}':>11} "
            f"{_rel(ours, tv):>7}"
        )
        print(f"{'':28} ({family})")
    ok = worst <= a.max_diff
    print(f"largest difference to fvcore conv+matmul (+ closed-form attention): {100 * worst:.3f}% ", end="")
    print("(within" if ok else "(beyond", f"{100 * a.max_diff:g}%)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
