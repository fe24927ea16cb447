"""The CPUs a job may use, not the host's (issue 35 item 2): `cpu_threads: 0` resolves to the job's
affinity / cgroup quota / Snakemake threads, other processes' load is counted on those CPUs only, and
the result says which CPUs it was allowed and how many threads it ran. Real processes under `taskset`;
tests/test_slurm.py does the same through a real SLURM job."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import protocol_args, snakemake

from infbench.measure import interference

REFERENCE = "results/digits/resnet18/reference/32.npz"
CHECKPOINT = "results/digits/resnet18/checkpoint.pt"
TASKSET = shutil.which("taskset")
needs_two_cpus = pytest.mark.skipif(
    TASKSET is None or len(os.sched_getaffinity(0)) < 2, reason="needs taskset and two CPUs to leave one out"
)


def bench_command(out: Path) -> list[str]:
    """`infbench bench` of the tiny study's torch fp32 CPU cell with `--threads 0` (config cpu_threads: 0)."""
    args = protocol_args(repetitions=2)
    return [
        sys.executable, "-m", "infbench.cli", "bench", "--backend", "torch", "--precision", "fp32",
        "--device", "cpu", "--size", "32", "--batch", "4", "--artifact", CHECKPOINT, "--reference", REFERENCE,
        "--threads", "0", "--out", str(out), *args,
    ]  # fmt: skip


@pytest.fixture
def cell_inputs(workflow_copy) -> Path:
    """The trained tiny study with its reference images made (what a cell's job reads)."""
    snakemake(workflow_copy, REFERENCE)
    return workflow_copy


def job_env(workdir: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    return env | {"PYTHONPATH": str(workdir / "workflow")}


@needs_two_cpus
def test_a_cell_under_taskset_measures_with_the_one_cpu_it_may_use(cell_inputs):
    out = cell_inputs / "cell.json"
    proc = subprocess.run(
        [TASKSET, "-c", "0", *bench_command(out)], cwd=cell_inputs, capture_output=True, text=True,
        timeout=600, env=job_env(cell_inputs),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cell = json.loads(out.read_text())
    assert cell["status"] in ("ok", "unstable"), cell.get("error")
    env = cell["environment"]
    assert env["threads"] == 1 and env.get("cpus_allowed") == [0], env
    assert env["cores"] == os.cpu_count()  # the host's count is still recorded, beside what the job had


@needs_two_cpus
def test_the_probe_and_snakemakes_threads_bound_cpu_threads_0(tmp_path):
    """`infbench probe --threads 0` under taskset: one thread; with both CPUs but Snakemake's {threads}
    (OMP_NUM_THREADS, which Snakemake sets for a job's command) of 1: one thread too."""
    for prefix, extra in (([TASKSET, "-c", "1"], {}), ([], {"OMP_NUM_THREADS": "1"})):
        out = tmp_path / "probe.json"
        proc = subprocess.run(
            [*prefix, sys.executable, "-m", "infbench.cli", "probe", "--device", "cpu", "--threads", "0",
             "--budget", "0.1", "--matmul-n", "128", "--copy-mib", "4", "--out", str(out)],
            capture_output=True, text=True, timeout=300, env=job_env(Path.cwd()) | extra,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stdout + proc.stderr
        probe = json.loads(out.read_text())
        assert probe["threads"] == 1, (prefix, extra, probe["threads"])
        assert probe["environment"]["cpus_allowed"] == ([1] if prefix else sorted(os.sched_getaffinity(0)))


@needs_two_cpus
def test_foreign_load_is_counted_on_the_jobs_cpus_only():
    """A process spinning on CPU 1 is foreign load to a job on both CPUs, none to a job on CPU 0."""
    spin = "import time\nend = time.time() + 3\nwhile time.time() < end: pass"
    on_0, on_both = interference.cpu_busy_s([0]), interference.cpu_busy_s([0, 1])
    start = time.perf_counter()
    subprocess.run([TASKSET, "-c", "1", sys.executable, "-c", spin], check=True, timeout=60)
    wall = time.perf_counter() - start
    seen_0 = interference.cpu_busy_s([0]) - on_0
    seen_both = interference.cpu_busy_s([0, 1]) - on_both
    # the spinner's ~3 CPU-seconds are on CPU 1 alone (other processes on this machine add to both)
    assert seen_both - seen_0 >= 0.8 * 3, (seen_both, seen_0, wall)
    # what a process pinned to CPU 0 counts by default: its own CPU's line of /proc/stat
    code = "from infbench.core import cpus; print(cpus.allowed_cpus())"
    proc = subprocess.run([TASKSET, "-c", "0", sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == "[0]"
