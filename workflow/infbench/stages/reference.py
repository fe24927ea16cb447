"""The fp32 reference of the agreement check: inputs and logits of the first test images, per size.

Computed once per image size (rule reference_logits) with PyTorch fp32 on the CPU, so that no cell
loads a second model (its host memory is its backend's alone) and every cell of a size is held
against the same logits. The inputs are stored at the cell's size too: a cell needs neither the
dataset nor the resize code (which imports PyTorch) to get its batches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infbench.core.arguments import paths
from infbench.core.io import atomic_path
from infbench.stages import data, model


def cycled(array: np.ndarray, n: int) -> np.ndarray:
    """The first `n` rows of `array`, from its start again where it holds fewer. The reference holds
    `bench.agreement_images` images whatever the batch sizes (a batch size added reruns no other cell);
    a batch, or the whole batches of the agreement check, larger than that repeats them."""
    return array[np.arange(n) % len(array)]


def agreement(logits: np.ndarray, reference: np.ndarray) -> dict:
    """Top-1 agreement and max |Δ logits| of `logits` against the fp32 `reference` logits of the same
    images: the one comparison of the export's parity check, the cells and the accuracy jobs."""
    finite = np.isfinite(logits).all()
    return {
        "images": len(reference),
        "top1_agreement": float((logits.argmax(1) == reference.argmax(1)).mean()),
        "max_abs_logit_diff": float(np.abs(logits - reference).max()) if finite else float("inf"),
    }


def write(checkpoint: Path, dataset: Path, size: int, images: int, out: Path) -> int:
    test_x, _ = data.load_split(Path(dataset), "test")
    x = data.to_input(test_x[np.arange(images) % len(test_x)], size, model.input_norm(checkpoint))
    logits = model.logits(model.load_checkpoint(checkpoint), x, 32)
    with atomic_path(out) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, images=x, logits=logits.astype(np.float32))
    return len(x)


def load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, logits); a missing or damaged file is named with the rule that rebuilds it."""
    try:
        with np.load(path) as f:
            return f["images"], f["logits"]
    except FileNotFoundError:
        raise FileNotFoundError(
            f"reference file {path} is missing; rebuild it with the rule 'reference_logits'"
        ) from None
    except Exception as exc:
        raise ValueError(
            f"reference file {path} is corrupt ({type(exc).__name__}: {exc}); delete it and rerun the rule "
            "'reference_logits'"
        ) from exc


def add_parser(sub) -> None:
    """`infbench reference`."""
    s = sub.add_parser("reference", help="checkpoint → fp32 logits of the first test images (agreement reference)")
    paths(s, "--checkpoint", "--dataset", "--out")
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--images", type=int, required=True)
    s.set_defaults(func=_command)


def _command(a) -> None:
    n = write(a.checkpoint, a.dataset, a.size, a.images, a.out)
    print(f"fp32 reference logits of {n} test images at {a.size}x{a.size} → {a.out}")
