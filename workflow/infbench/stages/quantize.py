"""FP32 ONNX → the quantised and half-precision ONNX variants (rules quantize_int8, convert_fp16).

- `int8_static.onnx`: ONNX Runtime's static post-training quantisation in QDQ format, weights
  per channel, after ORT's quantisation pre-processing (symbolic shape inference + graph
  optimisation), with activation ranges calibrated on the calibration split of the dataset at the
  training resolution (MinMax, Entropy or Percentile). Activations are uint8 and weights int8 by
  default (U8S8: ORT's fast path on x86 CPUs; int8 activations run slower than fp32 there).
- `int8_trt.onnx`: the same calibration, made for TensorRT's explicit quantisation (what the TensorRT
  execution provider reads): int8 activations and weights, both symmetric (zero points 0, weights in
  [-127, 127]: TensorRT accepts nothing else), biases left in float (TensorRT adds them in float).
  ONNX Runtime runs it on the CPU too, which is how its accuracy is known before TensorRT is there.
- `int8_dynamic.onnx`: ORT's dynamic quantisation (weights int8, activation ranges computed at run
  time). Opt-in: it is the wrong tool for a CNN, and the report shows why.
- `fp16.onnx`: float16 weights and compute for the GPU execution providers, with float32 inputs and
  outputs (`keep_io_types`), so every backend feeds float32 and gets float32 logits.

Each builder writes its file atomically and records how it was made in the model's metadata
(`infbench.*` keys of `metadata_props`).
"""

from __future__ import annotations

import argparse
import difflib
import shlex
import tempfile
from pathlib import Path

import numpy as np

from infbench.core.arguments import paths, schema_default
from infbench.core.integrity import DamagedInput
from infbench.core.io import atomic_path
from infbench.stages import data

CALIBRATION_METHODS = ("MinMax", "Entropy", "Percentile")
ACTIVATION_TYPES = ("uint8", "int8")
MAX_CALIBRATION_BATCH = 32


def cli_args(mode: str, settings: dict, dataset: str, image_size: int) -> str:
    """The `infbench quantize-int8` arguments of one INT8 variant from the config's `quantize`
    section: only what shapes that variant (calibration settings rebuild the static model only)."""
    per_channel = "--per-channel" if settings["per_channel"] else "--no-per-channel"
    if mode == "dynamic":
        return f"--mode dynamic {per_channel}"
    calibration = (
        f"--dataset {dataset} --image-size {image_size} --method {settings['calibration_method']}"
        f" --samples {settings['calibration_samples']} {per_channel}"
        + "".join(f" --exclude-op-type {shlex.quote(t)}" for t in settings.get("exclude_op_types", []))
        + "".join(f" --exclude-node {shlex.quote(n)}" for n in settings.get("exclude_nodes", []))
    )
    if mode == "trt":  # the activation type is TensorRT's (int8, symmetric), not the config's
        return f"--mode trt {calibration}"
    return f"--mode static {calibration} --activation-type {settings['activation_type']}"


def calibration_batch(n: int, largest: int = MAX_CALIBRATION_BATCH) -> int:
    """The largest batch ≤ `largest` that divides `n`: every calibration batch has the same shape
    (ORT's histogram calibrators stack the batches and fail on a short last one) and no image is
    left out."""
    return max(b for b in range(1, min(n, largest) + 1) if n % b == 0)


def calibration_images(dataset: Path, image_size: int, samples: int, norm) -> np.ndarray:
    """The first `samples` images of the calibration split (all of it when it has fewer), as
    float32 NCHW at `image_size`, normalised with the model's (mean, std) `norm`."""
    images, _ = data.load_split(dataset, "calib")
    if samples > len(images):
        print(
            f"quantize: {samples} calibration samples asked for, the calibration split has {len(images)}; "
            f"using all {len(images)} (raise split.calibration to use more)",
            flush=True,
        )
    return data.to_input(images[:samples], image_size, norm)


def onnx_norm(path: Path):
    """The (mean, std) input normalisation the export recorded in an ONNX model's metadata."""
    meta = metadata(path)
    if "mean" not in meta or "std" not in meta:  # an export from before the normalisation was recorded
        raise DamagedInput(path, "export_onnx", "its metadata has no input normalisation (infbench.mean/std)")
    return tuple(float(v) for v in meta["mean"].split(",")), tuple(float(v) for v in meta["std"].split(","))


def reader(images: np.ndarray, input_name: str, fixed: int | None = None):
    """A CalibrationDataReader over `images` in equal batches (of `fixed` images: a graph's own batch)."""
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            batch = fixed or calibration_batch(len(images))
            self.batches = [images[i : i + batch] for i in range(0, len(images), batch)]
            self.rewind()

        def get_next(self):
            batch = next(self._iter, None)
            return None if batch is None else {input_name: batch}

        def rewind(self):
            self._iter = iter(self.batches)

    return Reader()


