"""A user's ONNX file as a model: `model: {onnx: path/to/model.onnx}`.

Its facts come from the graph and the config: the one image input's name, dtype, shape and layout
(NCHW or NHWC, `model.layout` where the graph cannot tell), a batch or image size fixed at export,
the output's class count, the normalisation the user gives (`model.mean`/`model.std`, or none with
`model.preprocessing: in_graph`). The study is keyed by the file's content: its folder is named
`onnx-<file stem>-<first 8 hex of the sha256>` (the external data files hashed with it), so a changed
file is a new study and reruns everything, and the old results stay beside it.

`infbench import-onnx` (rule import_onnx) writes what `train` and `export_onnx` write for a PyTorch
model: the study's `onnx/fp32.onnx` (the user's graph behind a float32 NCHW input named `input`: a
Transpose for NHWC, a Cast for another dtype; the normalisation stamped in its metadata like an
export's) and a `checkpoint.pt` holding the facts alone. Every ONNX-reading stage and backend then
runs unchanged; `load_checkpoint` of that checkpoint is an ONNX Runtime session (`OrtModule`), the
fp32 reference of the agreement and accuracy checks. Cells that need a PyTorch source are dropped
with that reason.
"""

from __future__ import annotations

import functools
import hashlib
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from infbench.core.arguments import paths
from infbench.core.io import atomic_path, write_json
from infbench.stages import data
from infbench.stages.model_error import ModelError

ONNX_PREFIX = "onnx:"
LAYOUTS = ("NCHW", "NHWC")
# The input dtypes an image can come in; Cast from float32 in the wrapper (ONNX TensorProto names)
IMAGE_DTYPES = ("float", "float16", "double", "uint8")
# Backends whose artifacts are made from the ONNX files (the others need the PyTorch model)
ONNX_RULES = ("export_onnx", "convert_fp16", "quantize_int8", "quantize_nncf")
# Backends that honour a file's fixed batch as it is (OpenVINO reshapes every model to the cell's shape)
RESHAPING_BACKENDS = ("openvino",)
WRAPPED_INPUT = "input"  # export.ONNX_INPUT: the name every reader of the study's fp32.onnx asks the graph for


@dataclass(frozen=True)
class ImageInput:
    """The file's one image input, as the graph declares it."""

    name: str
    dtype: str  # ONNX element type name: float, float16, uint8, …
    layout: str  # NCHW or NHWC
    batch: int | None  # None: dynamic
    size: int | None  # the fixed square side, None: dynamic
    classes: int | None  # the output's last dimension where the graph fixes it


def is_onnx(name: str) -> bool:
    return name.startswith(ONNX_PREFIX)


# ---------------------------------------------------------------------------------------- the file


def _load(path: Path, with_data: bool = False):
    import onnx

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"model.onnx: {path} does not exist; give the path of your .onnx file")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise ModelError(f"model.onnx: {path} is not an ONNX model ({type(exc).__name__}: {exc})") from None
    external_files(path, model)
    if with_data:
        onnx.load_external_data_for_model(model, str(path.parent))
    return model


def external_files(path: Path, model) -> list[Path]:
    """The external data files `model` (read from `path`) names; each must lie inside the model's folder."""
    from onnx.external_data_helper import ExternalDataInfo, uses_external_data

    folder = Path(path).resolve().parent
    files = set()
    for tensor in model.graph.initializer:
        if not uses_external_data(tensor):
            continue
        where = (folder / ExternalDataInfo(tensor).location).resolve()
        if not where.is_relative_to(folder):
            raise ModelError(
                f"model.onnx: {path} keeps weights in {ExternalDataInfo(tensor).location}, outside the model's folder "
                f"{folder}; move that file into the folder and save the model with a location relative to it"
            )
        if not where.is_file():
            raise ModelError(
                f"model.onnx: {path} keeps weights in {where}, which does not exist; put it beside the model"
            )
        files.add(where)
    return sorted(files)


def _stamp(path: Path) -> tuple:
    st = os.stat(path)
    return str(Path(path).resolve()), st.st_size, st.st_mtime_ns


@functools.cache
def _files(stamp: tuple) -> tuple[Path, ...]:
    """The model file and its external data files (cached per the model file's path, size and mtime)."""
    path = Path(stamp[0])
    return (path, *external_files(path, _load(path)))


