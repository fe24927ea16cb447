"""The model zoo: a config name → an architecture, its weights and the facts later stages need.

`model.name` is any classification model torchvision lists (`torchvision.models.list_models`) or
`timm:<name>` for timm's (an optional extra). Everything model-specific lives here, in one place:
how the name resolves, how the classifier head is replaced, the small-image stem adaptations, the
input normalisation, which input sizes the architecture accepts (probed on the meta device: shapes
only, no arithmetic), and how a user's weights or checkpoint are read. A checkpoint written by
`infbench train` carries the facts (`Facts`), so no later stage needs the config to rebuild it.
"""

from __future__ import annotations

import difflib
import functools
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from infbench.core.integrity import DamagedInput
from infbench.core.io import atomic_path, check_artifact
from infbench.core.parse_cache import cached
from infbench.stages import model_hf
from infbench.stages.model_error import ModelError

TIMM_PREFIX = "timm:"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TIMM_INSTALL = "pip install timm (or pip install -e '.[timm]')"

# Small-image stem adaptations, per family (name prefixes): keep a 32-px input from shrinking to
# nothing before the network has seen it. ResNets: 3×3 stride-1 first convolution, no max-pool
# (the CIFAR ResNet). MobileNet/EfficientNet/MNASNet: the first convolution's stride 2 → 1.
CIFAR_STEM_FAMILIES = {
    "resnet": ("resnet", "resnext", "wide_resnet"),
    "first-stride": ("mobilenet_v2", "mobilenet_v3", "efficientnet", "mnasnet"),
}


@dataclass(frozen=True)
class Facts:
    """What every stage needs to know about a model, carried in its checkpoint."""

    name: str  # as in the config: resnet18, timm:convnext_atto
    num_classes: int
    stem: str = "imagenet"
    image_size: int = 32  # the training / evaluation resolution
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    build_size: int | None = None  # the size passed to constructors of fixed-size models (ViT)
    transform_input: bool = False  # Inception/GoogLeNet with torchvision's weights: their builder's input remap


# ---------------------------------------------------------------------------------------------- names


def is_timm(name: str) -> bool:
    return name.startswith(TIMM_PREFIX)


