"""Cells through the measurement protocol, outside Snakemake, with every repetition shown.

A benchmark (it times things): for each cell given, `infbench.bench.cell.run_cell` runs the cell's
repetitions, each in a fresh process, exactly as a workflow cell does; the table shows each
repetition's throughput beside the cell's value, uncertainty, stability and launch-bound verdict,
so the spread between processes is visible.

  PYTHONPATH=workflow python benchmarks/protocol_cells.py --device cuda --repetitions 5 \\
      torch:fp16:224:64 torch:fp32:224:64 torch:fp16:224:256 torch_cudagraphs:fp16:224:64

Without --checkpoint a randomly initialised ResNet-18 is used; the agreement reference is computed
on random inputs (no dataset needed on the GPU machine).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np


def make_checkpoint(tmp: Path) -> Path:
    import torch

    from infbench.stages.model import build

    net = build("resnet18", 10, "imagenet").eval()
    path = tmp / "checkpoint.pt"
    torch.save({"arch": "resnet18", "num_classes": 10, "stem": "imagenet", "state_dict": net.state_dict()}, path)
    return path


def make_reference(checkpoint: Path, size: int, images: int, out: Path) -> Path:
    """Random inputs and their fp32 CPU logits, in the format of rule reference_logits."""
    import torch

    from infbench.stages.model import load_checkpoint

    x = np.random.default_rng(0).standard_normal((images, 3, size, size), dtype=np.float32)
    model = load_checkpoint(checkpoint)
    with torch.inference_mode():
        logits = np.concatenate([model(torch.from_numpy(x[i : i + 16])).numpy() for i in range(0, images, 16)])
    np.savez(out, images=x, logits=logits)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("cells", nargs="+", help="backend:precision:size:batch")
    p.add_argument("--device", default="cuda")
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--repetitions", type=int, default=5)
    p.add_argument("--tolerance", type=float, default=0.05)
    p.add_argument("--window", type=float, default=0.2)
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)

    from infbench.bench.cell import run_cell
    from infbench.core.cell import Cell

    tmp = Path(tempfile.mkdtemp(prefix="protocol-"))
    ckpt = args.checkpoint or make_checkpoint(tmp)
    results = []
    for spec_text in args.cells:
        backend, precision, size, batch = spec_text.split(":")
        size, batch = int(size), int(batch)
        ref = make_reference(ckpt, size, max(batch, 16), tmp / f"ref_{size}_{batch}.npz")
        cell = Cell("resnet18", backend, precision, args.device, size, batch)
        bench_args = {
            "artifact": str(ckpt),
            "reference": str(ref),
            "threads": os.cpu_count(),
            "mode": "device",
            "options": {},
            "tolerance": args.tolerance,
            "repetitions": {"repetitions": args.repetitions, "max_extra": 0},
            "energy_window_s": 1.0 if args.device == "cuda" else 0,
            "interference": {"canary_slowdown": 1.3, "foreign_cores": 0.25},
            "timing": {
                "warmup_s": 1,
                "window_s": args.window,
                "window_iterations": 5,
                "windows": 5,
                "latency_s": 0.5,
                "latency_iterations": 100,
            },
        }
        r = run_cell(cell, bench_args, tmp / f"{backend}_{precision}_{size}x{batch}.json", timeout_s=600)
        results.append(r)
        reps = [x.get("throughput_img_s") for x in r["repetition_runs"]]
        print(json.dumps({"cell": spec_text, "status": r["status"], "repetitions_img_s": reps}), flush=True)

    head = f"{'cell':32s} {'img/s':>10s} {'±%':>6s} {'stability':>9s} {'launch':>6s} {'host':>5s}"
    print(f"\n{head}  repetitions (img/s)")
    for spec_text, r in zip(args.cells, results, strict=True):
        if r.get("throughput_img_s") is None:
            print(f"{spec_text:32s} {r['status']}: {r['error']}")
            continue
        reps = " ".join(f"{x['throughput_img_s']:.0f}" for x in r["repetition_runs"] if x.get("throughput_img_s"))
        host = r.get("host_issue_fraction")
        host = "-" if host is None else f"{host:.2f}"
        print(
            f"{spec_text:32s} {r['throughput_img_s']:10.0f} {r['throughput_uncertainty_pct']:6.1f} "
            f"{r['stability']:>9s} {str(r['launch_bound']):>6s} {host:>5s}  {reps}"
        )
        n = r.get("nvml") or {}
        if n.get("power_w"):
            print(
                f"{'':32s} energy {n['energy_mj_per_image']:.3f} mJ/img × {n['window_img_s']:.0f} img/s = "
                f"{n['energy_mj_per_image'] * n['window_img_s'] / 1000:.1f} W; power {n['power_w']:.1f} W; "
                f"device memory {r['memory'].get('device_peak_mib')} MiB "
                f"(allocator {r['memory'].get('allocator_peak_mib')})"
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
