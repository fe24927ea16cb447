"""`infbench <stage> …`: the only entry the workflow's rules call.

Every rule's log starts with the exact command line, so a user can rerun one step (one
benchmark cell, say) by hand with the same arguments.
"""

from __future__ import annotations

import argparse
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

    result = train.train(a.dataset, a.checkpoint, a.metrics, a.arch, a.stem, a.epochs, a.batch_size, a.lr,
                         a.weight_decay, a.seed, a.threads, a.image_size)
    print(f"final test accuracy {result['test_accuracy']:.4f}")


def _export_onnx(a):
    from infbench import export

    export.export_onnx(a.checkpoint, a.out, a.dataset, a.image_size, a.opset, a.parity_images, a.atol)


def _bench(a):
    from infbench.backends.base import Cell
    from infbench.bench import run_cell

    cell = Cell(a.model, a.backend, a.precision, a.device, a.size, a.batch)
    args = {
        "artifact": str(a.artifact), "checkpoint": str(a.checkpoint), "dataset": str(a.dataset),
        "threads": a.threads or os.cpu_count(), "mode": a.mode, "agreement_images": a.agreement_images,
        "options": dict(kv.split("=", 1) for kv in a.option),
        "timing": {"tolerance": a.tolerance, "time_budget_s": a.time_budget, "warmup_budget_s": a.warmup_budget},
    }
    result = run_cell(cell, args, a.out, a.timeout)
    line = f"{cell.key}: {result['status']}"
    if result["status"] == "ok":
        t = result["timing"]
        line += (f", median {t['median_ms']:.3f} ms over {t['iterations']} iterations "
                 f"(95% CI ±{t['ci95_rel']:.1%}), {result['throughput_img_s']:.1f} img/s")
    else:
        line += f": {result['error']}"
    print(line)


def _aggregate(a):
    from infbench.io import read_json
    from infbench.report.aggregate import aggregate

    meta = json.loads(a.meta)
    meta["model_accuracy"] = read_json(a.train_metrics)["test_accuracy"]
    compare = [dict(zip(("label", "path"), c.split("=", 1))) for c in a.compare]
    accuracy = [read_json(p) for p in a.accuracy]
    df = aggregate(a.results, a.out_dir, meta, compare, accuracy)
    print(f"aggregated {df.height} cells into {a.out_dir}")


def _report(a):
    import polars as pl

    from infbench.io import read_json
    from infbench.report.build import build_report

    build_report(pl.read_parquet(a.summary), read_json(a.meta), a.out_dir)
    print(f"report written to {a.out_dir / 'index.html'}")


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
    s.add_argument("--cifar-md5", default="c58f30108f718f92721af3b95e74349a")
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
    s.add_argument("--checkpoint", type=Path, required=True, help="fp32 reference for the agreement check")
    s.add_argument("--dataset", type=Path, required=True)
    s.add_argument("--out", type=Path, required=True)
    s.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 = every core")
    s.add_argument("--timeout", type=float, default=600)
    s.add_argument("--mode", default="device", choices=["device", "end_to_end"])
    s.add_argument("--tolerance", type=float, default=0.02)
    s.add_argument("--time-budget", type=float, default=10)
    s.add_argument("--warmup-budget", type=float, default=5)
    s.add_argument("--agreement-images", type=int, default=32)
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="backend setting")
    s.set_defaults(func=_bench)

    s = sub.add_parser("aggregate", help="result JSONs → summary.parquet/csv + meta.json")
    s.add_argument("--results", type=Path, nargs="*", default=[])
    s.add_argument("--accuracy", type=Path, nargs="*", default=[])
    s.add_argument("--train-metrics", type=Path, required=True)
    s.add_argument("--meta", default="{}", help="JSON object merged into meta.json")
    s.add_argument("--compare", action="append", default=[], metavar="LABEL=FOLDER")
    s.add_argument("--out-dir", type=Path, required=True)
    s.set_defaults(func=_aggregate)

    s = sub.add_parser("report", help="summary + meta → index.html, summary.md, plots/")
    s.add_argument("--summary", type=Path, required=True)
    s.add_argument("--meta", type=Path, required=True)
    s.add_argument("--out-dir", type=Path, required=True)
    s.set_defaults(func=_report)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    print("command: infbench " + shlex.join(argv), flush=True)
    args = parser().parse_args(argv)
    try:
        args.func(args)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"infbench {args.stage}: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