def slug(name: str) -> str:
    """A safe folder and wildcard form of a model name (`timm:<name>` holds a colon, some names dots)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "-", name).replace("..", "-")


def _timm():
    try:
        import timm
    except ImportError:
        raise ModelError(f"timm is not installed, needed for timm: models; {TIMM_INSTALL}") from None
    return timm


@functools.cache  # on disk too: the workflow asks at parse time, and torchvision's import is seconds
def torchvision_names() -> tuple[str, ...]:
    def listed():
        import torchvision

        return list(torchvision.models.list_models(module=torchvision.models))

    return tuple(cached(__file__, "torchvision_names", listed))


def check_name(name: str) -> None:
    """Raise ModelError (with the closest names) unless `name` is a model the zoo knows."""
    if model_hf.is_hf(name):
        return model_hf.check(name)
    if is_timm(name):
        timm = _timm()
        arch = name.removeprefix(TIMM_PREFIX)
        if not timm.is_model(arch.split(".")[0]):
            close = difflib.get_close_matches(arch, timm.list_models(), n=3)
            hint = f"; closest: {', '.join(TIMM_PREFIX + c for c in close)}" if close else ""
            raise ModelError(f"model.name: timm has no model '{arch}'{hint} (timm.list_models() lists them)")
        return
    known = torchvision_names()
    if name not in known:
        close = difflib.get_close_matches(name, known, n=3)
        hint = f"; closest: {', '.join(close)}" if close else ""
        raise ModelError(
            f"model.name: unknown model '{name}'{hint} (any of torchvision.models.list_models(), "
            f"or timm:<name> for timm's)"
        )


def stem_family(name: str) -> str | None:
    """The small-image stem adaptation this model has (a key of CIFAR_STEM_FAMILIES), or None."""
    if is_timm(name) or model_hf.is_hf(name):
        return None
    return next((fam for fam, prefixes in CIFAR_STEM_FAMILIES.items() if name.startswith(prefixes)), None)


def check_stem(name: str, stem: str) -> None:
    if stem == "cifar" and stem_family(name) is None:
        families = ", ".join(p for prefixes in CIFAR_STEM_FAMILIES.values() for p in prefixes)
        raise ModelError(
            f"model.stem: cifar: {name} has no small-image stem adaptation (families that have one: {families}); "
            "use stem: imagenet"
        )


# -------------------------------------------------------------------------------------- architecture


def _constructor_kwargs(name: str, num_classes: int, build_size: int | None) -> dict:
    kwargs = {"num_classes": num_classes}
    if build_size is not None:
        kwargs["img_size" if is_timm(name) else "image_size"] = build_size
    return kwargs


def fixed_size_family(name: str) -> bool:
    """Whether the architecture is built for one input size (positional embeddings): ViT and kin."""
    if model_hf.is_hf(name):  # the folder's config fixes it; the sizes it refuses are dropped
        return True
    if is_timm(name):
        arch = name.removeprefix(TIMM_PREFIX).split(".")[0]
        return bool(_timm().models.get_pretrained_cfg_value(arch, "fixed_input_size"))
    return name.startswith("vit_")


def build(
    name: str, num_classes: int, stem: str = "imagenet", build_size: int | None = None, transform_input: bool = False
):
    """The untrained architecture with a `num_classes` head (and the small-image stem if asked)."""
    check_name(name)
    check_stem(name, stem)
    if model_hf.is_hf(name):
        return model_hf.build(name, num_classes)
    kwargs = _constructor_kwargs(name, num_classes, build_size)
    if is_timm(name):
        model = _timm().create_model(name.removeprefix(TIMM_PREFIX), pretrained=False, **kwargs)
    else:
        import torchvision

        if has_aux_heads(name):  # no auxiliary heads at inference
            kwargs.update(aux_logits=False, init_weights=True, transform_input=transform_input)
        model = torchvision.models.get_model(name, weights=None, **kwargs)
    if stem == "cifar":
        _cifar_stem(model, stem_family(name))
    return model


def has_aux_heads(name: str) -> bool:
    """torchvision's Inception-v3 and GoogLeNet: auxiliary heads in training, `transform_input` with weights."""
    return not is_timm(name) and name.startswith(("googlenet", "inception"))


def build_pretrained(facts: Facts, weights: str):
    """The architecture with torchvision's named `weights`, made by torchvision's own builder from the
    cached file (so that what the builder sets with the weights holds: Inception's `transform_input`,
    the 384-px ViT of SWAG E2E), then the stem and the head adapted. The builder finds the file in the
    hub cache and never downloads it (`cached_weights_file` checks it is there first)."""
    import torchvision

    cached_weights_file(facts.name, weights)
    model = torchvision.models.get_model(facts.name, weights=torchvision_weights(facts.name, weights))
    if has_aux_heads(facts.name):  # loaded with them (the weights hold them), dropped as their builders do
        model.aux_logits = False
        for aux in ("AuxLogits", "aux1", "aux2"):
            if hasattr(model, aux):
                setattr(model, aux, None)
    if facts.stem == "cifar":
        _cifar_stem(model, stem_family(facts.name))
    head_replaced = head_classes(model) != facts.num_classes
    if head_replaced:
        replace_head(model, facts.num_classes)
    return model, head_replaced


def pretrained_facts(name: str, weights: str | None) -> dict:
    """The Facts fields torchvision's builder sets with named `weights`: the size a fixed-size model is
    built for (the weights' own) and Inception/GoogLeNet's `transform_input`."""
    if not weights or is_timm(name):
        return {}
    member = torchvision_weights(name, weights)
    return {
        "build_size": member.meta["min_size"][0] if fixed_size_family(name) else None,
        "transform_input": has_aux_heads(name),
    }


def _cifar_stem(model, family: str) -> None:
    import torch.nn as nn

    if family == "resnet":
        out = model.conv1.out_channels
        model.conv1 = nn.Conv2d(3, out, kernel_size=3, stride=1, padding=1, bias=False)
        model.maxpool = nn.Identity()
    else:  # first-stride: the first convolution (`features` of MobileNet/EfficientNet, `layers` of MNASNet)
        first = next(m for m in model.modules() if isinstance(m, nn.Conv2d))
        first.stride = (1, 1)


