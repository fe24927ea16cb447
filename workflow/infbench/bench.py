"""One benchmark cell: measure in a child process, always write a result.

The parent (`run_cell`) never raises for a failure of the measurement: a crash, an out-of-memory,
a timeout or an exception in the child becomes the cell's `status` and `error`, so one bad cell
never takes the grid down. The child (`measure_cell`, run as `python -m infbench.bench`) does
the work and writes its result to a file the parent names.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import asdict
from pathlib import Path

import numpy as np

from infbench import data
from infbench.backends.base import BackendUnavailable, Cell
from infbench.backends.registry import spec
from infbench.io import write_json
from infbench.measure import environment
from infbench.measure.timing import CudaClock, HostClock, TimingPolicy, measure

SCHEMA_VERSION = 1
OOM_MARKERS = ("out of memory", "outofmemory", "cudaerrormemoryallocation", "failed to allocate memory", "bad_alloc")


def status_of(exc: BaseException) -> str:
    if isinstance(exc, BackendUnavailable):
        return "unavailable"
    if isinstance(exc, MemoryError) or any(m in str(exc).lower() for m in OOM_MARKERS):
        return "oom"
    return "error"


def agreement(backend, checkpoint: Path, images: np.ndarray) -> dict:
    """Top-1 agreement and max |Δ logits| of the backend against PyTorch fp32 on the CPU."""
    import torch

    from infbench.model import load_checkpoint

    reference = load_checkpoint(checkpoint)
    batch = backend.cell.batch_size
    got, ref = [], []
    for i in range(0, len(images) - batch + 1, batch):
        chunk = images[i : i + batch]
        out = backend.run(backend.prepare(chunk))
        backend.synchronize()
        got.append(backend.to_numpy(out))
        with torch.inference_mode():
            ref.append(reference(torch.from_numpy(chunk)).numpy())
    got, ref = np.concatenate(got), np.concatenate(ref)
    return {
        "images": len(got),
        "top1_agreement": float((got.argmax(1) == ref.argmax(1)).mean()),
        "max_abs_logit_diff": float(np.abs(got - ref).max()),
    }


def measure_cell(args: dict) -> dict:
    """The child's work: load, check agreement on real images, time. Raises on failure."""
    cell = Cell(**args["cell"])
    backend_spec = spec(cell.backend)
    backend = backend_spec.load_class()(
        cell, Path(args["artifact"]), args["threads"], backend_spec.artifact(cell).rule, args.get("options") or {}
    )
    backend.check_available()
    backend.load()

    test_x, _ = data.load_split(Path(args["dataset"]), "test")
    n_agree = max(cell.batch_size, args["agreement_images"])
    n_agree = (n_agree + cell.batch_size - 1) // cell.batch_size * cell.batch_size
    idx = np.arange(n_agree) % len(test_x)
    images = data.to_input(test_x[idx], cell.image_size)
    result = {"agreement": agreement(backend, Path(args["checkpoint"]), images)}

    host_batch = images[: cell.batch_size]
    end_to_end = args["mode"] == "end_to_end"
    if end_to_end:  # host tensor → device → result on host, every iteration

        def step():
            backend.to_numpy(backend.run(backend.prepare(host_batch)))

    else:  # inputs live on the device before timing starts
        inputs = backend.prepare(host_batch)
        backend.synchronize()

        def step():
            backend.run(inputs)

    clock = CudaClock() if cell.device == "cuda" else HostClock()
    backend.reset_device_memory_peak()
    latency = measure(step, clock, TimingPolicy(**args["timing"]))
    backend.synchronize()
    stats = latency.stats()
    result["timing"] = stats
    result["throughput_img_s"] = cell.batch_size / (stats["median_ms"] / 1000)
    result["time_per_image_ms"] = stats["median_ms"] / cell.batch_size
    result["memory"] = {"device_peak_mb": backend.device_memory_peak_mb()}
    return result


def _child_main(args_path: str, out_path: str) -> None:
    args = json.loads(Path(args_path).read_text())
    try:
        payload = {"status": "ok", "error": None, **measure_cell(args)}
    except BaseException as exc:  # every failure is a result, not a crash
        traceback.print_exc()
        payload = {"status": status_of(exc), "error": f"{type(exc).__name__}: {exc}"}
    Path(out_path).write_text(json.dumps(payload, default=str))


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def run_cell(cell: Cell, args: dict, out: Path, timeout_s: float) -> dict:
    """Measure `cell` in a child process and write its result JSON to `out` (atomically)."""
    result = {
        "schema": SCHEMA_VERSION,
        "cell": asdict(cell),
        "mode": args["mode"],
        "status": "error",
        "error": None,
        "environment": environment.fingerprint(args["threads"], cell.device),
        "artifact": args["artifact"],
    }
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="infbench-cell-") as tmp:
        args_path, out_path, err_path = Path(tmp, "args.json"), Path(tmp, "result.json"), Path(tmp, "stderr.txt")
        args_path.write_text(json.dumps({**args, "cell": asdict(cell)}))
        cmd = [sys.executable, "-m", "infbench.bench", str(args_path), str(out_path)]
        with open(err_path, "w") as err:
            proc = subprocess.Popen(cmd, stderr=err, start_new_session=True)
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = None
        stderr = err_path.read_text()
        sys.stderr.write(stderr)
        tail = stderr.strip().splitlines()[-5:]
        if code is None:
            result.update(status="timeout", error=f"no result within the cell timeout of {timeout_s} s")
        elif out_path.exists():
            result.update(json.loads(out_path.read_text()))
        elif code < 0:
            name = _signal_name(code)
            oom = code == -signal.SIGKILL
            result.update(
                status="oom" if oom else "error",
                error=f"the measuring process was killed by {name}"
                + (" (most likely the host ran out of memory)" if oom else "")
                + (f": {' | '.join(tail)}" if tail else ""),
            )
        else:
            result.update(status="error", error=f"the measuring process exited with code {code}: {' | '.join(tail)}")
    # Peak resident memory of the child (the only process this one waited for), from the kernel.
    result.setdefault("memory", {})["host_peak_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    result["wall_s"] = round(time.time() - started, 3)
    write_json(out, result)
    return result


if __name__ == "__main__":
    _child_main(sys.argv[1], sys.argv[2])
