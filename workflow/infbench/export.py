"""Checkpoint → ONNX with dynamic batch and spatial dimensions, checked and parity-tested."""

from __future__ import annotations

from pathlib import Path

from infbench import data, reference
from infbench import model as model_lib
from infbench.arguments import paths
from infbench.io import atomic_path


class ParityError(RuntimeError):
    pass


def export_onnx(
    checkpoint: Path, out: Path, dataset: Path, image_size: int, opset: int, parity_images: int, atol: float
) -> dict:
    import onnx
    import torch

    net = model_lib.load_checkpoint(checkpoint)
    dummy = torch.zeros(2, 3, image_size, image_size)
    with atomic_path(out) as tmp:
        torch.onnx.export(
            net,
            (dummy,),
            str(tmp),
            input_names=["input"],
            output_names=["logits"],
            opset_version=opset,
            dynamic_axes={"input": {0: "batch", 2: "height", 3: "width"}, "logits": {0: "batch"}},
            dynamo=False,
        )
        onnx.checker.check_model(str(tmp), full_check=True)
        report = parity(net, tmp, dataset, image_size, parity_images)
        print(
            f"parity on {report['images']} test images at {image_size}x{image_size}: "
            f"max |Δ logits| = {report['max_abs_logit_diff']:.3e} (allowed {atol:.0e}), "
            f"top-1 agreement = {report['top1_agreement']:.4f}",
            flush=True,
        )
        if not report["max_abs_logit_diff"] <= atol:
            raise ParityError(
                f"ONNX export disagrees with PyTorch: max |Δ logits| = {report['max_abs_logit_diff']:.3e} "
                f"> {atol:.0e} on {report['images']} test images (top-1 agreement {report['top1_agreement']:.4f})"
            )
    return report


def parity(net, onnx_path: Path, dataset: Path, image_size: int, images: int) -> dict:
    """Max |Δ logits| and top-1 agreement between PyTorch and ONNX Runtime (CPU) on real test images."""
    import onnxruntime as ort

    x_img, _ = data.load_split(dataset, "test")
    x = data.to_input(x_img[:images], image_size)
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    return reference.agreement(sess.run(None, {"input": x})[0], model_lib.logits(net, x, len(x)))


def add_parser(sub) -> None:
    """`infbench export-onnx`."""
    s = sub.add_parser("export-onnx", help="checkpoint → ONNX (dynamic shapes), checked against PyTorch")
    paths(s, "--checkpoint", "--dataset", "--out")
    s.add_argument("--image-size", type=int, default=32)
    s.add_argument("--opset", type=int, default=17)
    s.add_argument("--parity-images", type=int, default=64)
    s.add_argument("--atol", type=float, default=1e-4)
    s.set_defaults(func=_command)


def _command(a) -> None:
    export_onnx(a.checkpoint, a.out, a.dataset, a.image_size, a.opset, a.parity_images, a.atol)
