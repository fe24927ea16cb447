"""One benchmark cell: measure in a child process, always write a result.

The parent (`run_cell`) never raises for a failure of the measurement: a crash, an out-of-memory,
a timeout or an exception in the child becomes the cell's `status` and `error`, so one bad cell
never takes the grid down. The child (`measure_cell`, run as `python -m infbench.bench`) does
the work and writes its result to a file the parent names.
"""

from __future__ import annotations

import errno
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
from infbench.integrity import DamagedInput
from infbench.io import write_json
from infbench.measure import environment
from infbench.measure import flops as flop_count
from infbench.measure.memory import DeviceMemory, cpu_section, host_peak_mb
from infbench.measure.nvml import ENERGY_WINDOW_S, Nvml, Sampler, summarize
from infbench.measure.nvml import empty as nvml_empty
from infbench.measure.timing import CudaClock, HostClock, TimingPolicy, measure

SCHEMA_VERSION = 1
OOM_MARKERS = (
    "out of memory",
    "outofmemory",
    "cudaerrormemoryallocation",
    "failed to allocate memory",
    "bad_alloc",
    "can't allocate memory",  # PyTorch's CPU allocator (DefaultCPUAllocator)
    "cannot allocate memory",  # ENOMEM (strerror), e.g. from mmap or a C library
    "unable to allocate",  # NumPy's MemoryError text, when re-raised as another type
)


def status_of(exc: BaseException) -> str:
    if isinstance(exc, BackendUnavailable):
        return "unavailable"
    if isinstance(exc, MemoryError) or any(m in str(exc).lower() for m in OOM_MARKERS):
        return "oom"
    if isinstance(exc, OSError) and exc.errno == errno.ENOMEM:
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
    # GPU counters and the device-memory baseline, taken once the CUDA context is up (its few
    # hundred MiB are the process's, not the backend's) and before the backend creates its session.
    nvml, nvml_note = _open_nvml(cell)
    device_memory = DeviceMemory(nvml, nvml_note)
    device_memory.baseline()
    backend.load()
    device_memory.mark("after_load")

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

    device_memory.mark("after_inputs")
    clock = CudaClock() if cell.device == "cuda" else HostClock()
    backend.reset_device_memory_peak()
    sampler = Sampler(nvml).start() if nvml is not None else None
    try:
        latency = measure(step, clock, TimingPolicy(**args["timing"]))
        backend.synchronize()
        if sampler is not None:
            window = energy_phase(step, backend.synchronize, ENERGY_WINDOW_S)
    finally:
        if sampler is not None:
            sampler.stop()
    device_memory.mark("after_run")
    stats = latency.stats()
    result["timing"] = stats
    result["throughput_img_s"] = cell.batch_size / (stats["median_ms"] / 1000)
    result["time_per_image_ms"] = stats["median_ms"] / cell.batch_size
    if cell.device == "cuda":
        sampled_peak = sampler.peak_used_bytes() if sampler is not None else None
        result["memory"] = device_memory.section(backend.device_memory_peak_mb(), sampled_peak)
    else:
        result["memory"] = cpu_section()
    if sampler is not None:
        start, end, batches = window
        result["nvml"] = summarize(sampler, start, end, batches * cell.batch_size)
        nvml.close()
    else:
        result["nvml"] = nvml_empty(nvml_note)
    return result


def energy_phase(step, synchronize, min_s: float) -> tuple[float, float, int]:
    """Run `step` back to back for at least `min_s`: (start, end, batches), perf_counter seconds.

    The timed rounds can be far shorter than the GPU's counters can resolve (a converged cell may
    stop after 50 ms), so energy and utilisation come from this phase of known length and image
    count instead. Synchronised at both ends: the window holds exactly these batches' device work.
    """
    synchronize()
    start, batches = time.perf_counter(), 0
    while True:
        step()
        batches += 1
        if time.perf_counter() - start >= min_s:
            break
    synchronize()
    return start, time.perf_counter(), batches


