"""Train (from scratch), fine-tune (from weights or the user's checkpoint) or only evaluate (`epochs: 0`)
the configured classifier on the prepared dataset: seeded, a line per epoch, atomic outputs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from infbench.core import cpus
from infbench.core.arguments import paths, schema_default
from infbench.core.io import write_json
from infbench.stages import data
from infbench.stages import model as model_lib
from infbench.stages.recipe import recipe

# A test accuracy below this multiple of chance (1 / classes) means the model did not learn.
NEAR_CHANCE = 1.5
# Test accuracy a trained model reaches on the dataset with the default recipe (ResNet-18, 6 epochs, 32 px:
# 0.9725 on the digits, docs/h100/README.md). A model that ends below halfway from chance to it was not
# trained by the recipe, whatever its size: its INT8 "costs" compare an untrained model.
TRAINED_ACCURACY = {"digits": 0.97}

UNDERTRAINED = "its INT8 and precision costs compare an undertrained model (set train: optimizer, lr, epochs for it)"


def far_below_trained(test_accuracy: float, chance: float, dataset_name: str | None) -> str | None:
    """Why `test_accuracy` is far below a trained model's on the dataset (below halfway from chance to
    TRAINED_ACCURACY), or None."""
    trained = TRAINED_ACCURACY.get(dataset_name)
    if trained is None or test_accuracy >= (chance + trained) / 2:
        return None
    return (
        f"test accuracy {test_accuracy:.3f} is far below the {trained:.2f} a trained model reaches on the "
        f"{dataset_name} with the default recipe"
    )


def batches(n: int, batch_size: int) -> list[slice]:
    """The training batches of `n` images: a last batch of one image joins the one before (BatchNorm cannot
    train on a single image)."""
    starts = list(range(0, n, batch_size))
    if len(starts) > 1 and n - starts[-1] == 1:
        starts.pop()
    return [slice(a, b) for a, b in zip(starts, [*starts[1:], n], strict=True)]


def evaluate(net, images: np.ndarray, labels: np.ndarray, size: int, norm, batch: int = 256) -> float:
    import torch

    correct = 0
    with torch.inference_mode():
        for i in range(0, len(images), batch):
            x = torch.from_numpy(data.to_input(images[i : i + batch], size, norm))
            correct += int((net(x).argmax(1).numpy() == labels[i : i + batch]).sum())
    return correct / len(images)


def _epoch(net, opt, sched, x_all, y_all, order, batch_size: int) -> tuple[float, int]:
    """One pass over the training images in `order`: (the epoch's mean loss per image, images classified right)."""
    import torch

    net.train()
    correct, loss_sum = 0, 0.0
    for part in batches(len(order), batch_size):
        idx = order[part]
        logits = net(x_all[idx])
        loss = torch.nn.functional.cross_entropy(logits, y_all[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        correct += int((logits.argmax(1) == y_all[idx]).sum())
        loss_sum += loss.item() * len(idx)
    net.eval()
    return loss_sum / len(order), correct


OPTIMIZERS = ("auto", "sgd", "adamw")


def recalibrate_batchnorm(net, x_all, batch_size: int) -> None:
    """BatchNorm's running statistics recomputed over the training images with the final weights (a
    cumulative average): families with a slow momentum (MobileNet-V3 0.01, MNASNet 0.0003) otherwise
    evaluate with statistics still near their initial ones after a short training, at chance."""
    import torch

    norms = [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    net.train()
    with torch.no_grad():
        for part in batches(len(x_all), batch_size):
            net(x_all[part])
    for m, momentum in zip(norms, momenta, strict=True):
        m.momentum = momentum
    net.eval()


def optimiser(name: str, net, lr: float, weight_decay: float):
    """SGD with Nesterov momentum (ResNets), or AdamW (EfficientNet, MobileNet, ConvNeXt and ViT train
    far better with it from scratch); either under the one-cycle schedule."""
    import torch

    if name == "adamw":
        return torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=weight_decay)
    return torch.optim.SGD(net.parameters(), lr=lr, momentum=0.9, weight_decay=weight_decay, nesterov=True)


def train(
    dataset: Path,
    checkpoint: Path,
    metrics: Path,
    model: str,
    stem: str,
    epochs: int,
    batch_size: int,
    lr: float,
    weight_decay: float,
    seed: int,
    threads: int,
    image_size: int,
    weights: str | None = None,
    source_checkpoint: Path | None = None,
    trust_checkpoint: bool = False,
    optimizer: str = "auto",
    mean: list[float] | None = None,
    std: list[float] | None = None,
    dataset_name: str | None = None,
) -> dict:
    import torch

    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    optimizer, lr, weight_decay = recipe(model, optimizer, lr, weight_decay)
    classes = data.class_names(dataset)
    mean, std = model_lib.normalisation(model, weights, mean, std)
    facts = model_lib.Facts(
        model,
        len(classes),
        stem,
        image_size,
        mean,
        std,
        model_lib.build_size_for(model, image_size, weights),
        **{k: v for k, v in model_lib.pretrained_facts(model, weights).items() if k != "build_size"},
    )
    norm = (facts.mean, facts.std)
    net, origin, head_replaced = model_lib.initial(facts, weights, source_checkpoint, trust_checkpoint)
    if epochs == 0 and not (weights or source_checkpoint):
        raise model_lib.ModelError("train.epochs: 0 (evaluate only) needs model.weights or model.checkpoint")
    verb = "train" if origin == "from scratch" else "fine-tune"
    action = f"{verb} {epochs} epochs ({optimizer}, lr {lr:g})" if epochs else "evaluate only, no training"
    replaced = ", classifier head replaced" if head_replaced else ""
    print(f"{model} ({len(classes)} classes) {origin}: {action}{replaced}", flush=True)
    test_x, test_y = data.load_split(dataset, "test")
    history = []
    if epochs:
        train_x, train_y = data.load_split(dataset, "train")
        opt = optimiser(optimizer, net, lr, weight_decay)
        steps = epochs * len(batches(len(train_x), batch_size))
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.25)
        x_all = torch.from_numpy(data.to_input(train_x, image_size, norm))
        y_all = torch.from_numpy(train_y)
        gen = torch.Generator().manual_seed(seed)
        for epoch in range(1, epochs + 1):
            start = time.perf_counter()
            order = torch.randperm(len(x_all), generator=gen)
            loss, correct = _epoch(net, opt, sched, x_all, y_all, order, batch_size)
            test_acc = evaluate(net, test_x, test_y, image_size, norm)
            row = {
                "epoch": epoch,
                "loss": loss,
                "train_accuracy": correct / len(x_all),
                "test_accuracy": test_acc,
                "seconds": round(time.perf_counter() - start, 2),
            }
            history.append(row)
            print(
                f"epoch {epoch}/{epochs}: mean loss {row['loss']:.4f}, train acc {row['train_accuracy']:.4f}, "
                f"test acc {test_acc:.4f} ({row['seconds']} s)",
                flush=True,
            )
        recalibrate_batchnorm(net, x_all, batch_size)
    test_accuracy = evaluate(net.eval(), test_x, test_y, image_size, norm)
    chance = 1 / len(classes)
    warnings = []
    if head_replaced and not epochs:
        warnings.append(
            "the classifier head was replaced and not trained (train.epochs: 0): accuracy figures compare nothing; "
            "speed and agreement with fp32 still stand"
        )
    elif test_accuracy < NEAR_CHANCE * chance:
        stem_hint = (
            " (try model.stem: cifar, the small-image stem of this family)"
            if stem == "imagenet" and model_lib.stem_family(model)
            else ""
        )
        warnings.append(
            f"test accuracy {test_accuracy:.3f} is near chance ({chance:.3f}): the model did not learn; its accuracy "
            f"figures compare nothing, speed still stands{stem_hint}"
        )
    elif epochs and (far := far_below_trained(test_accuracy, chance, dataset_name)):
        how = f"{optimizer}, lr {lr:g}, {epochs} epochs"
        warnings.append(f"{far}: {model} did not train well with {how}; {UNDERTRAINED}")
    for w in warnings:
        print(f"WARNING: {model}: {w}", flush=True)
    model_lib.save(checkpoint, net, facts)
    result = {
        "model": model,
        "origin": origin,
        "trained_epochs": epochs,
        "head_replaced": head_replaced,
        "classes": classes,
        "chance_accuracy": chance,
        "warnings": warnings,
        "test_accuracy": test_accuracy,
        "epochs": history,
        "test_images": len(test_x),
    }
    write_json(metrics, result)
    return result


def add_parser(sub) -> None:
    """`infbench train`."""
    s = sub.add_parser("train", help="train / fine-tune / evaluate the classifier → checkpoint + metrics")
    paths(s, "--dataset", "--checkpoint", "--metrics")
    s.add_argument("--model", required=True, help="a torchvision model name or timm:<name>")
    s.add_argument("--stem", default=schema_default("model.stem"), choices=["imagenet", "cifar"])
    s.add_argument("--weights", default=None, help="torchvision weights name (DEFAULT, IMAGENET1K_V1, …)")
    s.add_argument("--from-checkpoint", type=Path, default=None, help="the user's state_dict or module file")
    s.add_argument("--trust-checkpoint", action="store_true", help="allow unpickling a whole module")
    s.add_argument(
        "--epochs",
        type=int,
        default=schema_default("train.epochs"),
        help="0: evaluate only (needs weights or a checkpoint)",
    )
    s.add_argument("--batch-size", type=int, default=schema_default("train.batch_size"))
    s.add_argument("--optimizer", default=schema_default("train.optimizer"), choices=OPTIMIZERS)
    s.add_argument("--lr", type=float, default=None, help="default: the optimizer's (recipe)")
    s.add_argument("--weight-decay", type=float, default=None, help="default: the optimizer's (recipe)")
    s.add_argument("--mean", type=float, nargs="+", default=None, help="input normalisation; default: the model's")
    s.add_argument("--std", type=float, nargs="+", default=None, help="input normalisation; default: the model's")
    s.add_argument("--dataset-name", default=None, help="digits, cifar10, imagefolder: for the accuracy check")
    s.add_argument("--seed", type=int, default=schema_default("train.seed"))
    s.add_argument("--threads", type=int, default=0, help="0: every CPU the job may use (its {threads})")
    s.add_argument("--image-size", type=int, default=schema_default("train.image_size"))
    s.set_defaults(func=_command)


def _command(a) -> None:
    result = train(
        a.dataset,
        a.checkpoint,
        a.metrics,
        a.model,
        a.stem,
        a.epochs,
        a.batch_size,
        a.lr,
        a.weight_decay,
        a.seed,
        cpus.threads(a.threads),
        a.image_size,
        a.weights,
        a.from_checkpoint,
        a.trust_checkpoint,
        a.optimizer,
        a.mean,
        a.std,
        a.dataset_name,
    )
    print(f"final test accuracy {result['test_accuracy']:.4f}")