def _input(path: Path) -> tuple[str, int | None]:
    """The graph's input name and its fixed batch (None: dynamic)."""
    import onnx

    first = onnx.load(str(path), load_external_data=False).graph.input[0]
    batch = first.type.tensor_type.shape.dim[0]
    return first.name, batch.dim_value if batch.HasField("dim_value") else None


def _stamp(path: Path, props: dict) -> None:
    """Record how the variant was made in its metadata_props (infbench.* keys)."""
    import onnx

    model = onnx.load(str(path))
    for key, value in props.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = f"infbench.{key}", str(value)
    onnx.save(model, str(path))


def metadata(path: Path) -> dict:
    """The infbench.* metadata of a variant written here."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return {p.key.removeprefix("infbench."): p.value for p in model.metadata_props if p.key.startswith("infbench.")}


def read_fp32(fp32: Path):
    """The fp32 model every variant is made from; one ONNX cannot parse is named with its rule."""
    import onnx

    try:
        return onnx.load(str(fp32))
    except Exception as exc:  # protobuf's DecodeError and friends name neither the file nor the rule
        raise DamagedInput(fp32, "export_onnx", f"onnx cannot parse it: {type(exc).__name__}: {exc}") from exc


def preprocess(fp32: Path, out: Path) -> None:
    """ORT's quantisation pre-processing: symbolic shape inference and graph optimisation."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    read_fp32(fp32)
    quant_pre_process(str(fp32), str(out))


# Entropy (KL-divergence) calibration searches thresholds between num_quantized_bins/2 and num_bins/2
# histogram bins. quantize_static builds its Entropy calibrator with 128 and 128 and passes no way
# to change them, which leaves one candidate, the full range: MinMax under another name. These are
# TensorRT's numbers (2048 bins searched for the best 128-level quantisation).
ENTROPY_BINS = {"num_bins": 2048, "num_quantized_bins": 128}


def entropy_ranges(model: Path, images: np.ndarray, tmp: Path) -> str:
    """Entropy-calibrated activation ranges of `model`, saved as an ORT calibration cache (JSON)
    that quantize_static then reads instead of calibrating again."""
    import inspect

    from onnxruntime.quantization import CalibrationMethod
    from onnxruntime.quantization import quantize_static as ort_quantize_static
    from onnxruntime.quantization.calibrate import create_calibrator

    if "calibration_cache_path" not in inspect.signature(ort_quantize_static).parameters:
        raise RuntimeError(
            "this onnxruntime's quantize_static cannot take precomputed calibration ranges "
            "(no calibration_cache_path), and its own Entropy calibration degenerates to MinMax; "
            "upgrade onnxruntime or set quantize.calibration_method to MinMax or Percentile"
        )
    from onnxruntime.quantization.calibrate import save_tensors_data

    calibrator = create_calibrator(
        model,
        augmented_model_path=str(tmp / "augmented.onnx"),
        calibrate_method=CalibrationMethod.Entropy,
        extra_options=dict(ENTROPY_BINS),
    )
    calibrator.collect_data(reader(images, *_input(model)))
    cache = tmp / "entropy_ranges.json"
    save_tensors_data(calibrator.compute_data(), cache)
    return str(cache)


def quantizable_op_types() -> list[str]:
    """The op types ONNX Runtime's static quantisation quantises by default (its own union)."""
    from onnxruntime.quantization.registry import QDQRegistry, QLinearOpsRegistry

    return sorted(set(QDQRegistry) | set(QLinearOpsRegistry))


def float_kept(model: Path, op_types: list[str], nodes: list[str]) -> tuple[list[str], list[str] | None]:
    """(op types to quantise, node names to keep in float) for `quantize.exclude_op_types` and
    `exclude_nodes`; a name that matches nothing is one line with the closest names."""
    import onnx

    known = quantizable_op_types()
    unknown = [t for t in op_types if t not in known]
    if unknown:
        raise ValueError(
            f"quantize.exclude_op_types: {', '.join(unknown)} is not an op type ONNX Runtime quantises "
            f"(it quantises: {', '.join(known)})"
        )
    names = [n.name for n in onnx.load(str(model), load_external_data=False).graph.node]
    missing = [n for n in nodes if n not in names]
    if missing:
        close = difflib.get_close_matches(missing[0], names, n=3)
        raise ValueError(
            f"quantize.exclude_nodes: no node named {', '.join(missing)} in the model"
            + (f" (closest: {', '.join(close)})" if close else "")
            + "; node names are the fp32 ONNX's after ORT's pre-processing (see the quantize log)"
        )
    return [t for t in known if t not in op_types], list(nodes) or None