def head_of(model) -> tuple[str, object]:
    """(qualified name, module) of the classifier's last layer: the last Linear (fc, classifier[-1],
    heads.head, head.fc) or 1×1 Conv2d (SqueezeNet) in the module's order."""
    import torch.nn as nn

    last = None
    for qual, module in model.named_modules():
        if isinstance(module, nn.Linear) or (isinstance(module, nn.Conv2d) and module.kernel_size == (1, 1)):
            last = (qual, module)
    if last is None:
        raise ModelError(f"{type(model).__name__}: no classifier head (Linear or 1×1 Conv2d) to replace")
    return last


def head_classes(model) -> int:
    _, head = head_of(model)
    return head.out_features if hasattr(head, "out_features") else head.out_channels


def replace_head(model, num_classes: int):
    """`model` with a fresh `num_classes` head (timm: its own `reset_classifier`)."""
    import torch.nn as nn

    if hasattr(model, "reset_classifier"):
        model.reset_classifier(num_classes)
        return model
    qual, head = head_of(model)
    if isinstance(head, nn.Linear):
        new = nn.Linear(head.in_features, num_classes, bias=head.bias is not None)
    else:
        new = nn.Conv2d(head.in_channels, num_classes, kernel_size=1)
    model.set_submodule(qual, new)
    return model


@functools.cache  # the workflow asks again for each size, model and check at parse time
def accepted_size(name: str, stem: str, size: int, build_size: int | None = None) -> str | None:
    """None when the architecture takes `size`×`size` inputs, else why not. A forward pass on the
    meta device: shapes are checked, nothing is computed. Kept on disk (core/parse_cache.py): the
    workflow asks at parse time, and importing torch to answer costs seconds."""
    key = f"accepted_size:{name}:{stem}:{size}:{build_size}"
    if model_hf.is_hf(name):  # the folder's config decides, not the name
        key += f":{model_hf.config_digest(name)}"
    return cached(__file__, key, lambda: _probe_size(name, stem, size, build_size))


def _probe_size(name: str, stem: str, size: int, build_size: int | None) -> str | None:
    import torch

    try:
        with torch.device("meta"):
            model = build(name, 10, stem, build_size)
    except NotImplementedError:  # a constructor that computes with tensors (RegNet's widths)
        model = build(name, 10, stem, build_size).to("meta")
    model.eval()
    with torch.device("meta"):
        try:
            with torch.no_grad():
                out = model(torch.empty(1, 3, size, size))
        except Exception as exc:  # each architecture fails its own way (assert, RuntimeError, ValueError)
            return f"{name} does not take {size}×{size} inputs ({type(exc).__name__}: {str(exc).splitlines()[0][:160]})"
    if tuple(out.shape) != (1, 10):
        return f"{name} gives logits of shape {tuple(out.shape)} at {size}×{size}, not (1, 10)"
    return None


def build_size_for(name: str, image_size: int, weights: str | None) -> int | None:
    """The size a fixed-size architecture is built for: the training size from scratch (its
    positional embeddings learn that one); with pretrained weights, the weights' own."""
    if not fixed_size_family(name) or model_hf.is_hf(name):
        return None
    if weights:
        return pretrained_facts(name, weights).get("build_size")
    return image_size


# ------------------------------------------------------------------------------------------- weights


