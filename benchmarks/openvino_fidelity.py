"""OpenVINO fidelity: infbench's openvino cells beside OpenVINO's own `benchmark_app` on the same model file.

A benchmark (it times things). For each case (precision, size, batch) it runs, interleaved round by round
(infbench first in odd rounds, benchmark_app first in even ones, so that drift hits both alike):
  (1) the infbench cell, through the measurement protocol of the default config (`infbench.bench.cell.run_cell`:
      repetitions in fresh processes, warm-up, throughput windows, latency phase), and
  (2) `benchmark_app` (shipped in the openvino package) on the same file and static shape, the synchronous
      API (one request at a time, as a cell runs), with the CPU plugin settings the cell compiles with
      (`OpenVINO.compile_config()`: latency hint, one stream, the cell's threads, f32 inference precision)
      passed as its -load_config.
It prints both: infbench's throughput and latency p50 with the uncertainty infbench prints for them, and
benchmark_app's throughput and median latency (medians over the rounds), with the difference and whether it
lies within infbench's ±. Batch 1 compares latency (benchmark_app's median against infbench's p50).

  PYTHONPATH=workflow python benchmarks/openvino_fidelity.py --study results/digits/resnet18 \\
      --cases fp32:32:8 fp32:32:32 int8:32:8 int8:32:32 fp32:32:1 int8:32:1 --rounds 2
The study folder needs checkpoint.pt, onnx/fp32.onnx and onnx/int8_static.onnx, and data.npz beside it
(a run of the default workflow makes them); the agreement references are made for the cases' batches.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
NOT_FLAGS = ("agreement_images", "cpu_threads")  # bench settings the rules read, not `infbench bench`


def default_protocol() -> list[str]:
    """The `infbench bench` measurement flags of the default config (config/config.yaml over the schema's
    defaults), named as the bench stage names them (warmup_s → --warmup)."""
    schema = yaml.safe_load((REPO / "config/schema.yaml").read_text())["properties"]["bench"]["properties"]
    bench = {k: v["default"] for k, v in schema.items()} | yaml.safe_load((REPO / "config/config.yaml").read_text())[
        "bench"
    ]
    flags = []
    for key, value in bench.items():
        if key not in NOT_FLAGS:
            flags += ["--" + key.removesuffix("_s").replace("_", "-"), str(value)]
    return flags


def references(study: Path, cases: list[str], tmp: Path) -> dict[int, Path]:
    """The agreement reference of each size: the study's own (`reference/<size>.npz`, `agreement_images`
    images that a cell's batches cycle through), else one written here the same way."""
    from infbench.stages.reference import write

    out = {}
    for size in sorted({int(case.split(":")[1]) for case in cases}):
        out[size] = study / "reference" / f"{size}.npz"
        if not out[size].exists():
            out[size] = tmp / f"reference_{size}.npz"
            write(study / "checkpoint.pt", study.parent / "data.npz", size, 32, out[size])
    return out


def infbench_cell(study: Path, precision: str, size: int, batch: int, threads: int, reference: Path, out: Path) -> dict:
    from infbench.backends.registry import spec
    from infbench.bench.cell import run_cell
    from infbench.bench.command import measurement_args
    from infbench.cli import parser
    from infbench.core.cell import Cell

    cell = Cell(study.name, "openvino", precision, "cpu", size, batch)
    artifact = study / spec("openvino").artifact(cell).path
    argv = ["bench", "--backend", "openvino", "--precision", precision, "--device", "cpu", "--size", str(size)]
    argv += ["--batch", str(batch), "--artifact", str(artifact), "--reference", str(reference)]
    argv += ["--threads", str(threads), "--out", str(out), *default_protocol()]
    a = parser("bench").parse_args(argv)
    return run_cell(cell, measurement_args(a), out, a.timeout)


def load_config(study: Path, precision: str, size: int, batch: int, threads: int) -> dict:
    """benchmark_app's -load_config: the CPU plugin settings the infbench cell compiles with."""
    from infbench.backends.registry import spec
    from infbench.core.cell import Cell

    cell = Cell(study.name, "openvino", precision, "cpu", size, batch)
    backend = spec("openvino").instance(cell, study / spec("openvino").artifact(cell).path, threads)
    text = {True: "YES", False: "NO"}
    return {
        "CPU": {k: text.get(v, str(v)) if isinstance(v, bool) else str(v) for k, v in backend.compile_config().items()}
    }


# -hint none: benchmark_app then sets no setting of its own; the cell's come from -load_config
SYNC = ("-hint", "none", "-api", "sync")


