"""Cluster submission: the tiny config through `snakemake --profile profiles/slurm report` on a real SLURM.

A single-node SLURM (Debian's slurm-wlm and munge) is started on this machine by
tests/slurm/cluster.py; its node has one GPU gres backed by /dev/null, so a `cuda` cell's job is
scheduled with a GPU (and reports `unavailable` on machines without one, which is fine here).
Skips, saying why, when not root or when the packages are missing; CI installs them and runs it.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MEASURED, REPO, TINY_CONFIG, copy_workflow

sys.path.insert(0, str(Path(__file__).parent / "slurm"))
import cluster as slurm  # noqa: E402

SUBMITTED = re.compile(r"has been submitted with SLURM jobid (\d+) \(log: (\S+)\)")
CPU_RULES = ("prepare_data", "train", "export_onnx", "aggregate", "render_report")


@pytest.fixture(scope="session")
def slurm_cluster():
    reason = slurm.unavailable_reason()
    if reason:
        pytest.skip(f"no local SLURM cluster: {reason}")
    cluster = slurm.Cluster(slurm.default_base())
    was_running = cluster.running()
    cluster.start()
    yield cluster
    if not was_running:
        cluster.stop()


def slurm_config() -> dict:
    """The tiny test config with one CPU and one CUDA cell (torch eager fp32)."""
    config = copy.deepcopy(TINY_CONFIG)
    config["grid"]["devices"] = ["cpu", "cuda"]
    config["grid"]["backends"] = {"torch": ["fp32"]}
    return config


def node_cpus(cluster: slurm.Cluster) -> int:
    out = cluster._client("scontrol", "show", "node", cluster.host).stdout
    match = re.search(r"CPUTot=(\d+)", out)
    return int(match.group(1)) if match else 1


def rule_dir(slurm_logs: Path, log: Path) -> str:
    """`rule_train`, `group_cells_bench_cell`, …: the first folder under slurm_logs of a job's log."""
    try:
        return log.relative_to(slurm_logs).parts[0]
    except ValueError:
        return log.parent.name