@functools.cache
def _hash(stamps: tuple) -> str:
    digest = hashlib.sha256()
    for name, *_ in stamps:
        with open(name, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def content_hash(path: str | Path) -> str:
    """sha256 of the file and its external data (cached per the files' size and mtime: the workflow asks at
    parse time)."""
    return _hash(tuple(_stamp(f) for f in _files(_stamp(Path(path)))))


def model_name(path: str | Path) -> str:
    """The name of the study of `path`: `onnx:<stem>-<hash8>` (its folder: onnx-<stem>-<hash8>)."""
    return f"{ONNX_PREFIX}{Path(path).stem}-{content_hash(path)[:8]}"


def _dims(value_info) -> list[int | None]:
    return [d.dim_value if d.HasField("dim_value") else None for d in value_info.type.tensor_type.shape.dim]


def image_input(path: str | Path, layout: str | None = None) -> ImageInput:
    """The file's one image input; several inputs, a non-image one, or a layout the graph cannot tell
    (and `layout` does not give) is a ModelError naming the fix."""
    import onnx

    model = _load(path)
    weights = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]  # old exports list weights as inputs
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise ModelError(
            f"model.onnx: {path} has {len(inputs)} inputs ({names}); infbench takes an image classifier with one "
            "image input: export it with one (fold the others into constants)"
        )
    inp = inputs[0]
    dtype = onnx.TensorProto.DataType.Name(inp.type.tensor_type.elem_type).lower()
    dims = _dims(inp)
    if dtype not in IMAGE_DTYPES or len(dims) != 4:
        raise ModelError(
            f"model.onnx: {path}'s input '{inp.name}' is {dtype} of rank {len(dims)}, not an image batch (4-D float "
            "or uint8, NCHW or NHWC): infbench benchmarks image classifiers; give one"
        )
    found = layout or _layout(dims)
    if found is None:
        raise ModelError(
            f"model.onnx: the graph does not tell the layout of input '{inp.name}' {_shape(dims)} (NCHW or NHWC); "
            "set model.layout: NCHW or NHWC"
        )
    channels, height, width = (dims[1], dims[2], dims[3]) if found == "NCHW" else (dims[3], dims[1], dims[2])
    if channels not in (3, None):
        raise ModelError(
            f"model.onnx: input '{inp.name}' {_shape(dims)} has {channels} channels as {found}; infbench feeds RGB "
            "images (3 channels): export the model for RGB input, or set model.layout if it is the other layout"
        )
    if height != width and None not in (height, width):
        raise ModelError(f"model.onnx: input '{inp.name}' {_shape(dims)} is not square; infbench feeds square images")
    outputs = _dims(model.graph.output[0])
    return ImageInput(
        inp.name,
        dtype,
        found,
        dims[0],
        height if height == width else None,
        outputs[-1] if outputs else None,
    )


def _layout(dims) -> str | None:
    nchw, nhwc = dims[1] == 3, dims[3] == 3
    return "NCHW" if nchw and not nhwc else "NHWC" if nhwc and not nchw else None


def _shape(dims) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


# ------------------------------------------------------------------------------- the config's facts


def normalisation(m: dict) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the inputs are normalised with: the config's, or none (0, 1) for in-graph preprocessing."""
    if m.get("preprocessing") == "in_graph":
        if m.get("mean") or m.get("std"):
            raise ModelError("model: give model.mean/model.std or model.preprocessing: in_graph, not both")
        return (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)
    if not (m.get("mean") and m.get("std")):
        raise ModelError(
            f"model.onnx: say how {m['onnx']}'s input is normalised: model.mean and model.std (ImageNet's: "
            "[0.485, 0.456, 0.406] and [0.229, 0.224, 0.225], of pixels in [0, 1]) or model.preprocessing: in_graph"
        )
    mean, std = tuple(float(v) for v in m["mean"]), tuple(float(v) for v in m["std"])
    return (mean * 3 if len(mean) == 1 else mean), (std * 3 if len(std) == 1 else std)


