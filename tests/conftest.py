"""Shared fixtures: a copy of the workflow in a temporary folder with a tiny config.

Training once per session is enough: `trained_workflow` runs the workflow up to the ONNX export a
single time, and `workflow_copy` hands each test its own copy of that folder (results and
Snakemake's metadata included, times preserved), so tests never share state. Likewise the default
study is run through `report` once (`reported_run`): tests that only read it share it, tests that
change it take `reported_copy`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

TINY_CONFIG = {
    "dataset": "digits",
    "split": {"calibration": 64, "test": 128, "validation": 16, "seed": 0},
    "train": {"epochs": 1, "batch_size": 64, "image_size": 32},
    "export": {"parity_images": 16},
    "grid": {
        "image_sizes": [32],
        "batch_sizes": [4],
        "devices": ["cpu"],
        "backends": {"torch": ["fp32"], "onnxruntime": ["fp32"]},
    },
    # Short phases and two repetitions; tolerance 1 counts any agreement as stable, the
    # interference limits are out of reach and no adaptive repetitions are drawn (on a busy machine
    # two repetitions can differ by more than a printable ±, and each run would spend its budget on
    # them), so a test passes on a busy machine too and takes no longer there (the tests that are
    # about stability, interference and the adaptive budget set their own).
    "bench": {
        "repetitions": 2,
        "tolerance": 1.0,
        "extra_budget_s": 0,
        "canary_slowdown": 1000,
        "foreign_cores": 1000,
        "warmup_s": 0.2,
        "window_s": 0.05,
        "windows": 3,
        "latency_s": 0.1,
        "latency_iterations": 10,
        "energy_window_s": 0.2,
        "timeout_s": 120,
        "agreement_images": 8,
    },
    # A short hardware probe (the default measures each peak for 1.5 s): the tests read that it
    # ran and what the cells' utilisation is against it, never its accuracy.
    "probe": {"budget_s": 0.3, "matmul_n": 512, "copy_mib": 32},
}


# A cell with numbers: stable, or unstable where this machine was too busy to vouch for them (the
# tests about stability assert it themselves; elsewhere the numbers are what matters).
MEASURED = ("ok", "unstable")


def protocol_args(**bench) -> list[str]:
    """The measurement flags `infbench bench` requires, from TINY_CONFIG's bench section and the
    schema's defaults (the rule passes them the same way), `bench` overriding."""
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())["properties"]["bench"]["properties"]
    values = {k: v["default"] for k, v in schema.items()} | TINY_CONFIG["bench"] | bench
    flags = {
        "timeout_s": "--timeout",
        "mode": "--mode",
        "repetitions": "--repetitions",
        "max_extra_repetitions": "--max-extra-repetitions",
        "tolerance": "--tolerance",
        "warmup_s": "--warmup",
        "window_s": "--window",
        "window_iterations": "--window-iterations",
        "windows": "--windows",
        "latency_s": "--latency",
        "latency_iterations": "--latency-iterations",
        "energy_window_s": "--energy-window",
        "canary_slowdown": "--canary-slowdown",
        "foreign_cores": "--foreign-cores",
    }
    return [arg for key, flag in flags.items() for arg in (flag, str(values[key]))]


def copy_workflow(dest: Path, config: dict | None = None) -> Path:
    """Snakefile, workflow/, config/, envs/ and profiles/ in `dest`, with `config` as config/config.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(REPO / "Snakefile", dest / "Snakefile")
    for folder in ("workflow", "config", "envs", "profiles"):
        shutil.copytree(REPO / folder, dest / folder, ignore=shutil.ignore_patterns("__pycache__"), dirs_exist_ok=True)
    if config is not None:
        write_config(dest, config)
    return dest


def write_config(workdir: Path, config: dict) -> None:
    (workdir / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))


def snakemake(workdir: Path, *args: str, check: bool = True, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run the real Snakemake CLI in `workdir`; output captured for assertions."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    # The copy's own package comes first, so edits to its modules act as a user's edits would.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(workdir / "workflow")}
    proc = subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def planned_jobs(workdir: Path, *targets: str) -> dict[str, int]:
    """Job counts per rule of a dry run ('Job stats' table); empty when nothing is to be done."""
    out = snakemake(workdir, "-n", *targets).stdout
    counts, in_table = {}, False
    for line in out.splitlines():
        if line.startswith("job ") and "count" in line:
            in_table = True
            continue
        if in_table:
            parts = line.split()
            if not parts or parts[0] == "total":
                break
            if len(parts) == 2 and parts[1].isdigit():
                counts[parts[0]] = int(parts[1])
    return counts


@pytest.fixture(scope="session")
def trained_workflow(tmp_path_factory) -> Path:
    """A workflow folder with the tiny config, run up to the fp32 ONNX export (once per session)."""
    workdir = copy_workflow(tmp_path_factory.mktemp("trained"), TINY_CONFIG)
    snakemake(workdir, "results/digits/resnet18/onnx/fp32.onnx")
    return workdir


@pytest.fixture
def workflow_copy(trained_workflow, tmp_path) -> Path:
    """This test's own copy of the trained workflow folder."""
    dest = tmp_path / "wf"
    shutil.copytree(trained_workflow, dest, symlinks=True)
    return dest


def start_snakemake(workdir: Path, *args: str) -> subprocess.Popen:
    """`snakemake()` in the background, in its own process group (output in workdir/snakemake.out)."""
    cmd = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(workdir / "workflow")}
    out = open(workdir / "snakemake.out", "w")  # noqa: SIM115  (closed with the process)
    return subprocess.Popen(cmd, cwd=workdir, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)


def measuring_processes(workdir: Path) -> dict[int, dict]:
    """pid → cell of every live cell-measuring child (`python -m infbench.bench.process ARGS OUT`) run in `workdir`."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            argv = (proc / "cmdline").read_bytes().decode().split("\0")
            if "infbench.bench.process" not in argv or Path(os.readlink(proc / "cwd")) != workdir.resolve():
                continue
            args = json.loads(Path(argv[argv.index("infbench.bench.process") + 1]).read_text())
            found[int(proc.name)] = args["cell"]
        except (OSError, ValueError, IndexError, KeyError):
            continue
    return found


@pytest.fixture(scope="session")
def reported_run(trained_workflow, tmp_path_factory) -> tuple[Path, str]:
    """The trained workflow folder run through `report` once (tiny grid, every cell ok): the folder
    and what the run printed. The default study of the suite: the tests that only read a finished
    study (or what its run printed) read this one, those that change it work on `reported_copy`."""
    dest = tmp_path_factory.mktemp("reported") / "wf"
    shutil.copytree(trained_workflow, dest, symlinks=True)
    proc = snakemake(dest, "report")
    return dest, proc.stdout + proc.stderr


@pytest.fixture(scope="session")
def reported_workflow(reported_run) -> Path:
    """The finished default study's folder (read-only: a test that changes it takes `reported_copy`)."""
    return reported_run[0]


@pytest.fixture(scope="session")
def report_again(reported_workflow, tmp_path_factory) -> tuple[Path, str]:
    """`snakemake report` once more on a copy of the finished study: the copy and what it printed."""
    dest = tmp_path_factory.mktemp("again") / "wf"
    shutil.copytree(reported_workflow, dest, symlinks=True)
    proc = snakemake(dest, "report")
    return dest, proc.stdout + proc.stderr


@pytest.fixture
def reported_copy(reported_workflow, tmp_path) -> Path:
    """This test's own copy of the reported workflow folder (results and Snakemake metadata)."""
    dest = tmp_path / "wf"
    shutil.copytree(reported_workflow, dest, symlinks=True)
    return dest
