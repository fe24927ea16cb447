"""Harness fidelity: infbench's `measure()` beside a bare CUDA-event loop over the same callable.

A benchmark, not a test (it needs a GPU). In one process, for each case below, the backend is
loaded once, its input is put on the device, and the same `step` callable is timed
(1) by `infbench.measure.timing.measure` with a `CudaClock`, exactly as a benchmark cell does, and
(2) by a bare loop: warm-up, then CUDA events around each call, median.
The two medians must agree within --max-diff (3%). Rounds alternate (infbench, bare, infbench,
bare, ...) so that clock drift hits both alike; the reported difference is between the medians of
all samples of each.

  PYTHONPATH=workflow python benchmarks/harness_fidelity.py --checkpoint results/models/resnet18/checkpoint.pt \\
      --onnx results/models/resnet18/onnx/fp32.onnx
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

CASES = [  # (label, backend, precision, batch); all 224×224 on CUDA
    ("torch fp16 b256", "torch", "fp16", 256),
    ("torch_compile max-autotune fp16 b256", "torch_compile_max_autotune", "fp16", 256),
    ("onnxruntime CUDA fp32 b1", "onnxruntime", "fp32", 1),
]


def bare_cuda_loop(step, warmup: int, iterations: int) -> list[float]:
    """The reference: CUDA events around each call, one synchronize at the end."""
    import torch

    for _ in range(warmup):
        step()
    torch.cuda.synchronize()
    starts = [torch.cuda.Event(enable_timing=True) for _ in range(iterations)]
    ends = [torch.cuda.Event(enable_timing=True) for _ in range(iterations)]
    for s, e in zip(starts, ends, strict=True):
        s.record()
        step()
        e.record()
    torch.cuda.synchronize()
    return [s.elapsed_time(e) for s, e in zip(starts, ends, strict=True)]


def make_artifacts(tmp: Path) -> tuple[Path, Path]:
    import torch

    from infbench.model import build

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

    from infbench.backends.base import Cell
    from infbench.backends.registry import spec
    from infbench.measure.timing import CudaClock, TimingPolicy, measure

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

    policy = TimingPolicy(tolerance=args.tolerance, time_budget_s=args.budget, warmup_budget_s=args.budget / 2)
    ours, bare, rounds = [], [], []
    for _ in range(args.repeats):
        latency = measure(step, CudaClock(), policy)
        ours += latency.samples_ms
        iterations = max(len(latency.samples_ms), 20)
        bare += bare_cuda_loop(step, warmup=max(5, iterations // 10), iterations=iterations)
        rounds.append(
            {
                "infbench_median_ms": float(np.median(latency.samples_ms)),
                "bare_median_ms": float(np.median(bare[-iterations:])),
                "infbench_iterations": len(latency.samples_ms),
                "converged": latency.converged,
            }
        )
    m_ours, m_bare = statistics.median(ours), statistics.median(bare)
    diff = (m_ours - m_bare) / m_bare
    return {
        "case": label,
        "backend": backend_name,
        "precision": precision,
        "batch": batch,
        "size": 224,
        "infbench_median_ms": m_ours,
        "bare_median_ms": m_bare,
        "rel_diff": diff,
        "infbench_samples": len(ours),
        "bare_samples": len(bare),
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
    p.add_argument("--budget", type=float, default=3.0, help="infbench time budget per round (s)")
    p.add_argument("--tolerance", type=float, default=0.01)
    p.add_argument("--max-diff", type=float, default=0.03)
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
    for r in results:
        if "error" in r:
            print(f"{r['case']:40s} ERROR {r['error']}")
        else:
            print(
                f"{r['case']:40s} {r['infbench_median_ms']:12.4f} {r['bare_median_ms']:10.4f} "
                f"{r['rel_diff']:+8.2%}  {'yes' if r['ok'] else 'NO'}"
            )
    if args.out:
        args.out.write_text(json.dumps({"gpu": torch.cuda.get_device_name(), "results": results}, indent=1))
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