def normalisation(name: str, weights: str | None, mean=None, std=None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the model's input: the config's (`model.mean`/`model.std`) where given, else the
    weights' own where they say (a Hugging Face processor's; timm: the tagged weights' config, `name.tag`),
    else ImageNet's."""
    own_mean, own_std = _model_normalisation(name, weights)
    return tuple(mean or own_mean), tuple(std or own_std)


def _model_normalisation(name: str, weights: str | None):
    if model_hf.is_hf(name):
        facts = model_hf.processor_facts(name)
        return (facts["mean"], facts["std"]) if facts["mean"] else (IMAGENET_MEAN, IMAGENET_STD)
    if is_timm(name):
        cfg = _timm().models.get_pretrained_cfg(name.removeprefix(TIMM_PREFIX))  # the tag's, or the default tag's
        if cfg is not None and getattr(cfg, "mean", None):
            return tuple(cfg.mean), tuple(cfg.std)
        return IMAGENET_MEAN, IMAGENET_STD
    if weights:
        transforms = torchvision_weights(name, weights).transforms
        preset = getattr(transforms, "keywords", {})
        if "mean" in preset:
            return tuple(preset["mean"]), tuple(preset["std"])
    return IMAGENET_MEAN, IMAGENET_STD


def torchvision_weights(name: str, weights: str):
    """The torchvision weights enum member `weights` (DEFAULT, IMAGENET1K_V1, …) of model `name`."""
    import torchvision

    if is_timm(name):
        raise ModelError(
            f"model.weights: named weights are torchvision's; for {name} give model.checkpoint "
            "(a file of timm's weights) instead"
        )
    enum = torchvision.models.get_model_weights(name)
    try:
        return enum[weights] if weights != "DEFAULT" else enum.DEFAULT
    except KeyError:
        raise ModelError(
            f"model.weights: {name} has no weights '{weights}' (has: DEFAULT, {', '.join(w.name for w in enum)})"
        ) from None


def cached_weights_file(name: str, weights: str) -> Path:
    """The file of torchvision weights in the local torch hub cache; one line saying where to put
    it when it is not there (infbench never downloads weights)."""
    import torch

    member = torchvision_weights(name, weights)
    target = Path(torch.hub.get_dir()) / "checkpoints" / Path(member.url).name
    if not target.is_file():
        raise ModelError(
            f"model.weights: {name} {member} is not in the torch hub cache: download {member.url} and put it at "
            f"{target} (or set TORCH_HOME to a folder whose hub/checkpoints holds it)"
        )
    return target


def read_state_dict(path: Path, trust: bool = False) -> dict:
    """A state_dict from a user's file: a plain state_dict (or one under 'state_dict'/'model'), read with
    weights_only=True; a whole pickled module only with `trust` (unpickling runs code from the file)."""
    import pickle

    import torch

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model.checkpoint: {path} does not exist; give the path of your .pt/.pth file")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        if not trust:
            raise ModelError(
                f"model.checkpoint: {path} is not a plain state_dict (it pickles objects); loading it runs code "
                "from the file: set model.trust_checkpoint: true if you trust it, or save model.state_dict() instead"
            ) from None
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:
        raise ModelError(f"model.checkpoint: torch cannot read {path} ({type(exc).__name__}: {exc})") from None
    if isinstance(obj, torch.nn.Module):
        return obj.state_dict()
    if isinstance(obj, dict):
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), dict):
                obj = obj[key]
                break
        if isinstance(obj, dict) and obj and all(torch.is_tensor(v) for v in obj.values()):
            return {k.removeprefix("module."): v for k, v in obj.items()}  # DataParallel's prefix
    raise ModelError(
        f"model.checkpoint: {path} holds a {type(obj).__name__}, not a state_dict or a module; "
        "save it with torch.save(model.state_dict(), path)"
    )