def benchmark_app(model: Path, size: int, batch: int, config: dict, seconds: float, tmp: Path, mode=SYNC) -> dict:
    """benchmark_app's throughput (img/s) and median latency (ms), from its report (`mode`: its hint and API)."""
    cfg = tmp / "load_config.json"
    cfg.write_text(json.dumps(config))
    tool = shutil.which("benchmark_app")
    cmd = [tool] if tool else [sys.executable, "-m", "openvino.tools.benchmark.main"]
    cmd += ["-m", str(model), "-d", "CPU", "-shape", f"[{batch},3,{size},{size}]", *mode]
    cmd += ["-load_config", str(cfg), "-t", str(max(1, round(seconds)))]  # whole seconds only
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120)
    if proc.returncode != 0:
        raise RuntimeError(f"benchmark_app failed: {proc.stdout[-1500:]}{proc.stderr[-1500:]}")
    text = proc.stdout + proc.stderr
    throughput = re.search(r"Throughput:\s+([\d.]+) FPS", text)
    median = re.search(r"Median:\s+([\d.]+) (ms|us)", text)  # below a millisecond it reports microseconds
    if not (throughput and median):
        raise RuntimeError(f"benchmark_app's report has no throughput or median latency: {text[-1500:]}")
    scale = 1e-3 if median.group(2) == "us" else 1.0
    return {"throughput_img_s": float(throughput.group(1)), "latency_ms_median": float(median.group(1)) * scale}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", type=Path, default=Path("results/digits/resnet18"))
    p.add_argument("--cases", nargs="+", default=["fp32:32:8", "fp32:32:32", "int8:32:8", "int8:32:32", "fp32:32:1"])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5, help="benchmark_app's duration (-t) per run")
    p.add_argument("--threads", type=int, default=os.cpu_count())
    args = p.parse_args(argv)
    from infbench.backends.registry import spec
    from infbench.core.cell import Cell

    tmp = Path(tempfile.mkdtemp(prefix="openvino-fidelity-"))
    reference = references(args.study, args.cases, tmp)
    ours: dict[str, list[dict]] = {c: [] for c in args.cases}
    theirs: dict[str, list[dict]] = {c: [] for c in args.cases}
    for r in range(args.rounds):
        for case in args.cases:
            precision, size, batch = case.split(":")
            size, batch = int(size), int(batch)
            model = args.study / spec("openvino").artifact(Cell("m", "openvino", precision, "cpu", size, batch)).path
            config = load_config(args.study, precision, size, batch, args.threads)
            for tool in ("infbench", "benchmark_app") if r % 2 == 0 else ("benchmark_app", "infbench"):
                if tool == "infbench":
                    out = tmp / f"{case}_{r}.json"
                    ours[case].append(
                        infbench_cell(args.study, precision, size, batch, args.threads, reference[size], out)
                    )
                else:
                    theirs[case].append(benchmark_app(model, size, batch, config, args.seconds, tmp))
            print(
                f"round {r + 1} {case}: infbench {summary(ours[case][-1])}; benchmark_app {theirs[case][-1]}",
                flush=True,
            )
    print(table(args.cases, ours, theirs, args.threads))
    return 0


def summary(cell: dict) -> str:
    if cell.get("throughput_img_s") is None:
        return f"{cell['status']}: {cell['error']}"
    return (
        f"{cell['throughput_img_s']:.0f} img/s ±{cell['throughput_uncertainty_pct']:.1f}%, "
        f"p50 {cell['latency_ms_p50']:.3f} ms ±{cell['latency_uncertainty_pct']:.1f}% ({cell['status']})"
    )


def table(cases, ours, theirs, threads: int) -> str:
    """Both tools' figures per case (medians over the rounds), the difference and whether it is within infbench's ±."""
    lines = [
        f"\nopenvino on the CPU, {threads} threads, one stream, f32 inference precision; medians of the rounds",
        f"{'case':14s} {'figure':12s} {'infbench':>12s} {'±%':>6s} {'benchmark_app':>14s} {'diff %':>7s}  within ±",
    ]
    for case in cases:
        good = [c for c in ours[case] if c.get("throughput_img_s") is not None]
        if not good:
            lines.append(f"{case:14s} {summary(ours[case][-1])}")
            continue
        latency = case.endswith(":1")  # batch 1: the latency figure
        key, pct, theirs_key = (
            ("latency_ms_p50", "latency_uncertainty_pct", "latency_ms_median")
            if latency
            else ("throughput_img_s", "throughput_uncertainty_pct", "throughput_img_s")
        )
        value = statistics.median(c[key] for c in good)
        plus_minus = statistics.median(c[pct] for c in good)
        other = statistics.median(t[theirs_key] for t in theirs[case])
        diff = (value - other) / other * 100
        figure = "p50 ms" if latency else "img/s"
        lines.append(
            f"{case:14s} {figure:12s} {value:12.3f} {plus_minus:6.1f} {other:14.3f} {diff:7.1f}  "
            f"{'yes' if abs(diff) <= plus_minus else 'NO'}"
        )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
