"""NNCF's INT8 models for the openvino backend (rule quantize_nncf, `infbench quantize-nncf`).

- `openvino/int8_nncf.xml`: `nncf.quantize`, post-training quantisation of the fp32 ONNX (read by OpenVINO)
  with activation statistics from the calibration split, for the CPU.
- `openvino/int8_nncf_ac.xml`: `nncf.quantize_with_accuracy_control`: the same, then the quantised layers
  that cost the most top-1 on the validation split (images neither calibrated on nor tested) are put back
  into float, one group at a time, until
  the drop is within `--max-drop-points` (config accuracy.tolerance_points) or nothing is left to revert.
  NNCF returns its best model either way; the `.json` beside it says whether the tolerance was met and,
  where not, by how many points it was missed (the test split's figure is the accuracy job's).

The calibration images come from `quantize.calibration_images`, the helper ONNX Runtime's static
quantisation uses, so both INT8 paths see the same images with the same input normalisation. Each model is
OpenVINO IR: the .xml (graph) and the .bin beside it (weights, kept in fp32 where float), written
atomically, with the `.json` recording how it was made. Where OpenVINO or NNCF cannot be imported, the
.xml is a stub naming the error and what to install: the cells report `unavailable`, and the rule reruns
once they are installed (their versions are in the rule's params).
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from pathlib import Path

import numpy as np

from infbench.backends.base import BackendUnavailable, import_or_unavailable
from infbench.backends.openvino import INSTALL
from infbench.backends.unavailable import write_unavailable
from infbench.core.arguments import paths, schema_default
from infbench.core.integrity import DamagedInput
from infbench.core.io import atomic_path, write_json
from infbench.stages import data, quantize

ACCURACY_CONTROLLED = "int8_nncf_ac"


def cli_args(variant: str, config: dict, dataset: str) -> str:
    """The `infbench quantize-nncf` arguments of one variant from the config: only what shapes it (the
    tolerance rebuilds the accuracy-controlled model only)."""
    args = (
        f"--dataset {dataset} --image-size {config['train']['image_size']}"
        f" --samples {config['quantize']['calibration_samples']}"
    )
    if variant == ACCURACY_CONTROLLED:
        args += f" --max-drop-points {config['accuracy']['tolerance_points']}"
    excluded = [*config["quantize"].get("exclude_op_types", []), *config["quantize"].get("exclude_nodes", [])]
    if excluded:  # recorded as not applied (NOT_APPLIED), so the model's record says so
        args += " --unapplied-exclusions " + shlex.quote(", ".join(excluded))
    return args


# quantize.exclude_op_types / exclude_nodes name ONNX op types and ONNX node names (ONNX Runtime's INT8);
# NNCF quantises OpenVINO's graph, whose op types (Convolution, Multiply) and node names are others.
NOT_APPLIED = (
    "quantize.exclude_op_types/exclude_nodes ({}) do not apply to NNCF's models: they name ONNX op types and "
    "nodes (ONNX Runtime's INT8); NNCF quantised OpenVINO's graph without them"
)


def top1(compiled, items) -> float:
    """Top-1 of an OpenVINO compiled model over (image batch, labels) items: NNCF's validation function."""
    right = total = 0
    for x, y in items:
        right += int((compiled(x)[0].argmax(1) == y).sum())
        total += len(y)
    return right / total


def _compile(core, model):
    return core.compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})  # float parts in f32, as cells run


def _save(model, xml: Path) -> None:
    """`model` as IR at `xml` (+ .bin), both written atomically; the .bin first, so an .xml is never newer than
    the weights it names."""
    import openvino as ov

    with tempfile.TemporaryDirectory(prefix="infbench-nncf-") as tmp:
        staged = Path(tmp, "model.xml")
        ov.save_model(model, str(staged), compress_to_fp16=False)  # float layers stay fp32, as quantised
        for suffix in (".bin", ".xml"):
            with atomic_path(xml.with_suffix(suffix)) as dest:
                shutil.copyfile(staged.with_suffix(suffix), dest)


def _write_unavailable(out: Path, error: str) -> dict:
    stub = write_unavailable(out, "openvino", error)
    with atomic_path(out.with_suffix(".bin")) as dest:
        dest.write_bytes(b"")
    write_json(out.with_suffix(".json"), stub)
    return stub


