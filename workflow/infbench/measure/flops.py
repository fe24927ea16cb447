"""FLOPs and bytes moved per image, counted once per model and image size; a cell's achieved FLOP/s.

FLOPs are counted by `torch.utils.flop_counter.FlopCounterMode` on the real checkpoint at the
cell's image size, for any `torch.nn` classifier: convolutions (grouped and depthwise ones by their
own weight shape, k·k·Cin/groups·Cout per output pixel), matrix products (linear layers with any
leading dims, matmul, bmm, einsum) and attention (Q·Kᵀ and A·V), a multiply-add counted as 2 FLOPs
(ResNet-18 at 224×224: 3.63 GFLOP per image). Two gaps of PyTorch's counter are closed here: the
CPU attention kernel has no formula there (`_attention_flops`), and `nn.MultiheadAttention`'s
inference fast path runs one fused kernel it cannot see (turned off while counting). Kernels that
look like this work but ran without a formula are listed in `uncounted_ops`, never silently zero.
Norms, activations, pooling, softmax and elementwise ops are not counted: they are a few percent
at most, and an inference runtime fuses most of them. The count is the model's nominal work (every
convolution tap, taps on the padding included), the same for every backend and precision: the
arithmetic a backend actually does (skipped padding, Winograd, fused epilogues) differs, which is
what utilisation shows. `benchmarks/flops_check.py` compares it with fvcore and ptflops.

Bytes moved per image, for the roofline's arithmetic intensity, are an estimate of the traffic a
fused inference graph must have at least, counted with a dispatch mode on the same forward pass:

* weights: every parameter read once per batch, so `param_elements / batch` per image;
* activations: every convolution, matrix product, attention and pooling reads its input and
  writes its output once; batch norm and ReLU are fused into the producing convolution (no traffic
  of their own); a residual add reads its skip input once (the other operand is fused);

each element taken at the precision's storage size (`ACTIVATION_BYTES`, `WEIGHT_BYTES`). The
unfused upper bound (every op reads all its inputs and writes its outputs) is recorded as well.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from math import prod
from pathlib import Path

from infbench.core.arguments import paths
from infbench.core.io import write_json
from infbench.measure.probe import peak_for
from infbench.stages import model_onnx
from infbench.stages.model import load_checkpoint, read_facts

SCHEMA_VERSION = 1

# Storage bytes per element in each precision: weights, and activations between layers.
WEIGHT_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "int8": 1, "int8_dynamic": 1}
# int8_dynamic quantises activations on the fly inside each layer; between layers they stay fp32.
ACTIVATION_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "int8": 1, "int8_dynamic": 4}
# NNCF's INT8 models for OpenVINO: int8 weights and activations (the float layers of int8_nncf_ac aside)
for _table in (WEIGHT_BYTES, ACTIVATION_BYTES):
    _table.update(int8_nncf=1, int8_nncf_ac=1)

# Ops whose activation traffic the fused estimate counts (input read + output written).
_LAYER_OPS = (
    "convolution",
    "conv2d",
    "_convolution",
    "addmm",
    "mm",
    "bmm",
    "linear",
    "matmul",
    "scaled_dot_product_attention",
    "_scaled_dot_product_flash_attention_for_cpu",
    "max_pool2d",
    "avg_pool2d",
    "adaptive_avg_pool2d",
    "mean",
)
_SKIP_ADD_OPS = ("add", "add_")

# A multiply-add is 2 FLOPs (PyTorch's convention; fvcore and ptflops report multiply-adds).
FLOPS_PER_MULTIPLY_ADD = 2
# Kernel names that do convolution, matrix-product or attention work: one that ran without a
# FLOP formula is listed in the count's `uncounted_ops`.
_WORK_KERNEL = re.compile(r"conv|mm|matmul|linear|einsum|attention|multi_head|transformer")


def _numel(x) -> int:
    import torch

    if isinstance(x, torch.Tensor):
        return x.numel()
    if isinstance(x, (list, tuple)):
        return sum(_numel(v) for v in x)
    return 0


def _tensors(x):
    import torch

    if isinstance(x, torch.Tensor):
        yield x
    elif isinstance(x, (list, tuple)):
        for v in x:
            yield from _tensors(v)
    elif isinstance(x, dict):
        for v in x.values():
            yield from _tensors(v)


def _traffic_counter(param_ptrs: set[int]):
    """A dispatch mode that tallies activation elements moved (fused estimate and unfused bound)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class TrafficCounter(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.fused = 0
            self.unfused = 0
            self.by_op: dict[str, int] = {}

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            kwargs = kwargs or {}
            out = func(*args, **kwargs)
            name = func.overloadpacket.__name__
            if name in ("view", "_unsafe_view", "t", "reshape", "flatten", "detach", "alias", "expand"):
                return out  # metadata only, no data moves
            inputs = [t for t in _tensors((args, kwargs)) if t.data_ptr() not in param_ptrs]
            in_elems = sum(t.numel() for t in inputs)
            out_elems = _numel(out if name != "max_pool2d_with_indices" else out[0])
            self.unfused += in_elems + out_elems
            base = name.removesuffix("_with_indices")
            moved = 0
            if base in _LAYER_OPS or base.startswith("_adaptive_avg_pool"):
                moved = in_elems + out_elems
            elif name in _SKIP_ADD_OPS and len(inputs) == 2:
                moved = min(t.numel() for t in inputs)  # the skip operand, read once
            if moved:
                self.fused += moved
                self.by_op[name] = self.by_op.get(name, 0) + moved
            return out

    return TrafficCounter()


def _attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:
    """Q·Kᵀ and A·V of one attention call, (B, H, Lq, E) queries against Lk keys: B·H·Lq·Lk·(E + Ev)
    multiply-adds (softmax and scaling not counted), as PyTorch counts its CUDA attention kernels."""
    *lead, lq, e = query_shape
    return FLOPS_PER_MULTIPLY_ADD * prod(lead) * lq * key_shape[-2] * (e + value_shape[-1])


def flop_counter():
    """PyTorch's `FlopCounterMode` with the CPU attention kernel counted; after the forward pass its
    `uncounted` holds the work-like kernels that ran without a FLOP formula."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    class Counter(FlopCounterMode):
        def __init__(self):
            aten = torch.ops.aten
            super().__init__(
                display=False, custom_mapping={aten._scaled_dot_product_flash_attention_for_cpu: _attention_flops}
            )
            self.uncounted: set[str] = set()

        def _count_flops(self, func_packet, out, args, kwargs):  # every kernel that ran undecomposed
            if func_packet not in self.flop_registry and _WORK_KERNEL.search(func_packet.__name__):
                self.uncounted.add(str(func_packet))
            return super()._count_flops(func_packet, out, args, kwargs)

    return Counter()


@contextmanager
def _no_fused_attention():
    """`nn.MultiheadAttention` and `nn.TransformerEncoderLayer` at inference run one fused kernel
    (projections and attention together) that no counter sees into; off, they run as matmuls + SDPA."""
    import torch

    was = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        yield
    finally:
        torch.backends.mha.set_fastpath_enabled(was)


def count(model, image_size: int, batch: int = 1) -> dict:
    """FLOPs and element traffic per image of `model` (eval mode, CPU, fp32) at `image_size`²."""
    import torch

    model = model.eval()
    x = torch.zeros(batch, 3, image_size, image_size)
    counter = flop_counter()
    with torch.inference_mode(), _no_fused_attention(), counter:
        model(x)
    total = counter.get_total_flops()
    by_op = {str(op): n / batch for op, n in counter.get_flop_counts().get("Global", {}).items()}

    params = list(model.parameters()) + list(model.buffers())
    param_ptrs = {p.data_ptr() for p in params}
    traffic = _traffic_counter(param_ptrs)
    with torch.inference_mode(), _no_fused_attention(), traffic:
        model(x)
    param_elements = sum(p.numel() for p in model.parameters())
    return {
        "flops_per_image": total / batch,
        "gflops_per_image": total / batch / 1e9,
        "flops_by_op": by_op,
        "uncounted_ops": sorted(counter.uncounted),
        "param_elements": param_elements,
        "activation_elements_per_image": traffic.fused / batch,
        "activation_elements_unfused_per_image": traffic.unfused / batch,
        "activation_elements_by_op": {k: v / batch for k, v in traffic.by_op.items()},
    }


def count_checkpoint(checkpoint: Path, image_size: int) -> dict:
    """`count` on the trained model of `checkpoint` (its model, stem and class count from its facts)."""
    import torch

    torch.set_num_threads(min(4, torch.get_num_threads()))
    facts = read_facts(checkpoint)
    head = {
        "schema": SCHEMA_VERSION,
        "model": facts.name,
        "stem": facts.stem,
        "num_classes": facts.num_classes,
        "image_size": image_size,
        "flops_per_multiply_add": FLOPS_PER_MULTIPLY_ADD,
    }
    if model_onnx.is_onnx(facts.name):  # a user's ONNX file: counted on its graph
        return {**head, **model_onnx.count(model_onnx.onnx_of(checkpoint), image_size)}
    info = count(load_checkpoint(checkpoint), image_size)
    return {
        **head,
        "counter": (
            "torch.utils.flop_counter.FlopCounterMode + the CPU attention kernel: convolutions (grouped and "
            "depthwise included; nominal, taps on the padding counted), matrix products, attention Q·Kᵀ and A·V; "
            "norms, activations, pooling not counted"
        ),
        "bytes_model": (
            "weights read once per batch + activations of conv/matmul/pool read and written once, "
            "BN/ReLU fused, residual add reads its skip input; elements × the precision's storage size"
        ),
        **info,
    }


def write(checkpoint: Path, image_size: int, out: Path) -> dict:
    info = count_checkpoint(checkpoint, image_size)
    write_json(out, info)
    return info


def bytes_per_image(info: dict, precision: str, batch_size: int) -> float:
    """Estimated bytes moved per image by one batch of `batch_size` in `precision` (see the module doc)."""
    weights = info["param_elements"] * WEIGHT_BYTES.get(precision, 4) / batch_size
    return weights + info["activation_elements_per_image"] * ACTIVATION_BYTES.get(precision, 4)


def cell_metrics(
    info: dict | None,
    probe: dict | None,
    precision: str,
    batch_size: int,
    throughput_img_s: float | None,
) -> dict:
    """The `flops` section of a cell's result.

    achieved TFLOP/s = GFLOP per image × images/s / 1000; utilisation = achieved / the probe's
    measured peak for the precision (`None` where the peak or the throughput is missing).
    """
    out = {
        "gflops_per_image": None,
        "achieved_tflops": None,
        "utilization_pct": None,
        "arithmetic_intensity": None,
        "bytes_per_image": None,
        "peak_tflops": None,
        "peak_precision": None,
        "bandwidth_gb_s": None,
        "note": None,
    }
    notes = []
    if info is None:
        notes.append("no FLOP count for this model and size")
    else:
        gflops = info["gflops_per_image"]
        moved = bytes_per_image(info, precision, batch_size)
        out.update(
            gflops_per_image=gflops,
            bytes_per_image=moved,
            arithmetic_intensity=gflops * 1e9 / moved if moved > 0 else None,
        )
        if throughput_img_s:
            out["achieved_tflops"] = gflops * throughput_img_s / 1000
    peak, peak_precision, why = peak_for(probe, precision)
    out["peak_tflops"], out["peak_precision"] = peak, peak_precision
    if probe:
        out["bandwidth_gb_s"] = probe.get("bandwidth_gb_s")
    if why:
        notes.append(why)
    if out["achieved_tflops"] is not None and peak:
        out["utilization_pct"] = 100 * out["achieved_tflops"] / peak
    out["note"] = "; ".join(notes) or None
    return out


def add_parser(sub) -> None:
    """`infbench flops`."""
    s = sub.add_parser("flops", help="checkpoint → FLOPs and bytes moved per image at one image size")
    paths(s, "--checkpoint", "--out")
    s.add_argument("--size", type=int, required=True)
    s.set_defaults(func=_command)


def _command(a) -> None:
    info = write(a.checkpoint, a.size, a.out)
    print(
        f"{info['model']} at {a.size}x{a.size}: {info['gflops_per_image']:.4f} GFLOP per image, "
        f"{info['param_elements']} parameters, {info['activation_elements_per_image']:.0f} activation elements moved"
    )
    if info["uncounted_ops"]:
        print(f"warning: kernels with no FLOP formula, left out of the count: {', '.join(info['uncounted_ops'])}")
