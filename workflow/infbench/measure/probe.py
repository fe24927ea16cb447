"""Hardware probe: what this device can do at best, measured here, once per device.

* Dense matrix product throughput (TFLOP/s; TOP/s for int8) for each precision a cell can run in
  on the device: square `n × n` products through PyTorch (oneDNN/MKL on the CPU, cuBLAS/cuBLASLt
  on CUDA), best of repeated runs within a time budget. tf32 is fp32 storage with TF32 tensor-core
  math (`torch.backends.cuda.matmul.allow_tf32`); fp32 on CUDA has it switched off. int8 is
  `torch._int_mm` (int8 × int8 → int32), where this PyTorch has it for the device.
* Memory copy bandwidth (GB/s): a large tensor copied onto another of the same size, counting
  the bytes read plus the bytes written, best of repeats.

The set of precisions is fixed per device (`PRECISIONS`), not taken from the grid: adding a
precision to the grid then reruns only its cells, never the probe and every cell behind it.
A cell's utilisation is its achieved FLOP/s over the peak of its precision here (`peak_for`).

On a machine without the device the probe writes `status: unavailable` with nulls.
"""

from __future__ import annotations

import os
import time

from infbench.core import cpus, precisions
from infbench.core.arguments import paths, schema_default
from infbench.core.io import write_json
from infbench.measure.environment import cpu_model, fingerprint
from infbench.measure.interference import canary_ms

SCHEMA_VERSION = 2  # 2: copy buffer size as `mib`

PRECISIONS = {"cpu": ("fp32", "bf16", "int8"), "cuda": ("fp32", "tf32", "fp16", "bf16", "int8")}
# The matrix-product precision whose peak a cell of each precision is compared with.
PEAK_PRECISION = {
    "fp32": "fp32",
    "tf32": "tf32",
    "fp16": "fp16",
    "bf16": "bf16",
    "int8": "int8",
    "int8_dynamic": "int8",
    "int8_nncf": "int8",
    "int8_nncf_ac": "int8",  # mostly int8: the layers NNCF kept in float are not told apart here
}
# Square size of the products and of the copied buffer: big enough to reach the peak, small
# enough to keep the CPU probe within a few seconds a precision.
MATMUL_N = {"cpu": 2048, "cuda": 8192}
COPY_MIB = {"cpu": 256, "cuda": 1024}


def peak_for(probe: dict | None, precision: str) -> tuple[float | None, str | None, str | None]:
    """(peak TFLOP/s, the precision it was measured in, why it is missing) for a cell's precision."""
    wanted = PEAK_PRECISION.get(precision)
    if probe is None:
        return None, wanted, "no hardware probe for this device"
    if probe.get("status") != "ok":
        return None, wanted, f"hardware probe {probe.get('status')}: {probe.get('error')}"
    if wanted is None:
        return None, None, f"no peak defined for precision {precision}"
    peak = (probe.get("peak_tflops") or {}).get(wanted)
    if not peak:
        why = ((probe.get("matmul") or {}).get(wanted) or {}).get("error") or "not measured"
        return None, wanted, f"no measured {wanted} peak on this device ({why})"
    return float(peak), wanted, None


class _Timer:
    """Seconds of one call of `fn`: host clock on the CPU, CUDA events on the GPU."""

    def __init__(self, device: str):
        import torch

        self.torch = torch
        self.cuda = device == "cuda"

    def __call__(self, fn, reps: int = 1) -> float:
        torch = self.torch
        if self.cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(reps):
                fn()
            end.record()
            end.synchronize()
            return start.elapsed_time(end) / 1000 / reps
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) / reps


def _best_rate(fn, work: float, timer: _Timer, budget_s: float, min_runs: int = 3) -> dict:
    """Best `work` per second of `fn` over repeated timings within `budget_s` (after one warm-up)."""
    t0 = time.perf_counter()
    first = timer(fn)  # warm-up: library init, kernel selection
    reps = max(1, int(0.05 / max(first, 1e-6))) if timer.cuda else 1  # CUDA: batch short kernels per event pair
    best, runs = None, 0
    while runs < min_runs or time.perf_counter() - t0 < budget_s:
        seconds = timer(fn, reps)
        best = seconds if best is None else min(best, seconds)
        runs += 1
        if time.perf_counter() - t0 > 3 * budget_s:
            break
    return {"rate": work / best, "best_s": best, "runs": runs, "reps": reps, "first_s": first}


def _runs(r: dict) -> dict:
    """What a probe result keeps of `_best_rate`'s timing (no error: it was measured)."""
    return {"best_s": r["best_s"], "runs": r["runs"], "error": None}