def quantize_nncf(
    fp32: Path,
    out: Path,
    dataset: Path,
    image_size: int,
    samples: int = 200,
    max_drop_points: float | None = None,
    unapplied_exclusions: str | None = None,
) -> dict:
    """NNCF INT8 of `fp32` → `out` (.xml, .bin and .json); accuracy-controlled where `max_drop_points` is given.
    Returns the record written to the .json."""
    try:
        ov = import_or_unavailable("openvino", INSTALL, "OpenVINO")
        nncf = import_or_unavailable("nncf", INSTALL, "NNCF")
    except BackendUnavailable as exc:
        return _write_unavailable(out, str(exc))
    norm = quantize.onnx_norm(fp32)
    images = quantize.calibration_images(dataset, image_size, samples, norm)
    # accuracy control checks the drop on the validation split: images neither calibrated on nor tested
    val_images, val_labels = data.load_split(dataset, "val")
    val_x = data.to_input(val_images, image_size, norm)
    core = ov.Core()
    try:
        model = core.read_model(str(fp32))
    except RuntimeError as exc:
        raise DamagedInput(fp32, "export_onnx", f"OpenVINO cannot read it: {exc}") from exc
    # One image per item: NNCF's statistics and its per-item ranking work on single samples.
    calibration = nncf.Dataset([images[i : i + 1] for i in range(len(images))])
    common = {"subset_size": len(images), "target_device": nncf.TargetDevice.CPU}
    info = {
        "mode": ACCURACY_CONTROLLED if max_drop_points is not None else "int8_nncf",
        "nncf": nncf.__version__,
        "openvino": ov.__version__,
        "calibration_samples": len(images),
        "calibration_image_size": image_size,
    }
    if unapplied_exclusions:
        info["not_applied"] = NOT_APPLIED.format(unapplied_exclusions)
        print(f"note: {info['not_applied']}", flush=True)
    info["labels"] = data.labels_basis(val_labels)
    if data.unlabelled(val_labels):  # no labels: NNCF controls the agreement with the fp32 model instead
        fp32_model = _compile(core, model)
        val_labels = data.scoring_labels(val_labels, np.concatenate([fp32_model(x[None])[0] for x in val_x]))
    validation = [(val_x[i : i + 1], val_labels[i : i + 1]) for i in range(len(val_x))]
    if max_drop_points is None:
        quantized = nncf.quantize(model, calibration, **common)
    else:
        quantized = nncf.quantize_with_accuracy_control(
            model,
            calibration,
            nncf.Dataset(validation, lambda item: item[0]),
            lambda compiled, items: top1(compiled, items),
            max_drop=max_drop_points / 100,  # top-1 is a fraction; the tolerance is in points
            drop_type=nncf.DropType.ABSOLUTE,
            **common,
        )
    # The validation split's top-1 before and after, as the CPU runs them (NNCF's own check, recorded).
    reference = top1(_compile(core, model), validation)
    achieved = top1(_compile(core, quantized), validation)
    drop = round((reference - achieved) * 100, 4)
    info.update(
        validation_images=len(validation),
        validation_top1_fp32=reference,
        validation_top1=achieved,
        validation_drop_points=drop,
        fake_quantize_nodes=sum(op.get_type_name() == "FakeQuantize" for op in quantized.get_ops()),
    )
    if max_drop_points is not None:
        missed = round(max(0.0, drop - max_drop_points), 4)
        info.update(max_drop_points=max_drop_points, tolerance_met=missed == 0, missed_by_points=missed)
    _save(quantized, out)
    write_json(out.with_suffix(".json"), info)
    print(f"wrote {out}: {line(info)}", flush=True)
    return info


def line(info: dict) -> str:
    """One line on how an NNCF model came out."""
    text = (
        f"{info['mode']}, {info['fake_quantize_nodes']} quantisers, calibrated on {info['calibration_samples']} "
        f"images; validation-split top-1 {info['validation_top1']:.4f} (fp32 {info['validation_top1_fp32']:.4f}, "
        f"drop {info['validation_drop_points']:.2f} points, {info['validation_images']} images)"
    )
    if "tolerance_met" in info:
        text += (
            f"; tolerance {info['max_drop_points']} points met"
            if info["tolerance_met"]
            else f"; tolerance {info['max_drop_points']} points MISSED by {info['missed_by_points']:.2f} points "
            "(NNCF's last model kept, with the layers it reverted in float)"
        )
    return text


def add_parser(sub) -> None:
    """`infbench quantize-nncf`."""
    s = sub.add_parser("quantize-nncf", help="fp32 ONNX → NNCF INT8 OpenVINO IR (accuracy-controlled with a max drop)")
    s.add_argument("--onnx", type=Path, required=True, help="the fp32 model")
    paths(s, "--out", "--dataset")
    s.add_argument("--image-size", type=int, required=True, help="calibration resolution (the training one)")
    s.add_argument(
        "--samples", type=int, default=schema_default("quantize.calibration_samples"), help="calibration images"
    )
    s.add_argument("--max-drop-points", type=float, default=None, help="accuracy control: allowed top-1 drop")
    s.add_argument("--unapplied-exclusions", default=None, help="quantize.exclude_*, recorded as not applied")
    s.set_defaults(
        func=lambda a: quantize_nncf(
            a.onnx, a.out, a.dataset, a.image_size, a.samples, a.max_drop_points, a.unapplied_exclusions
        )
    )
