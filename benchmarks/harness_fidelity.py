"""Harness fidelity: infbench's throughput windows beside a bare CUDA-event loop over the same callable.

A benchmark, not a test (it needs a GPU). In one process, for each case below, the backend is
loaded once, its input is put on the device, and the same `step` callable is timed
(1) by `infbench.measure.timing` (warm-up, then throughput windows: batches back to back, one
synchronisation at the end of each), exactly as a repetition of a benchmark cell does, and
(2) by a bare loop: warm-up, then one CUDA event before and one after as many calls, time per batch.
The two must agree within --max-diff (2%) for GPU-bound cells. Rounds alternate (infbench, bare,
infbench, bare, ...) so that clock drift hits both alike; the reported difference is between the
medians of the rounds of each.

  PYTHONPATH=workflow python benchmarks/harness_fidelity.py --checkpoint results/digits/resnet18/checkpoint.pt \\
      --onnx results/digits/resnet18/onnx/fp32.onnx
Without --checkpoint/--onnx a randomly initialised ResNet-18 is written to a temporary folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CASES = [  # (label, backend, precision, batch); all 224×224 on CUDA; the first two are GPU-bound
    ("torch fp16 b256", "torch", "fp16", 256),
    ("torch fp32 b64", "torch", "fp32", 64),
    ("torch fp16 b64 (launch-bound)", "torch", "fp16", 64),
    ("torch_cudagraphs fp16 b64", "torch_cudagraphs", "fp16", 64),
]


def bare_cuda_loop(step, warmup: int, iterations: int) -> float:
    """The reference: ms per call from CUDA events before and after `iterations` calls."""
    import torch

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iterations):
        step()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iterations


def make_artifacts(tmp: Path) -> tuple[Path, Path]:
    import torch

    from infbench.stages.model import build

    net = build("resnet18", 10, "imagenet").eval()
    ckpt = tmp / "checkpoint.pt"
    torch.save({"arch": "resnet18", "num_classes": 10, "stem": "imagenet", "state_dict": net.state_dict()}, ckpt)
    onnx_path = tmp / "fp32.onnx"
    torch.onnx.export(
        net,
        (torch.randn(1, 3, 224, 224),),
        str(onnx_path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    return ckpt, onnx_path


def run_case(label, backend_name, precision, batch, ckpt, onnx_path, args) -> dict:
    import torch

    from infbench.backends.registry import spec
    from infbench.core.cell import Cell
    from infbench.measure.timing import TimingPolicy, throughput_windows, warm_up

    cell = Cell("resnet18", backend_name, precision, "cuda", 224, batch)
    s = spec(backend_name)
    artifact = onnx_path if backend_name.startswith("onnxruntime") else ckpt
    backend = s.load_class()(cell, Path(artifact), 1, s.artifact(cell).rule, {})
    backend.check_available()
    t0 = time.time()
    backend.load()
    host = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    inputs = backend.prepare(host)
    backend.synchronize()

    def step():
        backend.run(inputs)

    # First calls (compilation, autotuning) outside both measurements.
    for _ in range(3):
        step()
    torch.cuda.synchronize()
    load_s = time.time() - t0

    policy = TimingPolicy(
        warmup_s=1, window_s=args.window, window_iterations=5, windows=5, latency_s=0.2, latency_iterations=20
    )
    ours, bare, rounds = [], [], []
    for _ in range(args.repeats):
        _, per_batch_s = warm_up(step, backend.synchronize, policy)
        tp = throughput_windows(step, backend.synchronize, policy, per_batch_s, batch)
        ours.append(batch / tp["img_s"] * 1000)
        bare.append(bare_cuda_loop(step, warmup=5, iterations=tp["iterations_per_window"] * policy.windows))
        rounds.append({"infbench_ms": ours[-1], "bare_ms": bare[-1], "window_iterations": tp["iterations_per_window"]})
    m_ours, m_bare = statistics.median(ours), statistics.median(bare)
    diff = (m_ours - m_bare) / m_bare
    return {
        "case": label,
        "backend": backend_name,
        "precision": precision,
        "batch": batch,
        "size": 224,
        "infbench_ms_per_batch": m_ours,
        "bare_ms_per_batch": m_bare,
        "rel_diff": diff,
        "load_and_first_calls_s": round(load_s, 1),
        "rounds": rounds,
        "ok": abs(diff) <= args.max_diff,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--onnx", type=Path)
    p.add_argument("--cases", default="all", help="comma-separated backend names, or 'all'")
    p.add_argument("--repeats", type=int, default=3, help="alternating infbench/bare rounds per case")
    p.add_argument("--window", type=float, default=0.5, help="infbench throughput window (s)")
    p.add_argument("--max-diff", type=float, default=0.02)
    p.add_argument("--out", type=Path, help="write the results as JSON here")
    args = p.parse_args(argv)

    import torch

    if not torch.cuda.is_available():
        print("harness_fidelity needs a CUDA device; none is visible", file=sys.stderr)
        return 2
    from infbench.backends.torch_compile import use_result_caches

    use_result_caches()
    tmp = Path(tempfile.mkdtemp(prefix="fidelity-"))
    ckpt, onnx_path = args.checkpoint, args.onnx
    if ckpt is None or onnx_path is None:
        made_ckpt, made_onnx = make_artifacts(tmp)
        ckpt, onnx_path = ckpt or made_ckpt, onnx_path or made_onnx
    wanted = None if args.cases == "all" else set(args.cases.split(","))
    print(f"GPU: {torch.cuda.get_device_name()}  torch {torch.__version__}", flush=True)
    results = []
    for case in CASES:
        if wanted and case[1] not in wanted:
            continue
        try:
            r = run_case(*case, ckpt, onnx_path, args)
        except Exception as exc:  # report and go on with the other cases
            r = {"case": case[0], "error": f"{type(exc).__name__}: {exc}", "ok": False}
        results.append(r)
        print(json.dumps(r), flush=True)
    print(f"\n{'case':40s} {'infbench ms':>12s} {'bare ms':>10s} {'diff':>8s}  within {args.max_diff:.0%}")
    print("(ms per batch; a launch-bound case may differ: both time the host's pace, which varies)")
    for r in results:
        if "error" in r:
            print(f"{r['case']:40s} ERROR {r['error']}")
        else:
            print(
                f"{r['case']:40s} {r['infbench_ms_per_batch']:12.4f} {r['bare_ms_per_batch']:10.4f} "
                f"{r['rel_diff']:+8.2%}  {'yes' if r['ok'] else 'NO'}"
            )
    if args.out:
        args.out.write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "results": results}, indent=1))
    gpu_bound = [r for r in results if "launch-bound" not in r["case"]]
    return 0 if all(r["ok"] for r in gpu_bound) else 1


if __name__ == "__main__":
    sys.exit(main())
