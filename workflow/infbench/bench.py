"""One benchmark cell: repetitions in fresh processes, separated in time, always a result.

A repetition (`run_repetition`) is a new process (`measure_repetition`, run as
`python -m infbench.bench`) with its own warm-up. In a workflow each of a cell's first
repetitions is a Snakemake job of its own (`record_repetition`, rule `bench_repetition`),
and jobs are ordered by round, so a cell's repetitions lie minutes apart: a transient state of
the machine (a neighbour's load, a clock, a cache) reaches at most one of them. The cell's job
(`run_cell`) reads them, holds each against the interference signals (measure/interference.py),
re-measures disturbed repetitions and repetitions that disagree, a bounded number of times, and
combines the rest (measure/repetitions.py) into the cell's figures, their uncertainty and its
stability verdict. Run by hand without earlier repetitions, `run_cell` measures all of them.

On CUDA the measuring process takes its GPU slot (infbench/gpu_slots.py) itself, once its imports
are done and its artifact and reference images are read into host memory, before CUDA starts, and
holds it until it ends: several repetition jobs may be under way (`--resources gpu=K`), starting
Python, importing and reading while one of them has the GPU.

It never raises for a failure of the measurement: a crash, an out-of-memory, a timeout or an
exception in a repetition becomes the cell's `status` and `error`, so one bad cell never takes
the grid down.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from contextlib import nullcontext
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from infbench import reference
from infbench.arguments import paths
from infbench.backends.base import BackendUnavailable, Cell, run_batches
from infbench.backends.registry import spec
from infbench.gpu_slots import probe_mismatch, release, take
from infbench.integrity import DamagedInput
from infbench.io import size_mib, write_json
from infbench.measure import environment, repetitions, timing
from infbench.measure import flops as flop_count
from infbench.measure.budget import Ledger
from infbench.measure.interference import canary_ms, cpu_busy_s, disturbance, spare_cores
from infbench.measure.memory import DeviceMemory, cpu_section, host_peak_mib
from infbench.measure.nvml import Nvml, Sampler, summarize
from infbench.measure.nvml import empty as nvml_empty
from infbench.measure.timing import TimingPolicy

SCHEMA_VERSION = 3  # 3: memory figures named *_mib
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


def agreement(backend, images: np.ndarray, ref: np.ndarray) -> dict:
    """Top-1 agreement and max |Δ logits| of the backend against the fp32 reference logits
    (infbench/reference.py), on the fewest whole batches that hold every reference image."""
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


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def measure_repetition(args: dict) -> dict:
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
    if args["check_agreement"]:
        result["agreement"] = agreement(backend, images, ref)

    step = _step(backend, reference.cycled(images, cell.batch_size), args["mode"])
    device_memory.mark("after_inputs")
    result["measure_started_at"] = time.time()
    # Other processes' CPU time while this one measures: the machine's busy time minus this process's.
    busy0, own0, t0 = cpu_busy_s(), _own_cpu_s(), time.perf_counter()
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
    busy1, own1, t1 = cpu_busy_s(), _own_cpu_s(), time.perf_counter()
    if busy0 is not None and busy1 is not None:
        result["foreign_cores"] = round(max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0), 3)
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


def _read_optional(path) -> dict | None:
    if not path or not Path(path).exists():
        return None
    return json.loads(Path(path).read_text())


def _child_main(args_path: str, out_path: str) -> None:
    args = json.loads(Path(args_path).read_text())
    try:
        payload = {"status": "ok", "error": None, **measure_repetition(args)}
    except DamagedInput as exc:  # no result at all: the parent fails the job (infbench.integrity)
        payload = {"status": "damaged_input", "error": str(exc), "damaged": [str(exc.path), exc.rule, exc.detail]}
    except BaseException as exc:  # every failure is a result, not a crash
        traceback.print_exc()
        payload = {"status": status_of(exc), "error": f"{type(exc).__name__}: {exc}"}
        payload.update({k: _SLOT[k] for k in ("gpu", "gpu_wait_s") if k in _SLOT})  # which GPU it failed on
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


def _no_result(code: int | None, tail: list[str], timeout_s: float) -> dict:
    """Why a measuring process wrote no result: timed out (code None), killed by a signal, or exited."""
    if code is None:
        return {"status": "timeout", "error": f"no result within the cell timeout of {timeout_s} s"}
    if code >= 0:
        return {"status": "error", "error": f"the measuring process exited with code {code}: {' | '.join(tail)}"}
    oom = code == -signal.SIGKILL
    return {
        "status": "oom" if oom else "error",
        "error": f"the measuring process was killed by {_signal_name(code)}"
        + (" (most likely the host ran out of memory)" if oom else "")
        + (f": {' | '.join(tail)}" if tail else ""),
    }


def run_repetition(cell: Cell, args: dict, timeout_s: float) -> dict:
    """One repetition in a fresh process: its result, or a failure (status, error) that says why."""
    started = time.time()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="infbench-rep-") as tmp:
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
        if code is not None and out_path.exists():
            rep = json.loads(out_path.read_text())
        else:
            rep = _no_result(code, tail, timeout_s)
    rep["process_s"] = round(time.perf_counter() - t0, 3)
    rep["started"], rep["ended"] = started, time.time()
    # Peak resident memory of the measuring processes this one waited for (so far).
    rep["host_peak_mib"] = host_peak_mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return rep


def record_repetition(cell: Cell, args: dict, number: int, out: Path, timeout_s: float) -> dict:
    """Repetition `number` of `cell` as a job of its own: its whole result (or failure) → `out`.

    The first repetition also checks agreement with the fp32 reference. A damaged input raises
    (no file is written: `infbench.integrity`); every other failure is written, for the cell's
    job to report.
    """
    rep = run_repetition(cell, {**args, "check_agreement": number == 1}, timeout_s)
    if rep["status"] == "damaged_input":
        raise DamagedInput(*rep["damaged"])
    rep.update(repetition=number, cell=asdict(cell))
    write_json(out, rep)
    return rep


def load_repetitions(cell: Cell, paths: list[Path]) -> list[dict]:
    """Repetitions measured by earlier jobs (`record_repetition`), in the order they were measured."""
    reps = []
    for path in paths:
        try:
            rep = json.loads(Path(path).read_text())
        except (OSError, ValueError) as exc:
            raise DamagedInput(path, "bench_repetition", f"not a repetition result: {exc}") from exc
        if rep.get("cell") != asdict(cell):
            raise DamagedInput(path, "bench_repetition", f"it is a repetition of another cell ({rep.get('cell')})")
        reps.append(rep)
    return sorted(reps, key=lambda r: r["started"])


def _summary_of(rep: dict) -> dict:
    """What the result keeps of each repetition (the full detail stays in the cell's log)."""
    keep = ("status", "error", "disturbed", "canary_before_ms", "canary_after_ms", "foreign_cores", "spare_cores")
    keep += ("load_s", "read_s", "gpu_wait_s", "compile_cache", "adaptive")
    # where a repetition's time went (benchmarks/wall_time.py): start → load → first batch, warm-up → measured
    keep += ("load_started_at", "first_batch_s", "measure_started_at", "warmup_wall_s", "measure_ended_at")
    out = {k: rep.get(k) for k in (*keep, "started", "ended", "process_s", "repetition")}
    if rep.get("gpu"):
        out["gpu_uuid"] = rep["gpu"].get("uuid")
    if rep.get("status") == "ok":
        out["throughput_img_s"] = rep["throughput"]["img_s"]
        out["throughput_ci95_rel"] = rep["throughput"]["ci95_rel"]
        out["windows_img_s"] = rep["throughput"]["windows_img_s"]
        out["latency_ms_p50"] = rep["latency"]["p50_ms"]
        out["latency_ms_p99"] = rep["latency"]["p99_ms"]
        out["host_issue_fraction"] = rep["latency"]["host_issue_fraction"]
    return out


def _quiet_canary_ms(probe: dict, rep: dict) -> float | None:
    """The probe's quiet canary time, unless the probe ran on another GPU model than `rep`."""
    return None if probe_mismatch(probe, rep.get("gpu")) else probe.get("canary_ms")


def repeat(
    cell: Cell, args: dict, timeout_s: float, probe: dict, earlier: list[dict] = (), ledger: Ledger | None = None
) -> tuple[list[dict], dict | None]:
    """Repetitions until `repetitions` undisturbed ones give an interval within the tolerance:
    (every repetition run, the failure that stopped them or None). `earlier`: repetitions already
    measured (by their own jobs), taken first. A disturbed repetition is replaced (up to `max_extra`);
    a cell still too wide measures more while the run's `ledger` grants their time (adaptive
    repetitions, measure/budget.py), up to MAX_REPETITIONS."""
    policy = args["repetitions"]
    runs: list[dict] = []
    pending = list(earlier)
    while True:
        drawn = None
        if pending:
            rep = pending.pop(0)
        elif _planned_left(runs, policy):  # agreement once, in the first repetition
            rep = run_repetition(cell, {**args, "check_agreement": not runs}, timeout_s)
        elif (drawn := _draw(cell, args, runs, ledger)) is not None:
            rep = run_repetition(cell, {**args, "check_agreement": False}, timeout_s)
            ledger.settle(cell.key, drawn, rep["process_s"])
            rep["adaptive"] = True
        else:
            break
        if rep["status"] != "ok":
            return runs, rep
        rep["disturbed"] = disturbance(
            rep["canary_before_ms"],
            rep["canary_after_ms"],
            _quiet_canary_ms(probe, rep),
            rep.get("foreign_cores"),
            args["interference"]["canary_slowdown"],
            args["interference"]["foreign_cores"],
            rep.get("spare_cores") or 0,
        )
        runs.append(rep)
        good = [r for r in runs if not r["disturbed"]]
        if not pending and len(good) >= policy["repetitions"]:
            if repetitions.verdict(_throughput(good), args["tolerance"], policy["repetitions"]) == "stable":
                break
    return runs, None


def _planned_left(runs: list[dict], policy: dict) -> bool:
    """Whether a planned repetition is still owed: fewer than `repetitions` undisturbed ones, and a
    disturbed one is replaced at most `max_extra` times. A wide interval is no reason here: the run's
    adaptive budget decides that (`_draw`), so a noisy cell cannot take a fixed extra share of every run."""
    good = sum(not r["disturbed"] for r in runs)
    return good < policy["repetitions"] and len(runs) < policy["repetitions"] + policy["max_extra"]


# At 12 repetitions the median's interval leaves out the three extreme ones at each end (k = 3): a cell
# still wider than the tolerance there has a spread of its own that more repetitions will not narrow.
MAX_REPETITIONS = 12


def _draw(cell: Cell, args: dict, runs: list[dict], ledger: Ledger | None) -> float | None:
    """Seconds drawn from the run's budget for one more repetition of `cell` (its median repetition
    time so far), or None: no budget, the cap reached, or the budget (its part of it) spent."""
    if ledger is None or not runs or len(runs) >= MAX_REPETITIONS:
        return None
    cost = statistics.median(r["process_s"] for r in runs)
    good = [r for r in runs if not r["disturbed"]] or runs
    priority = needed_by_findings(cell, good, args.get("repetitions_root"))
    return cost if ledger.draw(cell.key, cost, priority) else None


def needed_by_findings(cell: Cell, runs: list[dict], root: str | None) -> bool:
    """Whether the findings may need this cell: the baseline (torch fp32), or a candidate for a "best"
    among the cells of its device whose repetitions are on disk under `root` (its repetitions reach the
    fastest cell's, or, at batch 1, the lowest latency's). Without others to compare, every cell is."""
    from infbench.report.aggregate import BASELINE

    if (cell.backend, cell.precision) == (BASELINE["backend"], BASELINE["precision"]):
        return True
    others = _device_repetitions(Path(root), cell.device) if root else {}
    if not others:
        return True
    tput = {k: [r["throughput"]["img_s"] for r in reps] for k, reps in others.items()}
    fastest = max(tput.values(), key=statistics.median)
    if max(r["throughput"]["img_s"] for r in runs) >= min(fastest):
        return True
    if cell.batch_size != 1:
        return False
    p50 = {k: [r["latency"]["p50_ms"] for r in reps] for k, reps in others.items() if k.endswith("x1")}
    quickest = min(p50.values(), key=statistics.median) if p50 else []
    return not quickest or min(r["latency"]["p50_ms"] for r in runs) <= max(quickest)


def _device_repetitions(root: Path, device: str) -> dict[str, list[dict]]:
    """Every measured repetition under `root` (…/repetitions) of the cells on `device`, by cell folder."""
    out: dict[str, list[dict]] = {}
    for path in root.glob(f"*/*/{device}/*/*.json"):
        try:
            rep = json.loads(path.read_text())
        except (OSError, ValueError):
            continue  # a damaged repetition is its own cell's business (load_repetitions)
        if rep.get("status") == "ok":
            out.setdefault(str(path.parent.relative_to(root)), []).append(rep)
    return out


def _throughput(reps: list[dict]) -> dict:
    return repetitions.combine([r["throughput"]["img_s"] for r in reps], [r["throughput"]["ci95_rel"] for r in reps])


def _pct(figure: dict) -> float | None:
    """A combined figure's uncertainty in percent (None where it has none)."""
    rel = figure.get("uncertainty_rel")
    return None if rel is None else 100 * rel


def cell_figures(cell: Cell, runs: list[dict], tolerance: float, min_repetitions: int) -> dict:
    """The cell's figures over its repetitions (undisturbed ones; all of them if none was quiet)."""
    good = [r for r in runs if not r["disturbed"]] or runs
    tp = _throughput(good)
    stability = repetitions.verdict(tp, tolerance, min_repetitions)
    if len(good) < min_repetitions or any(r["disturbed"] for r in good):
        stability = "unstable"  # too few quiet repetitions to vouch for the figure
    if (tp["uncertainty_rel"] or 0) > repetitions.MAX_PRINTED:
        stability = "unstable"  # shown as its range, never as a ± wider than the number's half
    latency = {
        q: repetitions.combine([r["latency"][f"{q}_ms"] for r in good], [None] * len(good))
        for q in ("p50", "p90", "p99")
    }
    # Launch-bound only has a meaning where work is queued asynchronously on a device.
    asynchronous = cell.device != "cpu" and not good[0]["synchronous_run"]
    host_fraction = statistics.median(r["latency"]["host_issue_fraction"] for r in good) if asynchronous else None
    launch_bound = host_fraction >= timing.LAUNCH_BOUND_FRACTION if asynchronous else None
    energy = [r for r in good if (r.get("nvml") or {}).get("energy_mj_per_image") is not None]
    nvml = (
        sorted(energy, key=lambda r: r["nvml"]["energy_mj_per_image"])[len(energy) // 2]["nvml"]
        if energy
        else good[0]["nvml"]
    )
    # The energy figures' ± as the throughput's: a rerun's repetition lands within it (the median
    # repetition's section is kept whole above, so that energy per image × its window's rate = power).
    spread = {
        figure: repetitions.combine([r["nvml"][figure] for r in energy], [None] * len(energy)) if energy else {}
        for figure in ("energy_mj_per_image", "power_w")
    }
    memory = max(good, key=lambda r: r["memory"].get("device_peak_mib") or 0)["memory"]
    return {
        "stability": stability,
        "throughput_img_s": tp["value"],
        "throughput_uncertainty_pct": _pct(tp),
        # the repetitions' range: what the report shows where the ± would pass 50%
        "throughput_min_img_s": tp["min"],
        "throughput_max_img_s": tp["max"],
        "time_per_image_ms": 1000 / tp["value"],
        "latency_ms_p50": latency["p50"]["value"],
        "latency_ms_p90": latency["p90"]["value"],
        "latency_ms_p99": latency["p99"]["value"],
        "latency_uncertainty_pct": _pct(latency["p50"]),
        "latency_p50_min_ms": latency["p50"]["min"],
        "latency_p50_max_ms": latency["p50"]["max"],
        "throughput": tp,
        "latency": latency,
        "repetitions": len(good),
        "adaptive_repetitions": sum(1 for r in runs if r.get("adaptive")),  # beyond max_extra, from the budget
        "disturbed_repetitions": sum(1 for r in runs if r["disturbed"]),
        "host_issue_fraction": host_fraction,
        "launch_bound": launch_bound,
        "load_s": statistics.median(r["load_s"] for r in good),
        # time to first inference: load plus the first batch (where torch.compile compiles and autotunes)
        "first_inference_s": statistics.median(r["load_s"] + r.get("first_batch_s", 0.0) for r in good),
        "nvml": nvml,
        "energy_uncertainty_pct": _pct(spread["energy_mj_per_image"]),
        "power_uncertainty_pct": _pct(spread["power_w"]),
        "memory": dict(memory),
    }


def _add_memory(result: dict, artifact: str, earlier: list[dict], runs: list[dict], measured: bool) -> None:
    """The cell's memory section: host peak of every measuring process (this job's and the repetition jobs'),
    the size of what it ran (as its repetitions loaded it; the artifact file where none did); a cell not
    measured gets null device and GPU figures that say why."""
    memory = result.setdefault("memory", {})
    memory["host_peak_mib"] = max(
        [host_peak_mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)]
        + [r["host_peak_mib"] for r in earlier if r.get("host_peak_mib") is not None]
    )
    ran = next((r["artifact_mib"] for r in runs if r.get("artifact_mib") is not None), None)
    memory["artifact_mib"] = ran if ran is not None else size_mib(artifact)
    if not measured:
        memory.setdefault("device_peak_mib", None)
        memory.setdefault("device_note", f"not measured (cell {result['status']})")
        result.setdefault("nvml", nvml_empty(f"not measured (cell {result['status']})"))


def run_cell(cell: Cell, args: dict, out: Path, timeout_s: float, earlier: list[dict] = ()) -> dict:
    """Measure `cell` in repetitions (fresh processes) and write its result JSON to `out` (atomically).

    `earlier`: repetitions measured by jobs of their own (`record_repetition`), used first.
    """
    result = {
        "schema": SCHEMA_VERSION,
        "cell": asdict(cell),
        "mode": args["mode"],
        "status": "error",
        "stability": None,
        "error": None,
        "environment": environment.fingerprint(args["threads"], cell.device),
        "artifact": args["artifact"],
        "gpu": None,
    }
    started = time.time()
    probe = _read_optional(args.get("probe")) or {}
    budget_s = args.get("extra_budget_s") or 0
    ledger = Ledger(args["budget_ledger"], budget_s) if args.get("budget_ledger") and budget_s > 0 else None
    runs, failure = repeat(cell, args, timeout_s, probe, earlier, ledger)
    # The cell's GPU: the one its (first) repetition held; a probe of another GPU model gives no
    # quiet canary and no peak to compare with.
    gpu = next((r["gpu"] for r in [*runs, failure] if r and r.get("gpu")), None)
    if gpu:
        result["gpu"] = {**gpu, "probe_mismatch": probe_mismatch(probe, gpu)}
        if result["gpu"]["probe_mismatch"]:
            probe = {}
    if failure is not None and failure["status"] == "damaged_input":
        raise DamagedInput(*failure["damaged"])  # no result: the old one stays, the file is rebuilt
    result["repetition_runs"] = [_summary_of(r) for r in [*runs, *([failure] if failure else [])]]
    if failure is not None:
        result.update(status=failure["status"], error=failure["error"])
    else:
        result.update(cell_figures(cell, runs, args["tolerance"], args["repetitions"]["repetitions"]))
        result["status"] = "ok" if result["stability"] == "stable" else "unstable"
        result["agreement"] = next((r["agreement"] for r in runs if r.get("agreement")), None)
        result["canary_quiet_ms"] = probe.get("canary_ms")
    _add_memory(result, args["artifact"], earlier, runs, measured=failure is None)
    # FLOPs per image (counted once per model and size) and utilisation against the device's probe.
    result["flops"] = flop_count.cell_metrics(
        _read_optional(args.get("flops")),
        probe or None,
        cell.precision,
        cell.batch_size,
        result.get("throughput_img_s"),
    )
    # The cell's measuring time: this job's and its repetition jobs' (a plan's estimate per cell).
    result["wall_s"] = round(time.time() - started + sum(r.get("process_s") or 0 for r in earlier), 3)
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


def add_parser(sub) -> None:
    """`infbench bench` (its measuring processes hold a GPU on --device cuda)."""
    s = sub.add_parser("bench", help="measure one cell → result JSON (never fails for a failed measurement)")
    s.add_argument("--model", default="resnet18")
    s.add_argument("--backend", required=True)
    s.add_argument("--precision", required=True)
    s.add_argument("--device", required=True)
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--batch", type=int, required=True)
    paths(s, "--artifact", "--out")
    s.add_argument("--reference", type=Path, required=True, help="inputs and fp32 logits (infbench reference)")
    s.add_argument("--threads", type=int, default=0, help="intra-op threads; 0 = every core")
    # The measurement protocol's settings: required, their defaults live in config/schema.yaml only.
    s.add_argument("--timeout", type=float, required=True, help="seconds a repetition may take")
    s.add_argument("--mode", required=True, choices=["device", "end_to_end"])
    s.add_argument("--warmup", type=float, required=True, help="warm-up budget per repetition, s")
    s.add_argument("--window", type=float, required=True, help="least duration of a throughput window, s")
    s.add_argument("--window-iterations", type=int, required=True)
    s.add_argument("--windows", type=int, required=True)
    s.add_argument("--latency", type=float, required=True, help="least duration of the latency phase, s")
    s.add_argument("--latency-iterations", type=int, required=True)
    s.add_argument("--energy-window", type=float, required=True, help="GPU energy window, s (0: none)")
    # How repetitions are judged: required unless --repetition (one repetition judges nothing).
    s.add_argument("--repetitions", type=int)
    s.add_argument("--max-extra-repetitions", type=int)
    s.add_argument("--tolerance", type=float)
    s.add_argument("--extra-budget", type=float, default=0, help="the run's seconds for adaptive repetitions")
    s.add_argument("--budget-ledger", type=Path, default=None, help="JSON ledger of that budget, shared by the run")
    s.add_argument("--canary-slowdown", type=float, help="canary/quiet time that marks disturbed")
    s.add_argument("--foreign-cores", type=float, help="other processes' cores that mark disturbed")
    s.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="backend setting")
    s.add_argument("--flops", type=Path, default=None, help="FLOP count of the model at this size (infbench flops)")
    s.add_argument("--probe", type=Path, default=None, help="hardware probe of the device (infbench probe)")
    s.add_argument("--repetition", type=int, default=None, help="measure only this repetition (1, 2, …) → --out")
    s.add_argument(
        "--repetition-results", type=Path, nargs="*", default=[], help="repetitions measured by earlier jobs"
    )
    # No GPU slot for the whole stage: the measuring process takes it (`hold_gpu`).
    s.set_defaults(func=_command)


