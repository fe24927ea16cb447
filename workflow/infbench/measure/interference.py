"""Was something else using the machine while a repetition ran?

Two independent signals mark the repetition disturbed (bench.py re-measures it):

* the canary: a fixed small workload timed at the start and the end of the repetition, held against
  the same workload timed by the hardware probe on a quiet machine. On the CPU it is a matrix
  product on every core (BLAS threads) (a busy core slows it down), on CUDA a run of tiny kernels
  launched and synchronised (a busy host or a shared GPU slows it down);
* foreign CPU time: the busy CPU time of the CPUs the job may use (/proc/stat) over the timed part of the
  repetition, minus the measuring process's own CPU time. Catches a load that comes and goes
  between the canaries. Only load beyond the cores the cell leaves idle counts: a CPU cell uses
  every core (any load competes with it), a GPU cell's host issues work from one thread (load on
  the other cores, such as the next repetitions importing torch, does not slow it; the canary,
  on that same host path, shows when something does).

On a CPU only other processes' CPU time marks a repetition disturbed. A slow canary there with no
other process seen on the job's CPUs is the machine itself running slower (a cloud VM's host, a
neighbour on the same physical cores, the clock): measured on an idle 2-core VM, a single-threaded
matmul ran 1.7× slower for tens of seconds at a time, and repetitions measured again at once fell in
the same slow phase (the default study took 35 minutes instead of 10, replacing them). Such a
repetition is kept and labelled `slowed`: the slow phase is part of what the user's machine does, the
cell's ± shows it, and the interleaved order spreads it over both sides of a comparison. On a GPU a
slow canary (a busy host path or a shared GPU, which no CPU count sees) still marks it disturbed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from infbench.core.cpus import allowed_cpus

CANARY_REPEATS = 15
# Waiting for a quiet machine before a repetition (`wait_until_quiet`): how often to look, and for how
# long at most (a burst of other work on a shared machine: a build, a test run, a neighbour's job).
QUIET_SAMPLE_S = 0.2
QUIET_WAIT_S = 30.0
CUDA_HOST_CORES = 2  # a GPU cell's issuing thread, and the driver's threads beside it


def canary_ms(device: str) -> float:
    """Lower-quartile time (ms) of the fixed canary workload on `device`."""
    if device == "cuda":
        import torch

        x = torch.ones(1024, device="cuda")

        def work():
            for _ in range(50):
                x.add_(1.0)
            torch.cuda.synchronize()

    else:  # NumPy's BLAS uses every core, as a CPU cell does; no torch import inflates the host memory
        import numpy as np

        a = np.ones((512, 512), np.float32)

        def work():
            for _ in range(4):
                a @ a

    work()  # first call: thread pool, kernel load
    times = []
    for _ in range(CANARY_REPEATS):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return times[len(times) // 4]  # lower quartile: a busy core slows every run, a stray tick only some


def cpu_busy_s(cpus: list[int] | None = None) -> float | None:
    """Busy CPU seconds since boot of `cpus` (default: those this process may run on, `core.cpus`), from
    Linux's /proc/stat per-CPU lines; None elsewhere. Other jobs on CPUs this one may not use do not
    compete with it (a SLURM job's or a container's CPUs on a shared node)."""
    wanted = {f"cpu{n}" for n in (allowed_cpus() if cpus is None else cpus)}
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return None
    busy = 0
    for line in lines:
        name, *fields = line.split()
        if name in wanted:
            ticks = [int(v) for v in fields[:8]]
            busy += sum(ticks) - ticks[3] - ticks[4]  # less idle and iowait
    return busy / os.sysconf("SC_CLK_TCK")


def cpu_mark() -> tuple[float | None, float, float]:
    """Where the machine's and this process's CPU time stand now (for `foreign_cores_since`)."""
    return cpu_busy_s(), time.process_time(), time.perf_counter()


def foreign_cores_since(mark: tuple[float | None, float, float]) -> float | None:
    """Cores other processes kept busy since `mark`: the machine's busy time less this process's own,
    over the wall time, None without /proc/stat."""
    busy0, own0, t0 = mark
    busy1, own1, t1 = cpu_mark()
    if busy0 is None or busy1 is None:
        return None
    return max(0.0, (busy1 - busy0) - (own1 - own0)) / (t1 - t0)


def foreign_cores_now(sample_s: float = QUIET_SAMPLE_S) -> float | None:
    """Cores other processes keep busy right now: over `sample_s` seconds of this process sleeping."""
    mark = cpu_mark()
    time.sleep(sample_s)
    return foreign_cores_since(mark)


def wait_until_quiet(max_foreign_cores: float, spare: float, max_wait_s: float = QUIET_WAIT_S) -> tuple[float, bool]:
    """Wait (at most `max_wait_s`) until other processes use no more than `max_foreign_cores` beyond
    the `spare` cores the cell leaves idle: (seconds waited, whether the machine was quiet).

    A repetition started in a burst of other work is disturbed and measured again; started after it,
    it is not. On a 2-core VM under an intermittent load (on 8–25 s, off 10–30 s), replacements of
    disturbed repetitions were disturbed again when run at once, and a cell was left with 2 of its 5
    undisturbed repetitions."""
    start = time.perf_counter()
    while True:
        foreign = foreign_cores_now()
        if foreign is None or foreign - spare <= max_foreign_cores:
            return time.perf_counter() - start, True
        if time.perf_counter() - start >= max_wait_s:
            return time.perf_counter() - start, False


def spare_cores(device: str, threads: int) -> int:
    """Cores a measuring process leaves idle: other processes' load there does not compete with it."""
    allowed = len(allowed_cpus())
    # a GPU cell's host: its issuing thread and the driver's, whatever its intra-op threads (1 by default)
    used = min(CUDA_HOST_CORES, allowed) if device == "cuda" else threads
    return max(0, allowed - used)


def disturbance(
    canary_before_ms: float | None,
    canary_after_ms: float | None,
    quiet_canary_ms: float | None,
    foreign_cores: float | None,
    max_slowdown: float,
    max_foreign_cores: float,
    spare: float = 0,
    device: str = "cuda",
) -> str | None:
    """Why a repetition counts as disturbed (config bench.canary_slowdown, bench.foreign_cores), or None.
    `spare`: cores the cell leaves idle; only foreign load beyond them counts. On the CPU a slow canary
    alone is the machine's own slow phase (`slowed`), not a disturbance (see the module doc)."""
    reasons = (
        [] if device == "cpu" else canary_slowdowns(canary_before_ms, canary_after_ms, quiet_canary_ms, max_slowdown)
    )
    if foreign_cores is not None and foreign_cores - spare > max_foreign_cores:
        beyond = f", {foreign_cores - spare:.2f} beyond the {spare:g} the cell leaves idle" if spare else ""
        reasons.append(f"other processes used {foreign_cores:.2f} cores{beyond}")
    return "; ".join(reasons) or None


def canary_slowdowns(
    canary_before_ms: float | None, canary_after_ms: float | None, quiet_canary_ms: float | None, max_slowdown: float
) -> list[str]:
    """The canary readings beyond `max_slowdown` times the quiet one (on the CPU: `slowed`, kept)."""
    if not quiet_canary_ms:
        return []
    return [
        f"canary at the {when} {value / quiet_canary_ms:.1f}× its quiet time"
        for when, value in (("start", canary_before_ms), ("end", canary_after_ms))
        if value is not None and value > max_slowdown * quiet_canary_ms
    ]