def matmul_peak(device: str, precision: str, n: int, budget_s: float) -> dict:
    """Dense n×n matrix product throughput in `precision` on `device`."""
    import torch

    dev = torch.device(device)
    timer = _Timer(device)
    saved_tf32 = torch.backends.cuda.matmul.allow_tf32
    try:
        if precision == "int8":
            if not hasattr(torch, "_int_mm"):
                raise RuntimeError("this PyTorch has no torch._int_mm")
            a = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=dev)
            b = torch.randint(-128, 127, (n, n), dtype=torch.int8, device=dev)

            def fn():
                torch._int_mm(a, b)

        else:
            dtype = precisions.torch_dtype(precision)
            torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
            a = torch.randn(n, n, device=dev).to(dtype)
            b = torch.randn(n, n, device=dev).to(dtype)
            c = torch.empty(n, n, device=dev, dtype=dtype)

            def fn():
                torch.mm(a, b, out=c)

        # Too slow for the budget at this size (an emulated precision, say): measure a smaller one.
        first = timer(fn)
        while first > budget_s / 3 and n > 256:
            n //= 2
            a, b = a[:n, :n].contiguous(), b[:n, :n].contiguous()
            if precision != "int8":
                c = torch.empty(n, n, device=dev, dtype=c.dtype)
            first = timer(fn)
        r = _best_rate(fn, 2.0 * n**3, timer, budget_s)
        layout = "row-major operands"
        if precision == "int8" and device == "cuda":
            # cuBLASLt's int8 kernels favour a column-major second operand ("TN"): keep the faster layout.
            try:
                b_col = b.t().contiguous().t()
                r_col = _best_rate(lambda: torch._int_mm(a, b_col), 2.0 * n**3, timer, budget_s)
                if r_col["rate"] > r["rate"]:
                    r, layout = r_col, "column-major second operand"
            except Exception:  # that layout is not supported by this build: the row-major figure stands
                pass
        return {"tflops": r["rate"] / 1e12, "n": n, **_runs(r), "layout": layout}
    except Exception as exc:  # a precision this device or build cannot do: recorded, not fatal
        return {"tflops": None, "n": n, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved_tf32


def copy_bandwidth(device: str, mib: int, budget_s: float) -> dict:
    """Copy bandwidth in GB/s (bytes read + bytes written per second)."""
    import torch

    try:
        numel = mib * 2**20 // 4
        src = torch.ones(numel, dtype=torch.float32, device=device)
        dst = torch.empty_like(src)
        r = _best_rate(lambda: dst.copy_(src), 2.0 * numel * 4, _Timer(device), budget_s)
        return {"gb_s": r["rate"] / 1e9, "mib": mib, **_runs(r)}
    except Exception as exc:
        return {"gb_s": None, "mib": mib, "error": f"{type(exc).__name__}: {exc}"}


def _device_info(device: str) -> dict:
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "gpu": None}
    if device == "cuda":
        import torch

        props = torch.cuda.get_device_properties(0)
        info.update(
            gpu=props.name, gpu_memory_mib=props.total_memory / 2**20, compute_capability=f"{props.major}.{props.minor}"
        )
    return info


def unavailable_reason(device: str) -> str | None:
    if device == "cpu":
        return None
    try:
        import torch
    except ImportError as exc:
        return f"PyTorch is not installed ({exc})"
    if device == "cuda" and not torch.cuda.is_available():
        return "no CUDA device visible to PyTorch (torch.cuda.is_available() is False)"
    return None


def probe(
    device: str, threads: int, budget_s: float = 1.5, matmul_n: int | None = None, copy_mib: int | None = None
) -> dict:
    """Measure the device; never raises for a device that is missing (status 'unavailable')."""
    precisions = PRECISIONS[device]
    result = {
        "schema": SCHEMA_VERSION,
        "device": device,
        "status": "ok",
        "error": None,
        "threads": threads,
        "budget_s": budget_s,
        "environment": fingerprint(threads, device),
        "matmul": {p: None for p in precisions},
        "peak_tflops": {p: None for p in precisions},
        "bandwidth_gb_s": None,
        "copy": None,
    }
    reason = unavailable_reason(device)
    if reason:
        result.update(status="unavailable", error=reason)
        return result
    import torch

    torch.set_num_threads(threads)
    started = time.perf_counter()
    result["device_info"] = _device_info(device)
    # The interference canary's quiet time: what every repetition of every cell is held against.
    result["canary_ms"] = min(canary_ms(device) for _ in range(3))
    n = matmul_n or MATMUL_N[device]
    for precision in precisions:
        m = matmul_peak(device, precision, n, budget_s)
        result["matmul"][precision] = m
        result["peak_tflops"][precision] = m["tflops"]
    result["copy"] = copy_bandwidth(device, copy_mib or COPY_MIB[device], budget_s)
    result["bandwidth_gb_s"] = result["copy"]["gb_s"]
    result["wall_s"] = round(time.perf_counter() - started, 3)
    return result


def write(device: str, threads: int, out, extra: dict | None = None, **kwargs) -> dict:
    result = {**probe(device, threads, **kwargs), **(extra or {})}
    write_json(out, result)
    return result


def peaks_rows(probes: list[dict]) -> list[dict]:
    """[{machine, device, precision, peak_tflops, bandwidth_gb_s}] for the report's meta."""
    rows = []
    for p in probes:
        machine = (p.get("environment") or {}).get("machine")
        for precision, peak in (p.get("peak_tflops") or {}).items():
            rows.append(
                {
                    "machine": machine,
                    "device": p.get("device"),
                    "precision": precision,
                    "peak_tflops": peak,
                    "bandwidth_gb_s": p.get("bandwidth_gb_s"),
                    "status": p.get("status"),
                }
            )
    return rows


def add_parser(sub) -> None:
    """`infbench probe` (holds a GPU on --device cuda)."""
    s = sub.add_parser("probe", help="measure a device's peak matmul FLOP/s per precision and copy bandwidth")
    s.add_argument("--device", required=True, choices=["cpu", "cuda"])
    paths(s, "--out")
    s.add_argument("--threads", type=int, default=0, help="CPU threads; 0 = every CPU the job may use")
    budget = schema_default("probe.budget_s", float)
    s.add_argument("--budget", type=float, default=budget, help="seconds per measurement (per precision, and the copy)")
    s.add_argument("--matmul-n", type=int, default=0, help="square matrix size; 0 = the device's default")
    s.add_argument("--copy-mib", type=int, default=0, help="copied buffer size in MiB; 0 = the device's default")
    s.set_defaults(func=_command, gpu_stage=True)


def _command(a) -> None:
    kwargs = {"budget_s": a.budget, "matmul_n": a.matmul_n or None, "copy_mib": a.copy_mib or None}
    result = write(a.device, cpus.threads(a.threads), a.out, extra={"gpu": a.gpu}, **kwargs)
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