def test_report_through_slurm(slurm_cluster, tmp_path):
    workdir = copy_workflow(tmp_path / "wf", slurm_config())
    for folder in ("profiles", "envs"):
        if not (workdir / folder).exists():
            shutil.copytree(REPO / folder, workdir / folder)

    # Jobs run `snakemake` and `infbench` inside SLURM with the submitting environment
    # (sbatch --export=ALL): this interpreter's bin folder must come first on PATH there.
    env = slurm_cluster.env()
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env["PATH"]])
    env["PYTHONPATH"] = str(workdir / "workflow")
    env["PYTHONUNBUFFERED"] = "1"
    cmd = [
        sys.executable,
        "-m",
        "snakemake",
        "--profile",
        "profiles/slurm",
        "report",
        # This test cluster keeps no accounting (no sacct); finished jobs stay in squeue (MinJobAge).
        "--slurm-status-command",
        "squeue",
        "--slurm-init-seconds-before-status-checks",
        "2",
        # One job's cores (the profile's `cores`): no more than this one node has.
        "--cores",
        str(node_cpus(slurm_cluster)),
    ]
    proc = subprocess.run(cmd, cwd=workdir, env=env, capture_output=True, text=True, timeout=1500)
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"snakemake --profile profiles/slurm failed ({proc.returncode}):\n{log[-8000:]}"

    # Every job went through SLURM: job ids in Snakemake's log, and SLURM's own log of each job.
    submitted = {int(job_id): Path(path) for job_id, path in SUBMITTED.findall(log)}
    assert submitted, f"no SLURM job ids in the log:\n{log[-4000:]}"
    slurm_logs = workdir / ".snakemake" / "slurm_logs"
    # SLURM logs live in .snakemake/slurm_logs/<rule_NAME | group_GROUP_RULES>/[wildcards/…]<jobid>.log
    kind_of = {job_id: rule_dir(slurm_logs, path) for job_id, path in submitted.items()}
    kinds = set(kind_of.values())
    for rule in ("prepare_data", "train", "aggregate", "render_report"):
        assert f"rule_{rule}" in kinds, (rule, kinds)
    assert any("bench_cell" in kind for kind in kinds), kinds
    assert all((workdir / p if not p.is_absolute() else p).exists() for p in submitted.values()), submitted
    assert slurm_logs.is_dir()

    # What SLURM was asked for and gave: a GPU for the job holding the CUDA cell, none for CPU stages.
    gpu_jobs = []
    for job_id in submitted:
        info = slurm_cluster.job_info(job_id)
        kind = kind_of[job_id]
        assert "JobState=COMPLETED" in info, f"job {job_id} ({kind}):\n{info}"
        asked_gpu = "TresPerJob=gres:gpu:1" in info
        if kind.removeprefix("rule_") in CPU_RULES:
            assert not asked_gpu and "JOB_GRES=gpu" not in info, f"CPU stage {kind} asked for a GPU:\n{info}"
        if asked_gpu:
            # ... and SLURM allocated it one.
            assert re.search(r"JOB_GRES=gpu(:\w+)?:1", info), info
            gpu_jobs.append(kind)
    assert any("bench_cell" in kind for kind in gpu_jobs), f"no benchmark job asked SLURM for a GPU: {kind_of}"

    # The CUDA cell ran inside that job; without a GPU it says so instead of failing the workflow.
    bench = workdir / "results/digits/resnet18/bench/torch/fp32"
    cpu_cell = json.loads((bench / "cpu" / "32x4.json").read_text())
    cuda_cell = json.loads((bench / "cuda" / "32x4.json").read_text())
    assert cpu_cell["status"] in MEASURED, cpu_cell.get("error")
    assert cuda_cell["status"] in (*MEASURED, "unavailable"), cuda_cell.get("error")

    report = workdir / "results/digits/resnet18/report"
    for name in ("index.html", "summary.md", "summary.csv"):
        assert (report / name).stat().st_size > 0, name


def test_a_slurm_job_of_one_cpu_measures_its_cell_with_one_thread(slurm_cluster, workflow_copy):
    """Issue 35 item 2: a job SLURM gives 1 CPU of this node's 2 measures with 1 thread (`cpu_threads: 0`),
    and its result says so; before, every runtime was told the host's core count."""
    if node_cpus(slurm_cluster) < 2:
        pytest.skip("the node has one CPU: a job of one CPU is the whole node")
    from conftest import protocol_args, snakemake

    snakemake(workflow_copy, "results/digits/resnet18/reference/32.npz")
    out = workflow_copy / "cell.json"
    bench = [
        sys.executable, "-m", "infbench.cli", "bench", "--backend", "torch", "--precision", "fp32",
        "--device", "cpu", "--size", "32", "--batch", "4", "--artifact", "results/digits/resnet18/checkpoint.pt",
        "--reference", "results/digits/resnet18/reference/32.npz", "--threads", "0", "--out", str(out),
        *protocol_args(repetitions=2),
    ]  # fmt: skip
    env = slurm_cluster.env()
    env.pop("OMP_NUM_THREADS", None)
    env["PYTHONPATH"] = str(workflow_copy / "workflow")
    log = workflow_copy / "slurm.log"
    sbatch = ["sbatch", "--wait", "--cpus-per-task=1", "--output", str(log), "--wrap", shlex.join(bench)]
    proc = subprocess.run(sbatch, cwd=workflow_copy, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout + proc.stderr + (log.read_text() if log.exists() else "")
    cell = json.loads(out.read_text())
    assert cell["status"] in MEASURED, cell.get("error")
    environment = cell["environment"]
    assert environment["threads"] == 1 and len(environment.get("cpus_allowed", [])) == 1, environment
    assert environment["cores"] == node_cpus(slurm_cluster)
