"""The measuring process of one repetition (`python -m infbench.bench.process ARGS OUT`): load the cell's
artifact, check agreement with the fp32 reference, time it, read the energy, write the result; on CUDA it
holds its GPU slot from before CUDA starts until it ends. Every failure is a result, never a crash."""

from __future__ import annotations

import errno
import json
import os
import signal
import sys
import time
import traceback
from contextlib import nullcontext
from dataclasses import replace
from pathlib import Path

import numpy as np

from infbench.backends.base import BackendUnavailable, run_batches
from infbench.backends.registry import spec
from infbench.bench.gpu_slots import release, take
from infbench.core.cell import Cell
from infbench.core.integrity import DamagedInput
from infbench.measure import timing
from infbench.measure.interference import canary_ms, cpu_mark, foreign_cores_since, spare_cores
from infbench.measure.memory import DeviceMemory, cpu_section
from infbench.measure.nvml import Nvml, Sampler, summarize
from infbench.measure.nvml import empty as nvml_empty
from infbench.measure.timing import TimingPolicy
from infbench.stages import reference

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


def reference_agreement(backend, images: np.ndarray, ref: np.ndarray) -> dict:
    """Top-1 agreement and max |Δ logits| of the backend against the fp32 reference logits
    (infbench/stages/reference.py), on the fewest whole batches that hold every reference image."""
    batch = backend.cell.batch_size
    n = -(-max(batch, len(ref)) // batch) * batch
    outputs = run_batches(backend, reference.cycled(images, n), batch)
    return reference.agreement(outputs, reference.cycled(ref, n))


# The GPU slot this measuring process holds: {"gpu", "gpu_wait_s"} for its result, and the lock's
# descriptor, kept open until the process has written its result.
_SLOT: dict = {}


def hold_gpu(cell: Cell) -> dict:
    """Take a GPU slot for the rest of this process (before anything starts CUDA): which GPU, and
    how long the process waited for it while other repetitions measured."""
    start = time.perf_counter()
    gpu, fd = take(f"bench {cell.key}")
    _SLOT.update(gpu=gpu, gpu_wait_s=round(time.perf_counter() - start, 3), fd=fd)
    return {k: _SLOT[k] for k in ("gpu", "gpu_wait_s")}


def release_gpu() -> None:
    """Give the slot back (the process ends next), with the line the job's log keeps."""
    if _SLOT.get("fd") is not None:
        release(_SLOT["gpu"], _SLOT.pop("fd"))


def measure_in_this_process(args: dict) -> dict:
    """The child's work, one repetition: load, (check agreement), time, (energy). Raises on failure."""
    cell = Cell(**args["cell"])
    backend = spec(cell.backend).instance(cell, args["artifact"], args["threads"], args.get("options"))
    result = {"spare_cores": spare_cores(cell.device, args["threads"])}
    # What needs no device first (the artifact and the reference read into host memory; on a GPU the imports
    # too): there this overlaps the repetition that holds the GPU, which this process takes only after it.
    # (Not the imports on the CPU: an ONNX Runtime cell's process would hold torch, its memory and threads.)
    if cell.device == "cuda":
        backend.prepare_host()
    read_start = time.perf_counter()
    backend.read_artifact()
    result["read_s"] = round(time.perf_counter() - read_start, 3)  # part of the load (time to first inference)
    images, ref = reference.load(Path(args["reference"]))  # the harness's data: no part of it
    print(f"read the artifact ({result['read_s']} s) and the reference images into host memory", flush=True)
    if cell.device == "cuda":
        result.update(hold_gpu(cell))
    backend.check_available()
    # GPU counters and the device-memory baseline, taken once the CUDA context is up (its few
    # hundred MiB are the process's, not the backend's) and before the backend creates its session.
    nvml, nvml_note = _open_nvml(cell)
    device_memory = DeviceMemory(nvml, nvml_note)
    device_memory.baseline()
    result["canary_before_ms"] = canary_ms(cell.device)
    backend.reset_device_memory_peak()  # before load: a CUDA-graph capture or compilation counts too
    result["load_started_at"] = time.time()  # wall clock, against the parent's `started` (process start)
    load_start = time.perf_counter()
    backend.load()
    # the whole load, the host read included: with the first batch, the time to first inference
    result["load_s"] = round(time.perf_counter() - load_start + result["read_s"], 3)
    result["artifact_mib"] = backend.artifact_mib()  # what the cell runs (cast weights, engine), not the file
    device_memory.mark("after_load")
    # Time to first inference (with the load): the first batch, where lazy initialisation, compilation
    # and autotuning happen, timed before the agreement check and the warm-up would absorb it.
    first = time.perf_counter()
    backend.run(backend.prepare(np.ascontiguousarray(reference.cycled(images, cell.batch_size))))
    backend.synchronize()
    result["first_batch_s"] = round(time.perf_counter() - first, 4)
    result["compile_cache"] = backend.compile_cache()
    result["reshaped_from"] = backend.reshaped_from
    if args["check_agreement"]:
        result["agreement"] = reference_agreement(backend, images, ref)

    step = _step(backend, reference.cycled(images, cell.batch_size), args["mode"])
    device_memory.mark("after_inputs")
    result["measure_started_at"] = time.time()
    # Other processes' CPU time while this one measures: the machine's busy time minus this process's.
    mark = cpu_mark()
    sampler = _sampler(nvml, args["energy_window_s"])
    policy = energy_policy(TimingPolicy(**args["timing"]), args["energy_window_s"] if sampler else 0)
    during_windows = sampler.running if sampler else nullcontext
    timed = timing.measure_repetition(step, backend.synchronize, policy, cell.batch_size, during_windows)
    span = timed["throughput"].pop("span_start"), timed["throughput"].pop("span_end")
    result.update(timed)
    result["synchronous_run"] = backend.synchronous_run
    if sampler:
        result["nvml"] = summarize(sampler, *span, timed["throughput"]["images"])
    else:
        result["nvml"] = nvml_empty(nvml_note or "energy window disabled (bench.energy_window_s: 0)")
    sampled_peak = sampler.peak_used_bytes() if sampler else None
    result["measure_ended_at"] = time.time()
    foreign = foreign_cores_since(mark)
    if foreign is not None:
        result["foreign_cores"] = round(foreign, 3)
    device_memory.mark("after_run")
    if cell.device == "cuda":
        result["memory"] = device_memory.section(backend.device_memory_peak_mib(), sampled_peak)
    else:
        result["memory"] = cpu_section()
    if nvml is not None:
        nvml.close()
    result["canary_after_ms"] = canary_ms(cell.device)
    return result


def _step(backend, host_batch: np.ndarray, mode: str):
    """The timed unit of work: one batch through the backend (`end_to_end`: from and back to the host)."""
    host_batch = np.ascontiguousarray(host_batch)
    if mode == "end_to_end":  # host tensor → device → result on host, every iteration
        return lambda: backend.to_numpy(backend.run(backend.prepare(host_batch)))
    inputs = backend.prepare(host_batch)  # inputs live on the device before timing starts
    backend.synchronize()
    return lambda: backend.run(inputs)


def _sampler(nvml, energy_window_s: float) -> Sampler | None:
    """NVML's sampler for the throughput windows, the energy window of a GPU cell (None: no NVML, or off)."""
    return Sampler(nvml) if nvml is not None and energy_window_s > 0 else None


def energy_policy(policy: TimingPolicy, energy_window_s: float) -> TimingPolicy:
    """The timing policy with throughput windows long enough together for an energy window of
    `energy_window_s`: NVML's energy counter, updated only every few tens of ms, needs about a second
    to resolve energy per image to a few percent. The windows themselves are the energy window, so
    throughput, energy per image and power describe the same batches (and no separate phase costs time)."""
    if energy_window_s <= 0:
        return policy
    return replace(policy, window_s=max(policy.window_s, energy_window_s / policy.windows))


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


def _child_main(args_path: str, out_path: str) -> None:
    args = json.loads(Path(args_path).read_text())
    try:
        payload = {"status": "ok", "error": None, **measure_in_this_process(args)}
    except DamagedInput as exc:  # no result at all: the parent fails the job (infbench.core.integrity)
        payload = {"status": "damaged_input", "error": str(exc), "damaged": [str(exc.path), exc.rule, exc.detail]}
    except BaseException as exc:  # every failure is a result, not a crash
        traceback.print_exc()
        payload = {"status": status_of(exc), "error": f"{type(exc).__name__}: {exc}"}
        payload.update({k: _SLOT[k] for k in ("gpu", "gpu_wait_s") if k in _SLOT})  # which GPU it failed on
    Path(out_path).write_text(json.dumps(payload, default=str))


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
    # The result file is written and closed: skip the interpreter's teardown of torch and the runtimes
    # (about 1.4 s per repetition on a 2-core CPU, paid 3-5 times per cell); the kernel frees the rest.
    # Inductor's compile workers are shut down as a normal exit would, so none outlives the repetition.
    compile_pool = sys.modules.get("torch._inductor.async_compile")
    if compile_pool is not None:
        compile_pool.shutdown_compile_workers()
    release_gpu()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