def fit_state_dict(model, state: dict, where: str) -> bool:
    """Load `state` into `model`, replacing the head first where only its size differs (returns True
    then); a key or shape mismatch elsewhere is one line naming the keys."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ModelError(
            f"{where} does not fit {type(model).__name__}: missing keys {_few(missing)}; unexpected keys "
            f"{_few(unexpected)} (is model.name the architecture it was saved from?)"
        )
    head_name, _ = head_of(model)
    wrong = sorted(k for k in own if own[k].shape != state[k].shape)
    head_replaced = False
    if wrong and all(k.startswith(head_name + ".") for k in wrong):
        classes = state[f"{head_name}.weight"].shape[0]
        replace_head(model, classes)
        head_replaced = True
    elif wrong:
        shapes = ", ".join(f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in wrong[:3])
        raise ModelError(f"{where} does not fit {type(model).__name__}: shapes differ: {shapes}")
    model.load_state_dict(state)
    return head_replaced


def checkpoint_size(name: str, checkpoint: Path, trust: bool = False) -> int | None:
    """The input side a fixed-size model (ViT) in the user's `checkpoint` was trained at, read from its
    position embedding's token count and the architecture's patch size; None for other models or a
    checkpoint without one. Kept on disk (core/parse_cache.py) per file version: asked at parse time."""
    if not fixed_size_family(name):
        return None
    path = Path(checkpoint)
    stat = path.stat()
    key = f"checkpoint_size:{name}:{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    return cached(__file__, key, lambda: _checkpoint_size(name, path, trust))


def _checkpoint_size(name: str, path: Path, trust: bool) -> int | None:
    import math

    import torch

    state = read_state_dict(path, trust)
    keys = [k for k in state if "pos_emb" in k and state[k].dim() == 3]
    probe_size = 224
    with torch.device("meta"):
        model = build(name, 10, "imagenet", probe_size)
    own = model.state_dict()
    if len(keys) != 1 or keys[0] not in own:
        return None
    patch = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d)).kernel_size[0]
    extra = own[keys[0]].shape[1] - (probe_size // patch) ** 2  # class / distillation tokens
    side = math.isqrt(max(0, state[keys[0]].shape[1] - extra))
    return side * patch if side * side == state[keys[0]].shape[1] - extra else None


def _few(keys: list[str], n: int = 4) -> str:
    if not keys:
        return "none"
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def initial(facts: Facts, weights: str | None, checkpoint: Path | None, trust: bool):
    """The model training starts from: (module, how it was made, whether its head was replaced).

    With weights or a checkpoint the architecture is built with their head, loaded, and the head is
    replaced where the dataset's number of classes differs."""
    if model_hf.is_hf(facts.name) and not checkpoint:  # the folder holds its weights
        model, head_replaced = model_hf.pretrained(facts.name, facts.num_classes)
        return model, f"from {model_hf.folder(facts.name)}", head_replaced
    if weights and not checkpoint:
        model, head_replaced = build_pretrained(facts, weights)
        return model, f"from weights {cached_weights_file(facts.name, weights)}", head_replaced
    if not checkpoint:
        return _build(facts), "from scratch", False
    state, where = read_state_dict(checkpoint, trust), f"model.checkpoint {checkpoint}"
    model = _build(facts)
    head_replaced = fit_state_dict(model, state, where)
    if head_replaced:
        replace_head(model, facts.num_classes)
    return model, f"from {where}", head_replaced


def _build(facts: Facts):
    return build(facts.name, facts.num_classes, facts.stem, facts.build_size, facts.transform_input)


# ---------------------------------------------------------------------------------------- checkpoint


def save(path: Path, model, facts: Facts, **extra) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save({"facts": asdict(facts), "state_dict": model.state_dict(), **extra}, tmp)


def read_facts(path: Path) -> Facts:
    """The facts a checkpoint written by `infbench train` carries."""
    return _read(path)[1]


def _read(path: Path):
    import torch

    check_artifact(path, "train")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        raw = dict(ckpt["facts"])
        facts = Facts(**{**raw, "mean": tuple(raw["mean"]), "std": tuple(raw["std"])})
    except Exception as exc:  # torch raises several types for a damaged zip/pickle
        raise DamagedInput(path, "train", f"torch cannot load the checkpoint: {exc}") from exc
    return ckpt, facts


def input_norm(path: Path) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) of the input of the model in checkpoint `path` (`data.to_input`'s `norm`)."""
    facts = read_facts(path)
    return facts.mean, facts.std


def load_checkpoint(path: Path):
    """The trained model in eval mode, from a checkpoint written by `infbench train`."""
    ckpt, facts = _read(path)
    if facts.name.startswith("onnx:"):  # a user's ONNX file (stages/model_onnx.py): run by ONNX Runtime
        from infbench.stages import model_onnx

        return model_onnx.OrtModule(model_onnx.onnx_of(path))
    try:
        model = _build(facts)
        model.load_state_dict(ckpt["state_dict"])
    except ModelError:
        raise
    except Exception as exc:
        raise DamagedInput(path, "train", f"the checkpoint does not fit {facts.name}: {exc}") from exc
    return model.eval()


def logits(model, x: np.ndarray, batch: int) -> np.ndarray:
    """A PyTorch model's logits of the float32 NCHW array `x` on the CPU, `batch` images at a time."""
    import torch

    with torch.inference_mode():
        return np.concatenate([model(torch.from_numpy(x[i : i + batch])).numpy() for i in range(0, len(x), batch)])
