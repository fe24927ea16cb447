"""The training recipe a model gets by default (`train.optimizer: auto`): the optimizer of its family and that
optimizer's lr and weight decay. Resolved where the config is read (study/grid.py: the train job is given and
hashed by it) and where training runs (stages/train.py)."""

from __future__ import annotations

from infbench.stages import model as model_lib

# The default optimizer per family (`train.optimizer: auto`) and each optimizer's default lr and weight
# decay: SGD with Nesterov momentum for the ResNets, AdamW for the others (MobileNet, EfficientNet,
# RegNet, ConvNeXt, ViT learn far better with it from scratch); ViTs a lower peak lr.
SGD_FAMILIES = ("resnet", "resnext", "wide_resnet")
RECIPES = {"sgd": {"lr": 0.05, "weight_decay": 0.0005}, "adamw": {"lr": 0.002, "weight_decay": 0.05}}
VIT_ADAMW_LR = 0.001


def recipe(model: str, optimizer: str = "auto", lr: float | None = None, weight_decay: float | None = None):
    """(optimizer, lr, weight_decay) of `model`: those given, the family's default for the rest."""
    if optimizer in (None, "auto"):
        optimizer = "sgd" if model.startswith(SGD_FAMILIES) else "adamw"
    defaults = dict(RECIPES[optimizer])
    if optimizer == "adamw" and model_lib.fixed_size_family(model):
        defaults["lr"] = VIT_ADAMW_LR
    return (
        optimizer,
        defaults["lr"] if lr is None else lr,
        defaults["weight_decay"] if weight_decay is None else weight_decay,
    )
