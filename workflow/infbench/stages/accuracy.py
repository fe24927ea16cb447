"""Accuracy of one variant: top-1 on the whole test split, and agreement with the FP32 reference.

One job per (backend, precision, device) of the grid. It runs the backend class from the registry
(`check_available`, `load`, then `prepare`/`run`/`synchronize`/`to_numpy` per batch), the code path
the benchmark cells time, at the training resolution, and compares its logits with PyTorch FP32 on
the CPU on the same images. A variant whose drop exceeds the tolerance is flagged
(`over_tolerance`), never dropped. A device this machine lacks gives status `unavailable` with
null measured numbers (`model_size_mib` is still the artifact's size where it exists); any other
failure gives status `error` with the message (the job itself succeeds, like a benchmark cell, and
the report shows it).
"""

from __future__ import annotations

import inspect
import traceback
from pathlib import Path

import numpy as np

from infbench.backends.base import BackendUnavailable, run_batches
from infbench.backends.registry import spec
from infbench.core import cpus
from infbench.core.arguments import paths, schema_default
from infbench.core.cell import Cell
from infbench.core.integrity import DamagedInput
from infbench.core.io import size_mib, write_json
from infbench.stages import data, model, model_onnx
from infbench.stages.model import input_norm
from infbench.stages.reference import agreement
from infbench.study.grid import artifact_path, results_name, study_dir

NUMBERS = (
    "accuracy_top1",
    "accuracy_drop",
    "top1_agreement",
    "max_abs_logit_diff",
    "model_size_mib",
    "over_tolerance",
    "reference_top1",
    "images",
)


def accuracy_result_path(dataset: str, model: str, backend: str, precision: str, device: str) -> str:
    return f"{study_dir(dataset, model)}/accuracy/{backend}/{precision}/{device}.json"


def planned(cells, dataset: str) -> list[str]:
    """One accuracy result per (model, backend, precision, device) that has benchmark cells."""
    return sorted({accuracy_result_path(dataset, c.model, c.backend, c.precision, c.device) for c in cells})


def eval_cell(model: str, backend: str, precision: str, device: str, config: dict) -> Cell:
    """What an accuracy job runs: the training resolution at the batch of config `accuracy`
    (fixed, so a grid value added never reruns the accuracy jobs; shape-pinned artifacts at the
    training size and that batch are shared with the bench cells where the grid has them)."""
    batch = model_onnx.eval_batch(config, int(config.get("accuracy", {}).get("batch_size", 32)))
    return Cell(model, backend, precision, device, int(config["train"]["image_size"]), batch)


def eval_artifact(model: str, backend: str, precision: str, device: str, config: dict) -> str:
    """The file an accuracy job loads (the one that backend's cells load, at the eval cell's shape)."""
    return artifact_path(eval_cell(model, backend, precision, device, config), results_name(config))


def variant_name(cell: Cell) -> str:
    """What the numbers are of: the artifact the backend loads, named within the study's folder
    without its extension (onnx/int8_static, checkpoint, aoti/cuda/fp16/224x32); the precision is
    its own column."""
    return str(Path(spec(cell.backend).artifact(cell).path).with_suffix(""))


def reference_logits(checkpoint: Path, images: np.ndarray, batch: int = 64) -> np.ndarray:
    """PyTorch FP32 on the CPU: the reference every variant is compared with."""
    return model.logits(model.load_checkpoint(checkpoint), images, batch)


def compare(logits: np.ndarray, reference: np.ndarray, labels: np.ndarray, tolerance_points: float) -> dict:
    """Top-1 of `logits`, its drop against the reference in points, agreement and max |Δ logits|. Unlabelled
    images are scored against the reference's top-1: top-1 is then the agreement (`labels` says so)."""
    basis, labels = data.labels_basis(labels), data.scoring_labels(labels, reference)
    top1 = float((logits.argmax(1) == labels).mean())
    reference_top1 = float((reference.argmax(1) == labels).mean())
    drop = round((reference_top1 - top1) * 100, 6)
    return {
        "accuracy_top1": top1,
        "accuracy_drop": drop,
        **agreement(logits, reference),
        "over_tolerance": bool(drop > tolerance_points),
        "reference_top1": reference_top1,
        "labels": basis,
    }


def record(variant: str, model: str, backend: str, precision: str, device: str, artifact, **fields) -> dict:
    """An accuracy record before its figures: status error, every number null but the artifact's size."""
    return {
        "variant": variant,
        "model": model,
        "backend": backend,
        "precision": precision,
        "device": device,
        "status": "error",
        "error": None,
        **fields,
        **dict.fromkeys(NUMBERS),
        "model_size_mib": size_mib(artifact) if artifact else None,
    }


