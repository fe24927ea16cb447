"""A Hugging Face image classifier from a local folder: `model: {name: hf:path/to/folder}`.

The folder is what `save_pretrained` writes (config.json, the weights, the image processor's
preprocessor_config.json). transformers' `AutoModelForImageClassification` reads it with
`local_files_only` (never the network); its processor's mean, std and size are the model's facts.
The module every stage sees is `HFClassifier`, which returns the logits tensor (transformers returns
an output object), so training, export, quantisation and every backend treat it as any other model.
transformers is an optional extra (pip install -e '.[hf]').
"""

from __future__ import annotations

import functools
from pathlib import Path

from infbench.stages.model_error import ModelError

HF_PREFIX = "hf:"
HF_INSTALL = "pip install transformers (or pip install -e '.[hf]')"


def is_hf(name: str) -> bool:
    return name.startswith(HF_PREFIX)


def folder(name: str) -> Path:
    return Path(name.removeprefix(HF_PREFIX))


def _transformers():
    try:
        import transformers
    except ImportError:
        raise ModelError(f"transformers is not installed, needed for hf: models; {HF_INSTALL}") from None
    transformers.logging.set_verbosity_error()  # the head re-initialised is said by infbench, once
    return transformers


def check(name: str) -> None:
    """A ModelError naming the fix unless `name`'s folder holds a saved image classifier."""
    where = folder(name)
    if not (where / "config.json").is_file():
        raise ModelError(
            f"model.name: {name}: {where} has no config.json; save your model there with "
            "model.save_pretrained(folder) and its image processor with processor.save_pretrained(folder)"
        )
    config = _config(str(where))
    if not any(a.endswith("ForImageClassification") for a in (config.architectures or [])):
        archs = ", ".join(config.architectures or []) or "none"
        raise ModelError(
            f"model.name: {name} is a {config.model_type} model ({archs}), not an image classifier; save an "
            "AutoModelForImageClassification model there"
        )


@functools.cache
def _config(path: str):
    return _transformers().AutoConfig.from_pretrained(path, local_files_only=True)


@functools.cache
def processor_facts(name: str) -> dict:
    """The image processor's mean, std and size (the side of its resize, or of the config's image_size)."""
    t = _transformers()
    try:
        proc = t.AutoImageProcessor.from_pretrained(str(folder(name)), local_files_only=True)
    except (OSError, ValueError):
        proc = None
    size = getattr(proc, "size", None)
    size = dict(size) if isinstance(size, dict) else vars(size) if size is not None else {}  # transformers 5: SizeDict
    side = size.get("height") or size.get("shortest_edge")
    return {
        "mean": tuple(getattr(proc, "image_mean", None) or ()),
        "std": tuple(getattr(proc, "image_std", None) or ()),
        "size": side or getattr(_config(str(folder(name))), "image_size", None),
        "processor": type(proc).__name__ if proc is not None else None,
    }


def size_hint(name: str) -> str:
    """' (its image processor's: N)', where the processor names the size the model was made for."""
    size = processor_facts(name)["size"]
    return f" (its image processor's: {size})" if size else ""


def _module_class():
    import torch.nn as nn

    class HFClassifier(nn.Module):
        """A transformers image classifier that returns its logits (a tensor, as the other stages expect)."""

        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(pixel_values=x).logits

    return HFClassifier


def build(name: str, num_classes: int):
    """The folder's architecture, untrained, with a `num_classes` head."""
    t = _transformers()
    config = t.AutoConfig.from_pretrained(str(folder(name)), local_files_only=True, num_labels=num_classes)
    return _module_class()(t.AutoModelForImageClassification.from_config(config))


def pretrained(name: str, num_classes: int):
    """(the folder's model with its weights, whether its head was replaced for `num_classes`)."""
    t = _transformers()
    head_replaced = _config(str(folder(name))).num_labels != num_classes
    model = t.AutoModelForImageClassification.from_pretrained(
        str(folder(name)), local_files_only=True, num_labels=num_classes, ignore_mismatched_sizes=True
    )
    return _module_class()(model), head_replaced


def config_digest(name: str) -> str:
    """The folder's config.json's sha256: what the answers about its shapes are cached by."""
    import hashlib

    return hashlib.sha256((folder(name) / "config.json").read_bytes()).hexdigest()[:16]


def files(name: str) -> list[str]:
    """The folder's files that make the model (the train rule's inputs: a changed file retrains)."""
    return sorted(str(p) for p in folder(name).iterdir() if p.is_file() and not p.name.startswith("."))
