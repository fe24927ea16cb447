"""Serving check: infbench's serving figures beside the vendors' own, side by side in one run.

A benchmark (it times things). For each OpenVINO precision, round by round, each round in this order:
  (1) Offline: `benchmark_app -hint throughput -api async` on the file, shape, streams, threads and f32 inference
      precision that infbench's serving runner compiles with (its -load_config), in its full mode (`-inference_only
      false`: a request's inputs set before each start, the work infbench's runner does: the verdict's figure)
      and in its default inference-only mode (inputs filled once: an upper bound that no server feeding new
      images reaches, printed beside), then one repetition of `infbench serve --scenario Offline` (LoadGen,
      OpenVINO's AsyncInferQueue, `--streams` streams);
  (2) SingleStream: one repetition of `infbench serve --scenario SingleStream` (one query at a time, answered in
      LoadGen's issue thread by the batch-1 cell's own backend);
  (3) the one-at-a-time benchmark cell at batch 1 (`infbench bench`, measured here the way the cell's rule measures
      it: the median of its p90s over the rounds is what SingleStream's p90 is compared with; one cell in the
      middle round, as before, landed 33% below SingleStream's median in a round that was fast for both).
infbench's figure over the rounds is combined by infbench's own rule (serving/command.py `interval`: the median,
the printed ±); the others' figures are their medians over the rounds. It prints the difference and whether it
lies within infbench's ±.

  PYTHONPATH=workflow python benchmarks/serving_check.py --study results/digits/resnet18 --size 32 --streams 2
The study folder needs onnx/fp32.onnx and onnx/int8_static.onnx and reference/<size>.npz (a run of the
default workflow, or of config/serving.yaml, makes them).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from openvino_fidelity import benchmark_app, infbench_cell  # noqa: E402  (benchmarks/ is no package)

from infbench.serving.command import interval  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ASYNC_THROUGHPUT = ("-hint", "throughput", "-api", "async")
# benchmark_app fills each request's inputs once and then only restarts it (its inference-only mode, the default
# for a static shape); its full mode sets a request's inputs before every start, as a server feeding new images
# must and as infbench's Offline runner does (OpenVINO int8, 32 px, 2 streams, 2-core VM: 1-7% below the
# inference-only mode, README "Serving"). The verdict compares like with like: the full mode.
FULL_MODE = (*ASYNC_THROUGHPUT, "-inference_only", "false")


def serve(study: Path, precision: str, size: int, scenario: str, requests: int, a, tmp: Path, rep: int) -> float:
    """One repetition of `infbench serve` (a process of its own): its figure."""
    from infbench.backends.registry import spec
    from infbench.core.cell import Cell

    artifact = study / spec("openvino").artifact(Cell("m", "openvino", precision, "cpu", size, 1)).path
    out = tmp / f"{precision}-{scenario}-{requests}-{rep}.json"
    cmd = [sys.executable, "-m", "infbench.cli", "serve", "--model", study.name, "--backend", "openvino"]
    cmd += ["--precision", precision, "--device", "cpu", "--size", str(size), "--scenario", scenario]
    cmd += ["--artifact", str(artifact), "--reference", str(study / "reference" / f"{size}.npz")]
    cmd += ["--requests", str(requests), "--repetitions", "1", "--duration", str(a.seconds)]
    cmd += ["--threads", str(a.threads), "--logs", str(out.with_suffix(".loadgen")), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}
    subprocess.run(cmd, check=True, capture_output=True, text=True, env=env)
    result = json.loads(out.read_text())
    if result["status"] != "ok":
        raise RuntimeError(f"infbench serve {precision} {scenario}: {result['status']}: {result.get('error')}")
    return result["figure"]["value"]


def throughput_config(threads: int, streams: int) -> dict:
    """What the serving runner compiles with (backends/openvino.py, serving_runner), as -load_config."""
    return {
        "CPU": {
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "THROUGHPUT",
            "NUM_STREAMS": str(streams),
            "INFERENCE_NUM_THREADS": str(threads),
        }
    }


def one_at_a_time(study: Path, precision: str, size: int, threads: int, tmp: Path) -> dict:
    """The batch-1 benchmark cell, measured here."""
    reference = study / "reference" / f"{size}.npz"
    return infbench_cell(study, precision, size, 1, threads, reference, tmp / f"cell-{precision}.json")


def runs(values: list[float], digits: int = 0) -> str:
    return ", ".join(f"{v:.{digits}f}" for v in values)


def pct(figure: dict) -> float:
    return 100 * (figure["uncertainty_rel"] or 0.0)


def line(what: str, ours: float, plus_minus: float, theirs: float, unit: str, judged: bool = True) -> str:
    diff = (ours - theirs) / theirs * 100
    # a ± above 50% is no interval (the report prints the repetitions' range instead): no verdict from it
    within = "(bound)" if not judged else "spread" if plus_minus > 50 else "yes" if abs(diff) <= plus_minus else "NO"
    return f"{what:34s} {ours:12.3f} {plus_minus:6.1f} {theirs:14.3f} {diff:7.1f}  {within:8s} {unit}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--study", type=Path, default=Path("results/digits/resnet18"))
    p.add_argument("--precisions", nargs="+", default=["fp32", "int8"])
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--streams", type=int, default=2, help="OpenVINO streams (= infbench's requests in flight)")
    p.add_argument("--rounds", type=int, default=5, help="rounds: infbench's repetitions and benchmark_app's runs")
    p.add_argument("--seconds", type=float, default=3, help="each run's duration")
    p.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    a = p.parse_args(argv)
    from infbench.backends.registry import spec
    from infbench.core.cell import Cell

    tmp = Path(tempfile.mkdtemp(prefix="serving-check-"))
    rows = []
    for precision in a.precisions:
        model = a.study / spec("openvino").artifact(Cell("m", "openvino", precision, "cpu", a.size, 1)).path
        config = throughput_config(a.threads, a.streams)
        theirs, bound, offline, single, cells = [], [], [], [], []
        for r in range(a.rounds):
            theirs.append(benchmark_app(model, a.size, 1, config, a.seconds, tmp, FULL_MODE)["throughput_img_s"])
            bound.append(benchmark_app(model, a.size, 1, config, a.seconds, tmp, ASYNC_THROUGHPUT)["throughput_img_s"])
            offline.append(serve(a.study, precision, a.size, "Offline", a.streams, a, tmp, r))
            single.append(serve(a.study, precision, a.size, "SingleStream", 1, a, tmp, r))
            cells.append(one_at_a_time(a.study, precision, a.size, a.threads, tmp)["latency_ms_p90"])
        ours = interval(offline)
        rows.append(
            line(
                f"{precision} Offline ({a.streams} streams)",
                ours["value"],
                pct(ours),
                statistics.median(theirs),
                "samples/s vs benchmark_app -hint throughput -inference_only false",
            )
        )
        print(rows[-1], f"(infbench: {runs(offline)}; benchmark_app: {runs(theirs)})", flush=True)
        rows.append(
            line(
                f"{precision} Offline ({a.streams} streams)",
                ours["value"],
                pct(ours),
                statistics.median(bound),
                "samples/s vs benchmark_app's inference-only mode (inputs filled once: an upper bound)",
                judged=False,
            )
        )
        print(rows[-1], f"(benchmark_app inference-only: {runs(bound)})", flush=True)
        ours = interval(single)
        rows.append(
            line(
                f"{precision} SingleStream p90 (1 stream)",
                ours["value"],
                pct(ours),
                statistics.median(cells),
                "ms vs the batch-1 cell's p90, the median of one cell a round",
            )
        )
        print(rows[-1], f"(infbench: {runs(single, 3)}; the cell: {runs(cells, 3)})", flush=True)
    head = f"{'':34s} {'infbench':>12s} {'±%':>6s} {'other':>14s} {'diff %':>7s}  within ±"
    print(f"\nopenvino on the CPU, {a.size} px, batch 1, {a.threads} threads; {a.rounds} rounds of {a.seconds:g} s")
    print("\n".join([head, *rows]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
