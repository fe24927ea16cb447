"""Train ResNet-18 on the prepared dataset: seeded, a progress line per epoch, atomic outputs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from infbench import data
from infbench import model as model_lib
from infbench.arguments import paths
from infbench.io import atomic_path, write_json


def evaluate(net, images: np.ndarray, labels: np.ndarray, size: int, batch: int = 256) -> float:
    import torch

    correct = 0
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(data.to_input(images[i : i + batch], size))
            correct += int((net(x).argmax(1).numpy() == labels[i : i + batch]).sum())
    return correct / len(images)


def _epoch(net, opt, sched, x_all, y_all, order, batch_size: int) -> tuple[float, int]:
    """One pass over the training images in `order`: (the last batch's loss, images classified right)."""
    import torch

    net.train()
    correct = 0
    for i in range(0, len(order), batch_size):
        idx = order[i : i + batch_size]
        logits = net(x_all[idx])
        loss = torch.nn.functional.cross_entropy(logits, y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        correct += int((logits.argmax(1) == y_all[idx]).sum())
    net.eval()
    return loss.item(), correct


def train(
    dataset: Path,
    checkpoint: Path,
    metrics: Path,
    arch: str,
    stem: str,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    threads: int,
    image_size: int,
) -> dict:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    train_x, train_y = data.load_split(dataset, "train")
    test_x, test_y = data.load_split(dataset, "test")
    net = model_lib.build(arch, 10, stem)
    opt = torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)
    steps = epochs * ((len(train_x) + batch_size - 1) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.25)
    x_all = torch.from_numpy(data.to_input(train_x, image_size))
    y_all = torch.from_numpy(train_y)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        loss, correct = _epoch(net, opt, sched, x_all, y_all, torch.randperm(len(x_all), generator=gen), batch_size)
        test_acc = evaluate(net, test_x, test_y, image_size)
        row = {
            "epoch": epoch,
            "loss": loss,
            "train_accuracy": correct / len(x_all),
            "test_accuracy": test_acc,
            "seconds": round(time.perf_counter() - start, 2),
        }
        history.append(row)
        print(
            f"epoch {epoch}/{epochs}: loss {row['loss']:.4f}, train acc {row['train_accuracy']:.4f}, "
            f"test acc {test_acc:.4f} ({row['seconds']} s)",
            flush=True,
        )
    with atomic_path(checkpoint) as tmp:
        torch.save(
            {"arch": arch, "stem": stem, "num_classes": 10, "image_size": image_size, "state_dict": net.state_dict()},
            tmp,
        )
    result = {
        "test_accuracy": history[-1]["test_accuracy"],
        "epochs": history,
        "train_images": len(train_x),
        "test_images": len(test_x),
    }
    write_json(metrics, result)
    return result


def add_parser(sub) -> None:
    """`infbench train`."""
    s = sub.add_parser("train", help="train ResNet-18 → checkpoint + metrics")
    paths(s, "--dataset", "--checkpoint", "--metrics")
    s.add_argument("--arch", default="resnet18")
    s.add_argument("--stem", default="imagenet", choices=["imagenet", "cifar"])
    s.add_argument("--epochs", type=int, default=6)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--lr", type=float, default=0.05)
    s.add_argument("--weight-decay", type=float, default=5e-4)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=os.cpu_count())
    s.add_argument("--image-size", type=int, default=32)
    s.set_defaults(func=_command)


def _command(a) -> None:
    result = train(
        a.dataset,
        a.checkpoint,
        a.metrics,
        a.arch,
        a.stem,
        a.epochs,
        a.batch_size,
        a.lr,
        a.weight_decay,
        a.seed,
        a.threads,
        a.image_size,
    )
    print(f"final test accuracy {result['test_accuracy']:.4f}")
