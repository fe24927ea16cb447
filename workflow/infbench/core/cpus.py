"""The CPUs a job may use: its affinity (taskset, a SLURM job's binding, a container's cpuset), its
cgroup's CPU quota, and the threads Snakemake gave its job; never the host's core count, which on a
shared node names CPUs that other jobs run on (issue 35)."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")


def allowed_cpus() -> list[int]:
    """The CPUs this process may run on (its affinity), every CPU where the platform cannot say."""
    try:
        return sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return list(range(os.cpu_count() or 1))


def _cgroup_dirs() -> list[Path]:
    """This process's cgroup folders, v2's and v1's cpu controller's (from /proc/self/cgroup)."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return []
    dirs = []
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # cgroup v2
            dirs.append(CGROUP_ROOT / path.lstrip("/"))
        elif "cpu" in controllers.split(","):
            dirs += [CGROUP_ROOT / name / path.lstrip("/") for name in ("cpu,cpuacct", "cpu")]
    return dirs


def cgroup_cpu_quota() -> float | None:
    """CPUs' worth of time the cgroup quota allows (cpu.max in v2, cfs_quota/cfs_period in v1), None
    without a quota."""
    for folder in _cgroup_dirs():
        try:
            quota, period = (folder / "cpu.max").read_text().split()
            if quota != "max":
                return int(quota) / int(period)
            continue
        except (OSError, ValueError):
            pass
        try:
            quota = int((folder / "cpu.cfs_quota_us").read_text())
            period = int((folder / "cpu.cfs_period_us").read_text())
            if quota > 0:
                return quota / period
        except (OSError, ValueError):
            pass
    return None


def job_threads() -> int | None:
    """The threads Snakemake gave this job ({threads}: it sets OMP_NUM_THREADS for a rule's command)."""
    try:
        return int(os.environ["OMP_NUM_THREADS"]) or None
    except (KeyError, ValueError):
        return None


def usable_cpus() -> int:
    """How many CPUs this job may keep busy: its affinity, capped by the cgroup quota and its job's threads."""
    limits = [len(allowed_cpus()), job_threads()]
    quota = cgroup_cpu_quota()
    if quota is not None:
        limits.append(max(1, math.floor(quota)))
    return max(1, min(n for n in limits if n))


def threads(requested: int) -> int:
    """The threads a stage runs: `requested` (config bench.cpu_threads), or with 0 every CPU the job may use."""
    return requested or usable_cpus()