def quantize_static(
    fp32: Path,
    out: Path,
    dataset: Path,
    image_size: int,
    method: str = "MinMax",
    samples: int = 200,
    per_channel: bool = True,
    activation_type: str = "uint8",
    tensorrt: bool = False,
    exclude_op_types: tuple[str, ...] = (),
    exclude_nodes: tuple[str, ...] = (),
) -> dict:
    """Calibrated static INT8 (QDQ) → `out`; returns how it was made. `tensorrt`: the Q/DQ model
    TensorRT's explicit quantisation takes (int8 activations, symmetric activations and weights,
    float biases), checked node by node before it is written."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as ort_quantize_static

    if method not in CALIBRATION_METHODS:
        raise ValueError(f"calibration method '{method}' is not one of {', '.join(CALIBRATION_METHODS)}")
    if activation_type not in ACTIVATION_TYPES:
        raise ValueError(f"activation type '{activation_type}' is not one of {', '.join(ACTIVATION_TYPES)}")
    if tensorrt:
        activation_type = "int8"
    images = calibration_images(dataset, image_size, samples, onnx_norm(fp32))
    info = {
        "mode": "tensorrt" if tensorrt else "static",
        "format": "QDQ",
        "calibration_method": method,
        "calibration_samples": len(images),
        "calibration_image_size": image_size,
        "per_channel": per_channel,
        "activation_type": activation_type,
        "weight_type": "int8",
        "symmetric": tensorrt,
        "bias_quantized": not tensorrt,
        "float_op_types": ",".join(exclude_op_types),
        "float_nodes": ",".join(exclude_nodes),
    }
    # ORT's defaults are asymmetric activations and int32 biases. TensorRT's explicit quantisation takes
    # zero points of 0 only and weights in [-127, 127] (TensorRT developer guide, "Working with Quantized
    # Types"); it adds biases in float itself, so they stay float here.
    options = {"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False} if tensorrt else {}
    with tempfile.TemporaryDirectory(prefix="infbench-quant-") as tmp, atomic_path(out) as dest:
        pre = Path(tmp, "preprocessed.onnx")
        preprocess(fp32, pre)
        op_types, float_nodes = float_kept(pre, list(exclude_op_types), list(exclude_nodes))
        calibration = {}
        if method == "Entropy":
            info.update(ENTROPY_BINS)
            calibration["calibration_cache_path"] = entropy_ranges(pre, images, Path(tmp))
        ort_quantize_static(
            str(pre),
            str(dest),
            reader(images, *_input(pre)),
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=op_types,
            nodes_to_exclude=float_nodes,
            per_channel=per_channel,
            activation_type=QuantType.QUInt8 if activation_type == "uint8" else QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=getattr(CalibrationMethod, method),
            extra_options=options,
            **calibration,
        )
        if tensorrt:
            problems = tensorrt_qdq_problems(dest)
            if problems:
                raise ValueError(f"the Q/DQ model is not what TensorRT takes: {'; '.join(problems[:5])}")
        _stamp(dest, info)
    print(
        f"wrote {out}: {'TensorRT ' if tensorrt else ''}static INT8 (QDQ, per-channel weights {per_channel}, "
        f"{activation_type} activations{', symmetric, float biases' if tensorrt else ''}), "
        f"{method} calibration on {len(images)} images at {image_size}x{image_size}"
        + (f"; kept in float: op types {', '.join(exclude_op_types)}" if exclude_op_types else "")
        + (f"; kept in float: nodes {', '.join(exclude_nodes)}" if exclude_nodes else ""),
        flush=True,
    )
    return info


def tensorrt_qdq_problems(path: Path) -> list[str]:
    """What keeps TensorRT from taking this Q/DQ model as explicit INT8 quantisation (empty: nothing):
    every QuantizeLinear/DequantizeLinear must carry int8 zero points that are all 0, and every
    quantised weight must lie in [-127, 127]."""
    import onnx
    from onnx import TensorProto, numpy_helper

    graph = onnx.load(str(path)).graph
    constants = {t.name: t for t in graph.initializer}
    problems = []
    for node in graph.node:
        if node.op_type not in ("QuantizeLinear", "DequantizeLinear"):
            continue
        zero_point = constants.get(node.input[2]) if len(node.input) > 2 else None
        if zero_point is None:
            problems.append(f"{node.name}: no constant zero point")
        elif zero_point.data_type != TensorProto.INT8:
            problems.append(f"{node.name}: zero point type {TensorProto.DataType.Name(zero_point.data_type)}")
        elif numpy_helper.to_array(zero_point).any():
            problems.append(f"{node.name}: non-zero zero point")
        weight = constants.get(node.input[0]) if node.op_type == "DequantizeLinear" else None
        if weight is not None and numpy_helper.to_array(weight).min() < -127:
            problems.append(f"{node.name}: weight value -128 (TensorRT takes [-127, 127])")
    return problems


def quantize_dynamic(fp32: Path, out: Path, per_channel: bool = True) -> dict:
    """Dynamic INT8 (int8 weights, activation ranges computed at run time) → `out`."""
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as ort_quantize_dynamic

    info = {"mode": "dynamic", "per_channel": per_channel, "weight_type": "int8"}
    with tempfile.TemporaryDirectory(prefix="infbench-quant-") as tmp, atomic_path(out) as dest:
        pre = Path(tmp, "preprocessed.onnx")
        preprocess(fp32, pre)
        ort_quantize_dynamic(str(pre), str(dest), per_channel=per_channel, weight_type=QuantType.QInt8)
        _stamp(dest, info)
    print(f"wrote {out}: dynamic INT8 (per-channel weights {per_channel})", flush=True)
    return info


def _float16_converter():
    """onnxconverter-common's float16 conversion where installed, else the copy ONNX Runtime ships."""
    try:
        from onnxconverter_common.float16 import convert_float_to_float16
    except ImportError:
        from onnxruntime.transformers.float16 import convert_float_to_float16
    return convert_float_to_float16


