"""Checkpoint → ONNX with dynamic batch and spatial dimensions, checked and parity-tested."""

from __future__ import annotations

from pathlib import Path

from infbench.core.arguments import paths, schema_default
from infbench.core.io import atomic_path
from infbench.stages import data, reference
from infbench.stages import model as model_lib
from infbench.stages.model_onnx import stamp_norm


class ParityError(RuntimeError):
    pass


# The exported graph's one input (float32 NCHW images) and one output; every reader asks the graph.
ONNX_INPUT, ONNX_OUTPUT = "input", "logits"


def export_onnx(
    checkpoint: Path, out: Path, dataset: Path, image_size: int, opset: int, parity_images: int, atol: float
) -> dict:
    import onnx
    import torch

    net = model_lib.load_checkpoint(checkpoint)
    norm = model_lib.input_norm(checkpoint)
    dummy = torch.zeros(2, 3, image_size, image_size)
    with atomic_path(out) as tmp:
        torch.onnx.export(
            net,
            (dummy,),
            str(tmp),
            input_names=[ONNX_INPUT],
            output_names=[ONNX_OUTPUT],
            opset_version=opset,
            dynamic_axes={ONNX_INPUT: {0: "batch", 2: "height", 3: "width"}, ONNX_OUTPUT: {0: "batch"}},
            dynamo=False,
        )
        onnx.checker.check_model(str(tmp), full_check=True)
        stamp_norm(tmp, norm)
        report = parity(net, tmp, dataset, image_size, parity_images, norm)
        # Relative to the logits' scale: a model whose logits are in the hundreds differs from ONNX
        # Runtime by more than 1e-4 in absolute terms from float rounding alone.
        allowed = atol * max(1.0, report["logit_scale"])
        print(
            f"parity on {report['images']} test images at {image_size}x{image_size}: "
            f"max |Δ logits| = {report['max_abs_logit_diff']:.3e} (allowed {atol:.0e} × max(1, max |logit| "
            f"{report['logit_scale']:.3g}) = {allowed:.2e}), top-1 agreement = {report['top1_agreement']:.4f}",
            flush=True,
        )
        if not report["max_abs_logit_diff"] <= allowed:
            raise ParityError(
                f"ONNX export disagrees with PyTorch: max |Δ logits| = {report['max_abs_logit_diff']:.3e} "
                f"> {allowed:.2e} on {report['images']} test images (top-1 agreement {report['top1_agreement']:.4f})"
            )
    return report


def parity(net, onnx_path: Path, dataset: Path, image_size: int, images: int, norm) -> dict:
    """Max |Δ logits|, the logits' scale (max |logit|) and top-1 agreement between PyTorch and ONNX
    Runtime (CPU) on real test images."""
    import onnxruntime as ort

    x_img, _ = data.load_split(dataset, "test")
    x = data.to_input(x_img[:images], image_size, norm)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    torch_logits = model_lib.logits(net, x, len(x))
    report = reference.agreement(sess.run(None, {ONNX_INPUT: x})[0], torch_logits)
    return {**report, "logit_scale": float(abs(torch_logits).max())}


def add_parser(sub) -> None:
    """`infbench export-onnx`."""
    s = sub.add_parser("export-onnx", help="checkpoint → ONNX (dynamic shapes), checked against PyTorch")
    paths(s, "--checkpoint", "--dataset", "--out")
    s.add_argument("--image-size", type=int, default=schema_default("train.image_size"))
    s.add_argument("--opset", type=int, default=schema_default("export.opset"))
    s.add_argument("--parity-images", type=int, default=schema_default("export.parity_images"))
    s.add_argument(
        "--atol",
        type=float,
        default=schema_default("export.atol", float),
        help="allowed max |Δ logits| per unit of max |logit|",
    )
    s.set_defaults(func=_command)


def _command(a) -> None:
    export_onnx(a.checkpoint, a.out, a.dataset, a.image_size, a.opset, a.parity_images, a.atol)
