"""A made-up but plausible summary and meta, to test the report and to preview it without running the workflow:

    PYTHONPATH=workflow python tests/report_example.py /tmp/report-preview   # then open /tmp/report-preview/index.html

The numbers follow simple laws (throughput saturating with batch size, time growing with FLOPs), so the findings
have known answers. A few cells are unstable or had disturbed repetitions, and the small-batch torch eager cells on
CUDA are launch-bound, so every mark the report can show appears. Nothing here is a measurement. (A test fixture:
it lives under tests/, not in the package, so it is no part of the report rule's code hash.)
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl

from infbench.backends.registry import BASELINE_TEXT
from infbench.report.aggregate import with_speedup

# (backend, precision, device) → (relative speed, accuracy drop in points, model size MiB)
VARIANTS = {
    ("torch", "fp32", "cpu"): (1.0, 0.0, 44.8),
    ("onnxruntime", "fp32", "cpu"): (1.3, 0.0, 44.7),
    ("onnxruntime", "int8", "cpu"): (2.1, 0.4, 11.3),
    ("onnxruntime", "int8-dynamic", "cpu"): (1.6, 41.5, 11.2),
    ("torch", "fp32", "cuda"): (20.0, 0.0, 44.8),
    ("torch", "fp16", "cuda"): (38.0, 0.1, 22.4),
    ("onnxruntime", "fp16", "cuda"): (45.0, 0.1, 22.4),
}
SIZES = [32, 64, 128]
SPREAD = (-1.0, -0.5, 0.0, 0.5, 1.0)  # five repetitions over the cell's ±
BATCHES = [1, 4, 16, 64]
GFLOPS_32 = 0.0372  # ResNet-18 (CIFAR stem off) at 32×32, per image
# (backend, precision, device, size, batch) → (throughput uncertainty %, disturbed repetitions): cells whose
# repetitions disagreed (status unstable) or were disturbed and measured again; all others: ± 2%, none disturbed.
UNSTABLE = {("torch", "fp32", "cpu", 64, 16): (14.0, 0), ("onnxruntime", "fp32", "cpu", 128, 1): (11.0, 2)}
DISTURBED = {("onnxruntime", "int8", "cpu", 32, 4): 1, ("torch", "fp16", "cuda", 64, 64): 1}


def example_summary(machine: str = "example-box", speed: float = 1.0, gpu: bool = True) -> pl.DataFrame:
    rows = []
    for (backend, precision, device), (rel, drop, size_mib) in VARIANTS.items():
        if device == "cuda" and not gpu:
            continue
        for image in SIZES:
            flops = GFLOPS_32 * (image / 32) ** 2
            for batch in BATCHES:
                cell = {
                    "model": "resnet18",
                    "backend": backend,
                    "precision": precision,
                    "device": device,
                    "image_size": image,
                    "batch_size": batch,
                    "machine": machine,
                }
                if device == "cuda" and image == 128 and batch == 64 and backend == "torch" and precision == "fp32":
                    rows.append({**cell, "status": "oom", "error": "CUDA out of memory. Tried to allocate 2.00 GiB"})
                    continue
                # saturating with batch (knee at 4 on CPU, 16 on GPU); larger images a little more efficient
                knee = 8 if device == "cuda" else 2
                peak = speed * rel * 400.0 / (flops / GFLOPS_32) ** 0.93
                tput = peak * batch / (batch + knee)
                p50 = 1000.0 * batch / tput
                tflops = tput * flops / 1000.0
                peak_tflops = {"cpu": 0.2, "cuda": 60.0 if precision == "fp32" else 400.0}[device]
                key = (backend, precision, device, image, batch)
                u, disturbed = UNSTABLE.get(key, (2.0, DISTURBED.get(key, 0)))
                gpu_cell = device == "cuda"
                rows.append(
                    {
                        **cell,
                        "status": "unstable" if key in UNSTABLE else "ok",
                        "stability": "unstable" if key in UNSTABLE else "stable",
                        "error": None,
                        "mode": "device",
                        "throughput_img_s": tput,
                        "throughput_uncertainty_pct": u,
                        "throughput_repetitions": [tput * (1 + u / 100 * s) for s in SPREAD],
                        "latency_p50_repetitions": [p50 * (1 - u / 100 * s) for s in SPREAD],
                        "time_per_image_ms": 1000.0 / tput,
                        "latency_ms_p50": p50,
                        "latency_ms_p90": p50 * 1.05,
                        "latency_ms_p99": p50 * 1.2,
                        "latency_uncertainty_pct": u * 1.5,
                        "repetitions": 3 + disturbed + (2 if key in UNSTABLE else 0),
                        "quiet_repetitions": 3 + (2 if key in UNSTABLE else 0),
                        "disturbed_repetitions": disturbed,
                        # eager torch on CUDA at small batches: the host's launches set the pace
                        "launch_bound": (backend == "torch" and batch <= 4) if gpu_cell else None,
                        "host_issue_fraction": (0.95 if batch <= 4 else 0.4) if gpu_cell else None,
                        "load_s": 0.1 if backend == "onnxruntime" else 1.2,
                        "accuracy_top1": 0.981 - drop / 100,
                        "accuracy_drop": drop,
                        "over_tolerance": drop > 1.0,
                        "top1_agreement": 1.0 - drop / 100 - 0.002,
                        "max_abs_logit_diff": 1e-5 if precision == "fp32" else 0.05 + drop / 10,
                        "model_size_mib": size_mib,
                        "gflops_per_image": flops,
                        "achieved_tflops": tflops,
                        "utilization_pct": 100.0 * tflops / peak_tflops,
                        "arithmetic_intensity": 20.0 * (image / 32) * batch / (batch + 2),
                        "device_memory_peak_mib": (500 + size_mib + batch * image * image * 0.004)
                        if gpu_cell
                        else None,
                        "allocator_memory_peak_mib": (60 + size_mib + batch * image * image * 0.004)
                        if gpu_cell and backend == "torch"
                        else None,
                        "host_memory_peak_mib": 300 + size_mib + batch * image * image * 0.002,
                        "gpu_util_pct": min(99.0, 30 + batch * 4.0) if gpu_cell else None,
                        "power_w": 120 + batch * 3.0 if gpu_cell else None,
                        "power_uncertainty_pct": u if gpu_cell else None,
                        "energy_mj_per_image": (120 + batch * 3.0) / tput * 1000 if gpu_cell else None,
                        "energy_uncertainty_pct": u if gpu_cell else None,
                        "energy_repetitions": [(120 + batch * 3.0) / tput * 1000 * (1 + u / 100 * s) for s in SPREAD]
                        if gpu_cell
                        else None,
                        "energy_window_img_s": tput if gpu_cell else None,
                    }
                )
    rows.append(
        {
            "model": "resnet18",
            "backend": "tensorrt",
            "precision": "fp16",
            "device": "cuda" if gpu else "cpu",
            "image_size": 32,
            "batch_size": 1,
            "machine": machine,
            "status": "unavailable",
            "error": "torch_tensorrt is not installed (pip install -e '.[tensorrt]')",
        }
    )
    return with_speedup(pl.DataFrame(rows, infer_schema_length=None))  # the aggregate step's own speedups


def example_meta(machines: list[str] = ("example-box",), gpu: bool = True) -> dict:
    accuracy = [
        {
            "variant": f"{backend}-{precision}",
            "backend": backend,
            "precision": precision,
            "device": device,
            "accuracy_top1": 0.981 - drop / 100,
            "accuracy_drop": drop,
            "top1_agreement": 1.0 - drop / 100 - 0.002,
            "max_abs_logit_diff": 1e-5 if precision == "fp32" else 0.05 + drop / 10,
            "model_size_mib": size_mib,
            "over_tolerance": drop > 1.0,
        }
        for (backend, precision, device), (_, drop, size_mib) in VARIANTS.items()
        if gpu or device == "cpu"
    ]
    return {
        "dataset": "digits",
        "model": "resnet18",
        "model_accuracy": 0.981,
        "created": "2026-11-22T17:00:00+00:00",
        "machines": [
            {
                "machine": m,
                "cpu": "Example CPU @ 3.0GHz",
                "cores": 2,
                "gpu": "Example GPU 80GB" if gpu else None,
                "driver": "580.00" if gpu else None,
                "versions": {"torch": "2.14.1", "onnxruntime": "1.32.0", "polars": "2.1.0"},
            }
            for m in machines
        ],
        "cells_total": 0,  # filled by example()
        "cells_not_ok": 0,
        "cells_unstable": 0,
        "repetitions_disturbed": 0,
        "dropped": [
            {
                "backend": "onnxruntime",
                "precision": "fp16",
                "device": "cpu",
                "reason": "fp16 needs a GPU execution provider",
            },
            {
                "backend": "torch",
                "precision": "int8",
                "device": "cuda",
                "reason": "torch eager has no int8 kernels on CUDA",
            },
        ],
        "accuracy": accuracy,
        "tolerance_points": 1.0,
        "memory_cap_mib": 400.0,
        "baseline": BASELINE_TEXT,
        "peaks": [
            {"machine": m, "device": "cpu", "precision": "fp32", "peak_tflops": 0.2, "bandwidth_gb_s": 20.0}
            for m in machines
        ]
        + (
            [
                {"machine": m, "device": "cuda", "precision": "fp16", "peak_tflops": 400.0, "bandwidth_gb_s": 3000.0}
                for m in machines
            ]
            if gpu
            else []
        ),
    }


def example(machines: int = 1, gpu: bool = True) -> tuple[pl.DataFrame, dict]:
    """(summary, meta) of one or several machines (the second one a little slower)."""
    names = ["example-box", "older-box", "third-box"][:machines]
    summary = pl.concat(
        [example_summary(n, speed=1.0 / (1 + i), gpu=gpu) for i, n in enumerate(names)], how="diagonal_relaxed"
    )
    meta = example_meta(names, gpu=gpu)
    meta["cells_total"] = summary.height
    meta["cells_not_ok"] = summary.filter(pl.col("status") != "ok").height
    meta["cells_unstable"] = summary.filter(pl.col("status") == "unstable").height
    meta["repetitions_disturbed"] = int(summary.get_column("disturbed_repetitions").fill_null(0).sum())
    return summary, meta


if __name__ == "__main__":
    from infbench.report.build import build_report

    out = Path(sys.argv[1] if len(sys.argv) > 1 else "results/report-example")
    summary, meta = example(machines=int(sys.argv[2]) if len(sys.argv) > 2 else 1)
    build_report(summary, meta, out)
    print(f"example report written to {out / 'index.html'}")