def topological_sort(graph) -> None:
    """Reorder `graph.node` so that every node comes after the producers of its inputs (the
    float16 converter appends the input casts at the end, which the ONNX checker refuses)."""
    available = {i.name for i in graph.input} | {t.name for t in graph.initializer} | {""}
    pending, ordered = list(graph.node), []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError(f"graph has a cycle or a dangling input near node '{pending[0].name}'")
        for n in ready:
            ordered.append(n)
            available.update(n.output)
        pending = [n for n in pending if all(n is not r for r in ready)]
    del graph.node[:]
    graph.node.extend(ordered)


def convert_fp16(fp32: Path, out: Path) -> dict:
    """float16 weights and compute, float32 inputs and outputs → `out`."""
    import onnx

    model = _float16_converter()(read_fp32(fp32), keep_io_types=True)
    topological_sort(model.graph)
    onnx.checker.check_model(model)
    info = {"mode": "fp16", "keep_io_types": True}
    with atomic_path(out) as dest:
        onnx.save(model, str(dest))
        _stamp(dest, info)
    print(f"wrote {out}: float16 weights and compute, float32 inputs and outputs", flush=True)
    return info


def add_parser(sub) -> None:
    """`infbench quantize-int8` and `infbench convert-fp16`."""
    s = sub.add_parser("quantize-int8", help="fp32 ONNX → INT8 ONNX (static QDQ calibrated, or dynamic)")
    s.add_argument("--onnx", type=Path, required=True, help="the fp32 model")
    paths(s, "--out")
    s.add_argument(
        "--mode", default="static", choices=["static", "dynamic", "trt"], help="trt: symmetric int8 Q/DQ for TensorRT"
    )
    s.add_argument("--dataset", type=Path, default=None, help="calibration split (static)")
    s.add_argument(
        "--image-size", type=int, default=schema_default("train.image_size"), help="calibration resolution (static)"
    )
    s.add_argument(
        "--method", default=schema_default("quantize.calibration_method"), choices=["MinMax", "Entropy", "Percentile"]
    )
    s.add_argument(
        "--samples",
        type=int,
        default=schema_default("quantize.calibration_samples"),
        help="calibration images (static)",
    )
    s.add_argument(
        "--per-channel", action=argparse.BooleanOptionalAction, default=schema_default("quantize.per_channel")
    )
    s.add_argument("--activation-type", default=schema_default("quantize.activation_type"), choices=["uint8", "int8"])
    s.add_argument("--exclude-op-type", action="append", default=[], help="an op type kept in float (repeatable)")
    s.add_argument("--exclude-node", action="append", default=[], help="a node name kept in float (repeatable)")
    s.set_defaults(func=_quantize_command)

    s = sub.add_parser("convert-fp16", help="fp32 ONNX → fp16 ONNX (float32 inputs and outputs) for GPU EPs")
    s.add_argument("--onnx", type=Path, required=True, help="the fp32 model")
    paths(s, "--out")
    s.set_defaults(func=lambda a: convert_fp16(a.onnx, a.out))


def _quantize_command(a) -> None:
    if a.mode == "dynamic":
        quantize_dynamic(a.onnx, a.out, a.per_channel)
    elif a.dataset is None:
        raise ValueError(f"quantize-int8 --mode {a.mode} needs --dataset (its calibration split)")
    else:
        quantize_static(
            a.onnx,
            a.out,
            a.dataset,
            a.image_size,
            a.method,
            a.samples,
            a.per_channel,
            a.activation_type,
            tensorrt=a.mode == "trt",
            exclude_op_types=tuple(a.exclude_op_type),
            exclude_nodes=tuple(a.exclude_node),
        )
