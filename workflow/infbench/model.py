"""The classifier: torchvision ResNet-18 with 10 classes, ImageNet or CIFAR-style stem."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def build(arch: str = "resnet18", num_classes: int = 10, stem: str = "imagenet"):
    import torch.nn as nn
    import torchvision

    if arch != "resnet18":
        raise ValueError(f"unknown model arch '{arch}' (supported: resnet18)")
    model = torchvision.models.resnet18(weights=None, num_classes=num_classes)
    if stem == "cifar":
        # 3×3 stride-1 first convolution and no max-pool: keeps 32×32 inputs from shrinking to 1×1.
        model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    elif stem != "imagenet":
        raise ValueError(f"unknown stem '{stem}' (choose imagenet or cifar)")
    return model


def load_checkpoint(path: Path):
    """The trained model in eval mode, from a checkpoint written by `infbench train`."""
    import torch

    from infbench.backends.base import check_artifact
    from infbench.integrity import DamagedInput

    check_artifact(path, "train")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        model = build(ckpt["arch"], ckpt["num_classes"], ckpt["stem"])
        model.load_state_dict(ckpt["state_dict"])
    except Exception as exc:  # torch raises several types for a damaged zip/pickle
        raise DamagedInput(path, "train", f"torch cannot load the checkpoint: {exc}") from exc
    return model.eval()


def logits(model, x: np.ndarray, batch: int) -> np.ndarray:
    """A PyTorch model's logits of the float32 NCHW array `x` on the CPU, `batch` images at a time."""
    import torch

    with torch.inference_mode():
        return np.concatenate([model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)])