# Settings that judge repetitions: a cell's job needs them, a repetition's job does not.
JUDGE = ("repetitions", "max_extra_repetitions", "tolerance", "canary_slowdown", "foreign_cores")


def _command(a) -> None:
    """`infbench bench`: one repetition (--repetition N) or the whole cell, from the command line."""
    missing = [f"--{k.replace('_', '-')}" for k in JUDGE if getattr(a, k) is None]
    if missing and a.repetition is None:
        raise ValueError(f"bench needs {', '.join(missing)} (or --repetition N to measure one repetition)")
    cell = Cell(a.model, a.backend, a.precision, a.device, a.size, a.batch)
    args = measurement_args(a)
    if a.repetition is not None:  # one repetition, a job of its own
        rep = record_repetition(cell, args, a.repetition, a.out, a.timeout)
        print(f"{cell.key}: repetition {a.repetition}: {rep['status']}" + (f": {rep['error']}" if rep["error"] else ""))
        return
    earlier = load_repetitions(cell, a.repetition_results)
    print(cell_line(run_cell(cell, args, a.out, a.timeout, earlier=earlier)))


def measurement_args(a) -> dict:
    """What a measuring process needs, from the command line (the backend's options typed and checked)."""
    return {
        "artifact": str(a.artifact),
        "reference": str(a.reference),
        "threads": a.threads or os.cpu_count(),
        "mode": a.mode,
        "flops": str(a.flops) if a.flops else None,
        "probe": str(a.probe) if a.probe else None,
        "options": spec(a.backend).parse_options(a.option, a.device),
        "tolerance": a.tolerance,
        "extra_budget_s": a.extra_budget,
        "budget_ledger": str(a.budget_ledger) if a.budget_ledger else None,
        # …/repetitions/<backend>/<precision>/<device>/<size>x<batch>/<n>.json: the other cells' repetitions
        "repetitions_root": str(a.repetition_results[0].parents[4]) if a.repetition_results else None,
        "repetitions": {"repetitions": a.repetitions, "max_extra": a.max_extra_repetitions},
        "energy_window_s": a.energy_window,
        "interference": {"canary_slowdown": a.canary_slowdown, "foreign_cores": a.foreign_cores},
        "timing": {
            "warmup_s": a.warmup,
            "window_s": a.window,
            "window_iterations": a.window_iterations,
            "windows": a.windows,
            "latency_s": a.latency,
            "latency_iterations": a.latency_iterations,
        },
    }


def _spread_text(result: dict) -> str:
    """'±3.1%', or the repetitions' range where the ± would pass MAX_PRINTED."""
    u = result["throughput_uncertainty_pct"]
    if u is not None and u <= 100 * repetitions.MAX_PRINTED:
        return f"±{u:.1f}%"
    return f"(range {result['throughput_min_img_s']:.1f}–{result['throughput_max_img_s']:.1f})"


def cell_line(result: dict) -> str:
    """One line per cell: its figures with their uncertainty, or why it has none."""
    line = f"{Cell(**result['cell']).key}: {result['status']}"
    if result.get("throughput_img_s") is None:
        return line + f": {result['error']}"
    runs = result["repetition_runs"]
    line += (
        f", {result['throughput_img_s']:.1f} img/s {_spread_text(result)}, "
        f"latency p50 {result['latency_ms_p50']:.3f} ms, {result['repetitions']} repetitions"
        f" ({len(runs)} run, {result['disturbed_repetitions']} disturbed, {result['adaptive_repetitions']} adaptive)"
    )
    if result.get("launch_bound"):
        line += ", launch-bound"
    return line


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