def dataset_classes(config: dict, workdir: str | Path = ".") -> int | None:
    """The dataset's class count where it is known before its images are read."""
    if config["dataset"] in ("digits", "cifar10"):
        return 10
    root = Path(workdir, config["data_dir"])
    if not root.is_dir() or data.is_unlabelled_folder(root):
        return None
    return sum(1 for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def with_facts(one: dict) -> dict:
    """The config of an ONNX model's study: its name (keyed by the file's content) and, where the file
    fixes the image size, that size as the evaluation and calibration size (train.image_size)."""
    m = one["model"]
    try:
        name = model_name(m["onnx"])
        inp = image_input(m["onnx"], m.get("layout"))
    except (ModelError, OSError):
        return {**one, "model": {**m, "name": f"{ONNX_PREFIX}{Path(m['onnx']).stem}"}}  # problems() says why
    train = {**one["train"], "image_size": inp.size} if inp.size else one["train"]
    return {**one, "model": {**m, "name": name}, "train": train}


def problems(config: dict, workdir: str | Path = ".") -> list[str]:
    """What keeps the configured ONNX file from running (one line each, naming the fix)."""
    m = config["model"]
    path = Path(workdir, m["onnx"])
    try:
        inp = image_input(path, m.get("layout"))
        normalisation(m)
    except ModelError as exc:
        return [str(exc)]
    classes = dataset_classes(config, workdir)
    if inp.classes and classes and inp.classes != classes:
        return [mismatch(m["onnx"], inp.classes, classes, config["dataset"])]
    return []


def mismatch(path, got: int, want: int, dataset: str) -> str:
    return (
        f"model.onnx: {path} outputs {got} classes, the dataset ({dataset}) has {want}; give the images of its "
        f"{got} classes (dataset: imagefolder, one subfolder per class) or a model with a {want}-class head"
    )


def image_sizes(config: dict, Dropped) -> tuple[list[int], list]:
    """The grid's sizes the file takes: all where its size is dynamic, else its own (the others dropped)."""
    sizes = [int(s) for s in config["grid"]["image_sizes"]]
    inp = image_input(config["model"]["onnx"], config["model"].get("layout"))
    if inp.size is None:
        return sizes, []
    name = config["model"]["name"]
    why = f"{name}: the file's input is fixed at {inp.size}×{inp.size} (export it with dynamic height and width)"
    return [s for s in sizes if s == inp.size], [
        Dropped("all", "all", "all", f"{why}; {s}×{s} not measured") for s in sizes if s != inp.size
    ]


def batch_reason(config: dict, backend: str, batch: int) -> str | None:
    """Why `backend` cannot measure `batch` of the configured file, or None (it can)."""
    inp = image_input(config["model"]["onnx"], config["model"].get("layout"))
    if inp.batch is None or inp.batch == batch or backend in RESHAPING_BACKENDS:
        return None
    return (
        f"{config['model']['name']}: the file's batch is fixed at {inp.batch}: batch {batch} not measured on {backend} "
        "(export it with a dynamic batch axis; OpenVINO reshapes the file and measures it)"
    )


def backend_reason(name: str, artifact_rule: str) -> str | None:
    """Why a backend whose artifact the rule `artifact_rule` makes cannot run the user's ONNX file."""
    if artifact_rule in ONNX_RULES:
        return None
    return f"{name}: an ONNX file has no PyTorch source, which this backend runs or compiles"


def eval_batch(config: dict, batch: int) -> int:
    """The batch the accuracy and calibration jobs feed: the file's fixed batch where it has one."""
    m = config["model"]
    if not m.get("onnx"):
        return batch
    return image_input(m["onnx"], m.get("layout")).batch or batch


# -------------------------------------------------------------------------------------- the import


def wrap(model, inp: ImageInput):
    """`model` behind a float32 NCHW input named `input` (Transpose for NHWC, Cast for another dtype)."""
    import onnx
    from onnx import helper

    graph = model.graph
    batch = inp.batch if inp.batch else "batch"
    side = inp.size if inp.size else None
    dims = [batch, 3, side or "height", side or "width"]
    if inp.layout == "NCHW" and inp.dtype == "float" and inp.name == WRAPPED_INPUT:
        return model
    original = inp.name
    for i, value in enumerate(graph.input):
        if value.name == original:
            del graph.input[i]
            break
    nodes, current = [], WRAPPED_INPUT
    if inp.layout == "NHWC":
        nodes.append(helper.make_node("Transpose", [current], ["infbench_nhwc"], perm=[0, 2, 3, 1]))
        current = "infbench_nhwc"
    if inp.dtype != "float":
        to = onnx.TensorProto.DataType.Value(inp.dtype.upper())
        if inp.dtype == "uint8":  # pixels in [0, 255] rounded as a camera gives them
            nodes.append(helper.make_node("Round", [current], ["infbench_round"]))
            current = "infbench_round"
        nodes.append(helper.make_node("Cast", [current], ["infbench_cast"], to=to))
        current = "infbench_cast"
    nodes.append(helper.make_node("Identity", [current], [original]))
    graph.input.insert(0, helper.make_tensor_value_info(WRAPPED_INPUT, onnx.TensorProto.FLOAT, dims))
    for node in reversed(nodes):
        graph.node.insert(0, node)
    return model


def import_onnx(
    source: Path, out: Path, checkpoint: Path, metrics: Path, dataset: Path, mean, std, layout: str | None, size: int
) -> dict:
    """The user's file → the study's fp32.onnx (wrapped, normalisation stamped) and its facts checkpoint;
    checked by running it on test images: the class count, and its top-1 as the model's accuracy."""
    import onnx
    import torch

    inp = image_input(source, layout)
    model = wrap(_load(source, with_data=True), inp)
    big = model.ByteSize() > 1_800_000_000  # protobuf's 2 GiB: the weights go beside the graph
    with atomic_path(out) as tmp:
        onnx.save(model, str(tmp), save_as_external_data=big, location=f"{out.name}.data" if big else None)
        onnx.checker.check_model(str(tmp))
        stamp_norm(tmp, (mean, std))
    images, labels = data.load_split(dataset, "test")
    x = data.to_input(images, inp.size or size, (mean, std))
    logits = OrtModule(out).logits(x)
    classes = len(data.class_names(dataset)) or logits.shape[1]  # unlabelled images: the file's own
    if logits.shape[1] != classes:
        out.unlink()
        raise ModelError(mismatch(source, logits.shape[1], classes, Path(dataset).parent.name))
    top1 = None if data.unlabelled(labels) else float((logits.argmax(1) == labels).mean())
    # model.Facts' fields (its others keep their defaults when read); no weights: the graph holds them
    facts = {"name": model_name(source), "num_classes": classes, "image_size": x.shape[-1], "mean": mean, "std": std}
    with atomic_path(checkpoint) as tmp:
        torch.save({"facts": facts, "state_dict": {}, "onnx": {**asdict(inp), "source": str(source)}}, tmp)
    info = {
        "model": facts["name"],
        "origin": f"the ONNX file {source} (sha256 {content_hash(source)[:16]}…), not trained here",
        "input": asdict(inp),
        "test_accuracy": top1,  # None: unlabelled images (accuracy is the agreement with this file)
        "labels": data.labels_basis(labels),
        "epochs": 0,
        "warnings": [],
    }
    write_json(metrics, info)
    return info


class OrtModule:
    """An ONNX model run by ONNX Runtime on the CPU, called like a PyTorch module on an NCHW batch
    (`model.logits`): the fp32 reference of an ONNX model's study. A fixed batch is fed one batch at a time."""

    def __init__(self, path: Path):
        import onnxruntime as ort

        self.session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        first = self.session.get_inputs()[0]
        self.name, self.batch = first.name, first.shape[0] if isinstance(first.shape[0], int) else None

    def eval(self):
        return self

    def logits(self, x: np.ndarray) -> np.ndarray:
        step = self.batch or 64
        return np.concatenate([self.session.run(None, {self.name: x[i : i + step]})[0] for i in range(0, len(x), step)])

    def __call__(self, x):
        import torch

        return torch.from_numpy(self.logits(x.numpy()))


def onnx_of(checkpoint: Path) -> Path:
    """The study's fp32.onnx beside an ONNX model's facts checkpoint (rule import_onnx writes both)."""
    return Path(checkpoint).parent / "onnx" / "fp32.onnx"


def stamp_norm(path: Path, norm) -> None:
    """Record the model's input normalisation in an ONNX file's metadata (read by quantize.onnx_norm): the
    export's and the import's."""
    import onnx

    model = onnx.load(str(path))
    for key, values in zip(("mean", "std"), norm, strict=True):
        entry = model.metadata_props.add()
        entry.key, entry.value = f"infbench.{key}", ",".join(repr(float(v)) for v in values)
    onnx.save(model, str(path))


# ---------------------------------------------------------------------------------------- FLOPs


def count(path: Path, image_size: int) -> dict:
    """FLOPs and elements moved per image of the ONNX graph at `image_size`, from ONNX's shape inference:
    Conv (k·k·Cin/groups·Cout per output element), Gemm and MatMul, a multiply-add counted as 2."""
    import onnx
    from onnx import numpy_helper  # noqa: F401  (shape inference needs the onnx package's helpers loaded)

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    batch = _dims(graph.input[0])[0] or 1
    for d, v in zip(graph.input[0].type.tensor_type.shape.dim, [batch, 3, image_size, image_size], strict=True):
        d.ClearField("dim_param")
        d.dim_value = v
    inferred = onnx.shape_inference.infer_shapes(model, data_prop=True).graph
    shapes = {v.name: _dims(v) for v in [*inferred.value_info, *inferred.input, *inferred.output]}
    weights = {t.name: list(t.dims) for t in graph.initializer}
    shapes.update(weights)
    total, by_op, uncounted = 0.0, {}, set()
    fused = unfused = 0.0

    def elements(name):
        dims = shapes.get(name)
        return float(np.prod(dims)) if dims and None not in dims else None

    for node in inferred.node:
        out = shapes.get(node.output[0]) if node.output else None
        acts = [elements(n) for n in [*node.input, *node.output] if n and n not in weights]
        moved = sum(a for a in acts if a)
        unfused += moved
        flops = None
        if node.op_type == "Conv" and out and None not in out and node.input[1] in shapes:
            w = shapes[node.input[1]]
            flops = 2.0 * float(np.prod(out)) * float(np.prod(w[1:]))
        elif node.op_type in ("Gemm", "MatMul") and out and None not in out:
            a = shapes.get(node.input[0])
            if a and a[-1] is not None:
                trans = any(at.name == "transA" and at.i for at in node.attribute)
                k = a[-2] if trans else a[-1]
                flops = 2.0 * float(np.prod(out)) * k
        if node.op_type in ("Conv", "Gemm", "MatMul") and flops is None:
            uncounted.add(node.op_type)
        if flops:
            total += flops
            by_op[node.op_type] = by_op.get(node.op_type, 0.0) + flops / batch
        if node.op_type in ("Conv", "Gemm", "MatMul", "MaxPool", "AveragePool", "GlobalAveragePool"):
            fused += moved
    return {
        "flops_per_image": total / batch,
        "gflops_per_image": total / batch / 1e9,
        "flops_by_op": by_op,
        "uncounted_ops": sorted(uncounted),
        "param_elements": int(sum(np.prod(d) for d in weights.values())),
        "activation_elements_per_image": fused / batch,
        "activation_elements_unfused_per_image": unfused / batch,
        "activation_elements_by_op": {},
        "counter": "ONNX shape inference: Conv, Gemm, MatMul (2 FLOPs a multiply-add); others not counted",
    }


# ------------------------------------------------------------------------------------------ command


def cli_args(m: dict) -> str:
    """`infbench import-onnx`'s arguments for config `model` section `m` (rule import_onnx)."""
    import shlex

    mean, std = normalisation(m)
    layout = f" --layout {m['layout']}" if m.get("layout") else ""
    return (
        f"--source {shlex.quote(m['onnx'])} --mean {' '.join(map(str, mean))} --std {' '.join(map(str, std))}{layout}"
    )


def add_parser(sub) -> None:
    """`infbench import-onnx`."""
    s = sub.add_parser("import-onnx", help="a user's ONNX file → the study's fp32.onnx and its facts")
    paths(s, "--source", "--out", "--checkpoint", "--metrics", "--dataset")
    s.add_argument("--mean", type=float, nargs="+", required=True)
    s.add_argument("--std", type=float, nargs="+", required=True)
    s.add_argument("--layout", choices=LAYOUTS, default=None)
    s.add_argument("--image-size", type=int, required=True, help="where the file's size is dynamic")
    s.set_defaults(func=_command)


def _command(a) -> None:
    norm = tuple(a.mean), tuple(a.std)
    info = import_onnx(a.source, a.out, a.checkpoint, a.metrics, a.dataset, *norm, a.layout, a.image_size)
    top1 = info["test_accuracy"]
    scored = f"top-1 {top1:.4f}" if top1 is not None else "unlabelled images: accuracy is the agreement with this file"
    print(f"imported {a.source} → {a.out}: input {info['input']}, {scored}")