def _open_nvml(cell: Cell) -> tuple[Nvml | None, str | None]:
    """An NVML session on the cell's GPU (CUDA context up first), or (None, why not)."""
    if cell.device != "cuda":
        return None, "CPU cell: no GPU counters sampled"
    try:
        import torch

        torch.cuda.init()
        torch.cuda.synchronize()  # creates the primary context, which ONNX Runtime and TensorRT share
    except Exception as exc:  # no torch or no GPU: the backend's own check said so already
        return None, f"NVML not used: CUDA could not be initialised ({exc})"
    return Nvml.open(torch.cuda.current_device())


def _read_optional(path) -> dict | None:
    if not path or not Path(path).exists():
        return None
    return json.loads(Path(path).read_text())


def _artifact_mb(path) -> float | None:
    p = Path(path)
    if p.is_file():
        return p.stat().st_size / 2**20
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20
    return None


def _child_main(args_path: str, out_path: str) -> None:
    args = json.loads(Path(args_path).read_text())
    try:
        payload = {"status": "ok", "error": None, **measure_cell(args)}
    except DamagedInput as exc:  # no result at all: the parent fails the job (infbench.integrity)
        payload = {"status": "damaged_input", "error": str(exc), "damaged": [str(exc.path), exc.rule, exc.detail]}
    except BaseException as exc:  # every failure is a result, not a crash
        traceback.print_exc()
        payload = {"status": status_of(exc), "error": f"{type(exc).__name__}: {exc}"}
    Path(out_path).write_text(json.dumps(payload, default=str))


def _error_lines(stderr: str) -> list[str]:
    """The lines of the child's stderr worth putting in the result: the last five, or where the
    child crashed (faulthandler's 'Fatal Python error' and the innermost frames below it)."""
    lines = stderr.strip().splitlines()
    fatal = [i for i, line in enumerate(lines) if line.startswith("Fatal Python error")]
    if fatal:
        return [line.strip() for line in lines[fatal[-1] : fatal[-1] + 8] if line.strip()]
    return lines[-5:]


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
        args_path.write_text(json.dumps({**args, "cell": asdict(cell), "parent_pid": os.getpid()}))
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
        tail = _error_lines(stderr)
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
    if result["status"] == "damaged_input":
        raise DamagedInput(*result["damaged"])
    # Peak resident memory of the child (the only process this one waited for), from the kernel.
    memory = result.setdefault("memory", {})
    memory["host_peak_mb"] = host_peak_mb(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    memory["artifact_mb"] = _artifact_mb(args["artifact"])
    if result["status"] != "ok":  # not measured: the device and GPU figures are null, and say why
        memory.setdefault("device_peak_mb", None)
        memory.setdefault("device_note", f"not measured (cell {result['status']})")
        result.setdefault("nvml", nvml_empty(f"not measured (cell {result['status']})"))
    # FLOPs per image (counted once per model and size) and utilisation against the device's probe.
    result["flops"] = flop_count.cell_metrics(
        _read_optional(args.get("flops")),
        _read_optional(args.get("probe")),
        cell.precision,
        cell.batch_size,
        result.get("throughput_img_s") if result["status"] == "ok" else None,
    )
    result["wall_s"] = round(time.time() - started, 3)
    write_json(out, result)
    return result


def _die_with_parent(args_path: str) -> None:
    """Linux: the kernel kills this measuring process when its parent (`run_cell`) dies.

    The child runs in its own session (so that a timeout kills its whole group), which also takes
    it out of reach of a kill of Snakemake's process group: without this, a `kill -9` of a run
    would leave it measuring on, orphaned, and disturb the timings of the resumed run.
    """
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    parent = json.loads(Path(args_path).read_text()).get("parent_pid")
    if parent is not None and os.getppid() != parent:  # the parent died before prctl took effect
        os._exit(1)


if __name__ == "__main__":
    import faulthandler

    faulthandler.enable()  # a segfault in a runtime leaves the Python stack in the cell's error
    _die_with_parent(sys.argv[1])
    _child_main(sys.argv[1], sys.argv[2])