def score(result: dict, logits_of, checkpoint: Path, dataset: Path, image_size: int, tolerance_points: float) -> dict:
    """Fill `result` with the figures of `logits_of(test images at image_size)` against the fp32 reference
    (status ok), or with why there are none: 'unavailable' (BackendUnavailable) or 'error'. Never raises for a
    failure of the variant itself; a damaged input is not one (the job fails and the file is rebuilt)."""
    try:
        images, labels = data.load_split(dataset, "test")

        x = data.to_input(images, image_size, input_norm(checkpoint))
        result.update(compare(logits_of(x), reference_logits(checkpoint, x), labels, tolerance_points))
        result["status"] = "ok"
    except BackendUnavailable as exc:
        result.update(status="unavailable", error=str(exc))
    except DamagedInput:
        raise
    except Exception as exc:  # a broken variant is a result to show, not a crash of the workflow
        traceback.print_exc()
        result.update(status="error", error=f"{type(exc).__name__}: {exc}")
    return result


def evaluate(
    model: str,
    backend: str,
    precision: str,
    device: str,
    artifact: Path,
    checkpoint: Path,
    dataset: Path,
    image_size: int,
    batch: int,
    threads: int,
    tolerance_points: float,
    options: dict | None = None,
) -> dict:
    """The accuracy record of one variant, run through its backend (see `score`)."""
    cell = Cell(model, backend, precision, device, image_size, batch)
    result = record(
        variant_name(cell),
        model,
        backend,
        precision,
        device,
        artifact,
        image_size=image_size,
        tolerance_points=tolerance_points,
    )

    def logits_of(x: np.ndarray) -> np.ndarray:
        runner = spec(backend).instance(cell, artifact, threads, options)
        runner.check_available()
        runner.load()
        result["model_size_mib"] = runner.artifact_mib()  # what ran (cast weights, engine), not the file
        if runner.artifact_info():  # how the variant was made (an NNCF model: its tolerance met or missed)
            result["artifact_info"] = runner.artifact_info()
        return run_batches(runner, x, batch)

    return score(result, logits_of, checkpoint, dataset, image_size, tolerance_points)


def add_arguments(s) -> None:
    """The arguments of both accuracy stages (`accuracy`, `expected-accuracy`)."""
    s.add_argument("--model", default=schema_default("model.name"))
    s.add_argument("--checkpoint", type=Path, required=True, help="fp32 reference")
    s.add_argument("--dataset", type=Path, required=True)
    s.add_argument("--image-size", type=int, required=True, help="the training resolution")
    s.add_argument("--batch", type=int, default=schema_default("accuracy.batch_size"))
    s.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 = every CPU the job may use")
    tolerance = schema_default("accuracy.tolerance_points", float)
    s.add_argument("--tolerance-points", type=float, default=tolerance, help="allowed top-1 drop in points")
    s.add_argument("--out", type=Path, required=True)


def add_parser(sub) -> None:
    """`infbench accuracy` (holds a GPU on --device cuda)."""
    s = sub.add_parser("accuracy", help="one variant's top-1 on the test split vs the fp32 reference → JSON")
    add_arguments(s)
    s.add_argument("--backend", required=True)
    s.add_argument("--precision", required=True)
    s.add_argument("--device", required=True)
    paths(s, "--artifact")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="backend setting")
    s.set_defaults(
        func=lambda a: run_stage(evaluate, a, options=spec(a.backend).parse_options(a.option, a.device)), gpu_stage=True
    )


def run_stage(evaluate_fn, a, **more) -> dict:
    """An accuracy stage: `evaluate_fn` called with the command line's arguments of the same names (threads 0:
    every core), its record written to --out and summed up in one line."""
    given = {**vars(a), "threads": cpus.threads(a.threads), **more}
    result = evaluate_fn(**{k: given[k] for k in inspect.signature(evaluate_fn).parameters})
    write_json(a.out, result)
    print(line(result))
    return result


def line(r: dict) -> str:
    """One line per accuracy record: its figures against the reference, or why it has none."""
    name = r["variant"] if r.get("expected_on") else f"{r['backend']} {r['precision']} {r['device']} ({r['variant']})"
    if r["status"] != "ok":
        return f"{name}: {r['status']}: {r['error']}"
    flag = "OVER TOLERANCE" if r["over_tolerance"] else "within tolerance"
    if data.scored_by_agreement(r):
        flag += f"; scored against {r['labels']}"
    size = f", {r['model_size_mib']:.2f} MiB" if r.get("model_size_mib") is not None else ""
    return (
        f"{name}: ok, top-1 {r['accuracy_top1']:.4f} on {r['images']} test images (fp32 reference "
        f"{r['reference_top1']:.4f}, drop {r['accuracy_drop']:.2f} points: {flag} of {r['tolerance_points']}), "
        f"agreement {r['top1_agreement']:.4f}, max |Δ logits| {r['max_abs_logit_diff']:.3g}{size}{missed(r)}"
    )


def missed(r: dict) -> str:
    """What an accuracy-controlled build that missed its tolerance says (empty otherwise)."""
    info = r.get("artifact_info") or {}
    if info.get("tolerance_met") is not False:
        return ""
    return (
        f"; its accuracy-controlled build missed the {info['max_drop_points']}-point tolerance by "
        f"{info['missed_by_points']:.2f} points on the validation split"
    )
