"""`infbench <stage> …`: the only entry the workflow's rules call.

Every rule's log starts with the exact command line, so a user can rerun one step (one
benchmark cell, say) by hand with the same arguments.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
from pathlib import Path


def _prepare_data(a):
    from infbench import data

    shapes = data.prepare(a.dataset, a.data_dir, a.out, a.calib, a.test, a.seed, a.cifar_md5)
    print("wrote", a.out, {k: list(v) for k, v in shapes.items()})


def _train(a):
    from infbench import train

    result = train.train(
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


def _export_onnx(a):
    from infbench import export

    export.export_onnx(a.checkpoint, a.out, a.dataset, a.image_size, a.opset, a.parity_images, a.atol)


def _bench(a):
    from infbench.backends.base import Cell
    from infbench.bench import load_repetitions, record_repetition, run_cell
    from infbench.gpu_slots import probe_mismatch

    # A probe of another GPU model than this cell's gives no peak to compare with (gpu_slots.probe_mismatch).
    mismatch = probe_mismatch(json.loads(a.probe.read_text()) if a.probe and a.probe.is_file() else None, a.gpu)
    if mismatch:
        a.probe = None
    cell = Cell(a.model, a.backend, a.precision, a.device, a.size, a.batch)
    args = {
        "artifact": str(a.artifact),
        "reference": str(a.reference),
        "threads": a.threads or os.cpu_count(),
        "mode": a.mode,
        "flops": str(a.flops) if a.flops else None,
        "probe": str(a.probe) if a.probe else None,
        "options": dict(kv.split("=", 1) for kv in a.option),
        "tolerance": a.tolerance,
        "repetitions": {"repetitions": a.repetitions, "max_extra": a.max_extra_repetitions},
        "energy_window_s": a.energy_window,
        "interference": {"canary_slowdown": a.canary_slowdown, "foreign_cores": a.foreign_cores},
        "timing": {
            "warmup_s": a.warmup,
            "window_s": a.window,
            "window_iterations": a.window_iterations,
            "windows": a.windows,
            "latency_s": a.latency,
            "latency_iterations": a.latency_iterations,
        },
    }
    judge = ("repetitions", "max_extra_repetitions", "tolerance", "canary_slowdown", "foreign_cores")
    missing = [f"--{k.replace('_', '-')}" for k in judge if getattr(a, k) is None]
    if missing and a.repetition is None:
        raise ValueError(f"bench needs {', '.join(missing)} (or --repetition N to measure one repetition)")
    gpu = {**a.gpu, "probe_mismatch": mismatch} if a.gpu else None
    if a.repetition is not None:  # one repetition, a job of its own
        rep = record_repetition(cell, args, a.repetition, a.out, a.timeout, extra={"gpu": gpu})
        print(f"{cell.key}: repetition {a.repetition}: {rep['status']}" + (f": {rep['error']}" if rep["error"] else ""))
        return
    earlier = load_repetitions(cell, a.repetition_results)
    if earlier and earlier[0].get("gpu"):
        gpu = earlier[0]["gpu"]  # the cell's GPU is the one its repetitions ran on
    result = run_cell(cell, args, a.out, a.timeout, extra={"gpu": gpu}, earlier=earlier)
    print(cell_line(result))


def cell_line(result: dict) -> str:
    """One line per cell: its figures with their uncertainty, or why it has none."""
    from infbench.backends.base import Cell

    line = f"{Cell(**result['cell']).key}: {result['status']}"
    if result.get("throughput_img_s") is None:
        return line + f": {result['error']}"
    runs = result["repetition_runs"]
    line += (
        f", {result['throughput_img_s']:.1f} img/s ±{result['throughput_uncertainty_pct']:.1f}%, "
        f"latency p50 {result['latency_ms_p50']:.3f} ms, {result['repetitions']} repetitions"
        f" ({len(runs)} run, {result['disturbed_repetitions']} disturbed)"
    )
    if result.get("launch_bound"):
        line += ", launch-bound"
    return line


def _reference(a):
    from infbench import reference

    n = reference.write(a.checkpoint, a.dataset, a.size, a.images, a.out)
    print(f"fp32 reference logits of {n} test images at {a.size}x{a.size} → {a.out}")


def _compile_aoti(a):
    from infbench.compile import build_aoti

    build_aoti(a.checkpoint, a.out, a.device, a.precision, a.size, a.batch, a.max_autotune, a.threads)


def _compile_torch_tensorrt(a):
    from infbench.compile import build_torch_tensorrt

    build_torch_tensorrt(
        a.checkpoint, a.out, a.precision, a.size, a.batch, a.dataset, a.calib_images, a.workspace_gb, a.info
    )


def _flops(a):
    from infbench.measure import flops

    info = flops.write(a.checkpoint, a.size, a.out)
    print(
        f"{info['model']} at {a.size}x{a.size}: {info['gflops_per_image']:.4f} GFLOP per image, "
        f"{info['param_elements']} parameters, {info['activation_elements_per_image']:.0f} activation elements moved"
    )


def _probe(a):
    from infbench.measure import probe

    kwargs = {"budget_s": a.budget, "matmul_n": a.matmul_n or None, "copy_mib": a.copy_mib or None}
    result = probe.write(a.device, a.threads or os.cpu_count(), a.out, extra={"gpu": a.gpu}, **kwargs)
    if result["status"] != "ok":
        print(f"probe {a.device}: {result['status']}: {result['error']}")
        return
    peaks = ", ".join(f"{p} {v:.3f}" if v else f"{p} n/a" for p, v in result["peak_tflops"].items())
    bandwidth = result["bandwidth_gb_s"]
    print(
        f"probe {a.device}: peak TFLOP/s {peaks}; copy bandwidth "
        + (f"{bandwidth:.1f} GB/s" if bandwidth else "n/a")
        + f" ({result['wall_s']} s)"
    )


def _quantize_int8(a):
    from infbench import quantize

    if a.mode == "dynamic":
        quantize.quantize_dynamic(a.onnx, a.out, a.per_channel)
    elif a.dataset is None:
        raise ValueError(f"quantize-int8 --mode {a.mode} needs --dataset (its calibration split)")
    else:
        quantize.quantize_static(
            a.onnx,
            a.out,
            a.dataset,
            a.image_size,
            a.method,
            a.samples,
            a.per_channel,
            a.activation_type,
            tensorrt=a.mode == "trt",
        )


def _convert_fp16(a):
    from infbench import quantize

    quantize.convert_fp16(a.onnx, a.out)


def _accuracy(a):
    from infbench import accuracy

    r = accuracy.write(
        a.out,
        model=a.model,
        backend=a.backend,
        precision=a.precision,
        device=a.device,
        artifact=a.artifact,
        checkpoint=a.checkpoint,
        dataset=a.dataset,
        image_size=a.image_size,
        batch=a.batch,
        threads=a.threads or os.cpu_count(),
        tolerance_points=a.tolerance_points,
        options=dict(kv.split("=", 1) for kv in a.option),
    )
    line = f"{r['backend']} {r['precision']} {r['device']} ({r['variant']}): {r['status']}"
    if r["status"] == "ok":
        flag = "OVER TOLERANCE" if r["over_tolerance"] else "within tolerance"
        line += (
            f", top-1 {r['accuracy_top1']:.4f} on {r['images']} test images (fp32 reference "
            f"{r['reference_top1']:.4f}, drop {r['accuracy_drop']:.2f} points: {flag} of "
            f"{r['tolerance_points']}), agreement {r['top1_agreement']:.4f}, max |Δ logits| "
            f"{r['max_abs_logit_diff']:.3g}, {r['model_size_mib']:.2f} MiB"
        )
    else:
        line += f": {r['error']}"
    print(line)


def _expected_accuracy(a):
    from infbench import tensorrt_int8

    r = tensorrt_int8.write_expected(
        a.out,
        backend=a.backend,
        model=a.model,
        artifact=a.artifact,
        checkpoint=a.checkpoint,
        dataset=a.dataset,
        image_size=a.image_size,
        batch=a.batch,
        calib_images=a.calib_images,
        threads=a.threads or os.cpu_count(),
        tolerance_points=a.tolerance_points,
    )
    line = f"{r['variant']}: {r['status']}"
    if r["status"] == "ok":
        line += (
            f", top-1 {r['accuracy_top1']:.4f} (fp32 {r['reference_top1']:.4f}, drop {r['accuracy_drop']:.2f} points),"
            f" agreement {r['top1_agreement']:.4f} on {r['images']} test images"
        )
    else:
        line += f": {r['error']}"
    print(line)


def _aggregate(a):
    from infbench.io import read_json
    from infbench.report.aggregate import aggregate

    meta = json.loads(a.meta)
    meta["model_accuracy"] = read_json(a.train_metrics)["test_accuracy"]
    if a.probes:
        from infbench.measure.probe import peaks_rows

        meta["peaks"] = peaks_rows([read_json(p) for p in a.probes])
    compare = [dict(label=c.split("=", 1)[0], path=c.split("=", 1)[-1]) for c in a.compare]
    accuracy = [read_json(p) for p in a.accuracy]
    df = aggregate(a.results, a.out_dir, meta, compare, accuracy)
    print(f"aggregated {df.height} cells into {a.out_dir}")


def _report(a):
    import polars as pl

    from infbench.io import read_json
    from infbench.report.build import build_report

    build_report(pl.read_parquet(a.summary), read_json(a.meta), a.out_dir)
    print(f"report written to {a.out_dir / 'index.html'}")


def _plan(a):
    from infbench.plan import main

    print("\n".join(main(a.configfile)))


def _gpu_slot(a):
    from infbench import gpu_slots

    if a.list:
        for gpu in gpu_slots.usable(gpu_slots.discover(), os.environ.get("CUDA_VISIBLE_DEVICES")):
            print(gpu_slots.describe(gpu))
        return
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        raise ValueError("gpu-slot needs a command to run: infbench gpu-slot -- COMMAND [ARGS...]")
    # The command itself holds the slot's lock (inherited across exec): released when it ends, even by kill -9.
    gpu, fd = gpu_slots.take(shlex.join(command), a.timeout)
    if fd is not None:
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    os.execvp(command[0], command)


# Stages that use the GPU on --device cuda (Torch-TensorRT builds always): each holds a GPU of its own.
GPU_STAGES = {"bench", "probe", "accuracy", "compile-aoti", "compile-torch-tensorrt"}


def _uses_gpu(a) -> bool:
    return a.stage in GPU_STAGES and getattr(a, "device", "cuda") == "cuda"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="infbench", description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="stage", required=True)

    s = sub.add_parser("prepare-data", help="dataset → results/data/<name>.npz")
    s.add_argument("--dataset", required=True, choices=["digits", "cifar10"])
    s.add_argument("--data-dir", type=Path, default=Path("data"))
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--calib", type=int, default=200)
    s.add_argument("--test", type=int, default=400)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--cifar-md5", default=None, help="expected md5 of the archive; default: infbench.data's")
    s.set_defaults(func=_prepare_data)

    s = sub.add_parser("train", help="train ResNet-18 → checkpoint + metrics")
    s.add_argument("--dataset", type=Path, required=True)
    s.add_argument("--checkpoint", type=Path, required=True)
    s.add_argument("--metrics", type=Path, required=True)
    s.add_argument("--arch", default="resnet18")
    s.add_argument("--stem", default="imagenet", choices=["imagenet", "cifar"])
    s.add_argument("--epochs", type=int, default=6)
    s.add_argument("--batch-size", type=int, default=64)
    s.add_argument("--lr", type=float, default=0.05)
    s.add_argument("--weight-decay", type=float, default=5e-4)
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--threads", type=int, default=os.cpu_count())
    s.add_argument("--image-size", type=int, default=32)
    s.set_defaults(func=_train)

    s = sub.add_parser("export-onnx", help="checkpoint → ONNX (dynamic shapes), checked against PyTorch")
    s.add_argument("--checkpoint", type=Path, required=True)
    s.add_argument("--dataset", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--image-size", type=int, default=32)
    s.add_argument("--opset", type=int, default=17)
    s.add_argument("--parity-images", type=int, default=64)
    s.add_argument("--atol", type=float, default=1e-4)
    s.set_defaults(func=_export_onnx)

    s = sub.add_parser("bench", help="measure one cell → result JSON (never fails for a failed measurement)")
    s.add_argument("--model", default="resnet18")
    s.add_argument("--backend", required=True)
    s.add_argument("--precision", required=True)
    s.add_argument("--device", required=True)
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--artifact", type=Path, required=True)
    s.add_argument("--reference", type=Path, required=True, help="inputs and fp32 logits (infbench reference)")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 = every core")
    # The measurement protocol's settings: required, their defaults live in config/schema.yaml only.
    s.add_argument("--timeout", type=float, required=True, help="seconds a repetition may take")
    s.add_argument("--mode", required=True, choices=["device", "end_to_end"])
    s.add_argument("--warmup", type=float, required=True, help="warm-up budget per repetition, s")
    s.add_argument("--window", type=float, required=True, help="least duration of a throughput window, s")
    s.add_argument("--window-iterations", type=int, required=True)
    s.add_argument("--windows", type=int, required=True)
    s.add_argument("--latency", type=float, required=True, help="least duration of the latency phase, s")
    s.add_argument("--latency-iterations", type=int, required=True)
    s.add_argument("--energy-window", type=float, required=True, help="GPU energy window, s (0: none)")
    # How repetitions are judged: required unless --repetition (one repetition judges nothing).
    s.add_argument("--repetitions", type=int)
    s.add_argument("--max-extra-repetitions", type=int)
    s.add_argument("--tolerance", type=float)
    s.add_argument("--canary-slowdown", type=float, help="canary/quiet time that marks disturbed")
    s.add_argument("--foreign-cores", type=float, help="other processes' cores that mark disturbed")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="backend setting")
    s.add_argument("--flops", type=Path, default=None, help="FLOP count of the model at this size (infbench flops)")
    s.add_argument("--probe", type=Path, default=None, help="hardware probe of the device (infbench probe)")
    s.add_argument("--repetition", type=int, default=None, help="measure only this repetition (1, 2, …) → --out")
    s.add_argument(
        "--repetition-results", type=Path, nargs="*", default=[], help="repetitions measured by earlier jobs"
    )
    s.set_defaults(func=_bench)

    s = sub.add_parser("reference", help="checkpoint → fp32 logits of the first test images (agreement reference)")
    s.add_argument("--checkpoint", type=Path, required=True)
    s.add_argument("--dataset", type=Path, required=True)
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--images", type=int, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_reference)

    s = sub.add_parser("flops", help="checkpoint → FLOPs and bytes moved per image at one image size")
    s.add_argument("--checkpoint", type=Path, required=True)
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_flops)

    s = sub.add_parser("probe", help="measure a device's peak matmul FLOP/s per precision and copy bandwidth")
    s.add_argument("--device", required=True, choices=["cpu", "cuda"])
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--threads", type=int, default=0, help="CPU threads; 0 = every core")
    s.add_argument("--budget", type=float, default=1.5, help="seconds per measurement (per precision, and the copy)")
    s.add_argument("--matmul-n", type=int, default=0, help="square matrix size; 0 = the device's default")
    s.add_argument("--copy-mib", type=int, default=0, help="copied buffer size in MiB; 0 = the device's default")
    s.set_defaults(func=_probe)

    s = sub.add_parser("compile-aoti", help="checkpoint → AOTInductor package (.pt2) for one device/precision/shape")
    s.add_argument("--checkpoint", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--device", required=True, choices=["cpu", "cuda"])
    s.add_argument("--precision", required=True, choices=["fp32", "tf32", "fp16", "bf16"])
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--max-autotune", action="store_true", help="Inductor max_autotune while compiling")
    s.add_argument("--threads", type=int, default=0, help="intra-op threads while exporting; 0 = default")
    s.set_defaults(func=_compile_aoti)

    s = sub.add_parser(
        "compile-torch-tensorrt", help="checkpoint → Torch-TensorRT ExportedProgram (.ep) for one precision/shape"
    )
    s.add_argument("--checkpoint", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--info", type=Path, default=None, help="build record (time, settings); default: --out as .json")
    s.add_argument("--precision", required=True, choices=["fp32", "fp16", "bf16", "int8"])
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--dataset", type=Path, default=None, help="calibration images for int8")
    s.add_argument("--calib-images", type=int, default=128)
    s.add_argument("--workspace-gb", type=float, default=4.0)
    s.set_defaults(func=_compile_torch_tensorrt)

    s = sub.add_parser("quantize-int8", help="fp32 ONNX → INT8 ONNX (static QDQ calibrated, or dynamic)")
    s.add_argument("--onnx", type=Path, required=True, help="the fp32 model")
    s.add_argument("--out", type=Path, required=True)
    s.add_argument(
        "--mode", default="static", choices=["static", "dynamic", "trt"], help="trt: symmetric int8 Q/DQ for TensorRT"
    )
    s.add_argument("--dataset", type=Path, default=None, help="calibration split (static)")
    s.add_argument("--image-size", type=int, default=32, help="calibration resolution (static)")
    s.add_argument("--method", default="MinMax", choices=["MinMax", "Entropy", "Percentile"])
    s.add_argument("--samples", type=int, default=200, help="calibration images (static)")
    s.add_argument("--per-channel", action=argparse.BooleanOptionalAction, default=True)
    s.add_argument("--activation-type", default="uint8", choices=["uint8", "int8"])
    s.set_defaults(func=_quantize_int8)

    s = sub.add_parser("convert-fp16", help="fp32 ONNX → fp16 ONNX (float32 inputs and outputs) for GPU EPs")
    s.add_argument("--onnx", type=Path, required=True, help="the fp32 model")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_convert_fp16)

    s = sub.add_parser("accuracy", help="one variant's top-1 on the test split vs the fp32 reference → JSON")
    s.add_argument("--model", default="resnet18")
    s.add_argument("--backend", required=True)
    s.add_argument("--precision", required=True)
    s.add_argument("--device", required=True)
    s.add_argument("--artifact", type=Path, required=True)
    s.add_argument("--checkpoint", type=Path, required=True, help="fp32 reference")
    s.add_argument("--dataset", type=Path, required=True)
    s.add_argument("--image-size", type=int, required=True, help="the training resolution")
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 = every core")
    s.add_argument("--tolerance-points", type=float, default=1.0, help="allowed top-1 drop in points")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="backend setting")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_accuracy)

    s = sub.add_parser(
        "expected-accuracy", help="a TensorRT INT8 variant's accuracy simulated on the CPU (before TensorRT exists)"
    )
    s.add_argument("--backend", required=True, choices=["onnxruntime_trt", "torch_tensorrt"])
    s.add_argument("--model", default="resnet18")
    s.add_argument("--artifact", type=Path, default=None, help="onnxruntime_trt: the Q/DQ ONNX (int8_trt.onnx)")
    s.add_argument("--checkpoint", type=Path, required=True, help="fp32 reference (and torch_tensorrt's model)")
    s.add_argument("--dataset", type=Path, required=True)
    s.add_argument("--image-size", type=int, required=True, help="the training resolution")
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--calib-images", type=int, default=128, help="torch_tensorrt: Model Optimizer calibration images")
    s.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 = every core")
    s.add_argument("--tolerance-points", type=float, default=1.0, help="allowed top-1 drop in points")
    s.add_argument("--out", type=Path, required=True)
    s.set_defaults(func=_expected_accuracy)

    s = sub.add_parser("aggregate", help="result JSONs → summary.parquet/csv + meta.json")
    s.add_argument("--results", type=Path, nargs="*", default=[])
    s.add_argument("--accuracy", type=Path, nargs="*", default=[])
    s.add_argument("--probes", type=Path, nargs="*", default=[], help="hardware probe JSONs → meta.json 'peaks'")
    s.add_argument("--train-metrics", type=Path, required=True)
    s.add_argument("--meta", default="{}", help="JSON object merged into meta.json")
    s.add_argument("--compare", action="append", default=[], metavar="LABEL=FOLDER")
    s.add_argument("--out-dir", type=Path, required=True)
    s.set_defaults(func=_aggregate)

    s = sub.add_parser("plan", help="cells per device and backend, how many are done, the time the rest should take")
    s.add_argument("--configfile", type=Path, nargs="+", default=[Path("config/config.yaml")], help="merged in order")
    s.set_defaults(func=_plan)

    s = sub.add_parser("gpu-slot", help="run a command on a free GPU of its own (CUDA_VISIBLE_DEVICES), or --list")
    s.add_argument("--list", action="store_true", help="print the GPUs that slots are taken from, and exit")
    s.add_argument("--timeout", type=float, default=None, help="seconds to wait for a free GPU (default 3600)")
    s.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    s.set_defaults(func=_gpu_slot)

    s = sub.add_parser("report", help="summary + meta → index.html, summary.md, plots/")
    s.add_argument("--summary", type=Path, required=True)
    s.add_argument("--meta", type=Path, required=True)
    s.add_argument("--out-dir", type=Path, required=True)
    s.set_defaults(func=_report)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] != ["plan"]:  # a rule's log starts with its command; `plan` is for people
        print("command: infbench " + shlex.join(argv), flush=True)
    args = parser().parse_args(argv)
    from infbench import integrity

    integrity.WRITER["stage"] = args.stage
    try:
        from infbench.gpu_slots import slot

        # GPU jobs: a GPU slot for the whole stage, exported before any measuring process starts.
        label = f"{args.stage} {getattr(args, 'out', '')}".strip()
        with slot(label) if _uses_gpu(args) else contextlib.nullcontext() as args.gpu:
            args.func(args)
    except integrity.DamagedInput as exc:  # never a result made of a damaged input: fail, rebuild it next run
        integrity.remove(exc.path)
        print(
            f"infbench {args.stage}: error: {exc}; removed it, the next `snakemake --cores 1 report` rebuilds it",
            file=sys.stderr,
        )
        return 1
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"infbench {args.stage}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
