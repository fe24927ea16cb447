"""Failure isolation: whatever happens to one cell becomes that cell's result, never a failed run.

Every failure here is real, caused from outside the product as it would happen to a user: a
truncated artifact on disk, a segfault (SIGSEGV sent to the measuring process while it runs), an
out-of-memory (the measuring process's address space limited with prlimit, as `ulimit -v` would),
a cell running past its timeout. In each case the Snakemake run succeeds, the cell's JSON holds
the status and the message, and the report is built.
"""

from __future__ import annotations

import errno
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
from conftest import TINY_CONFIG, measuring_processes, protocol_args, snakemake, start_snakemake, write_config

from infbench.backends.base import BackendUnavailable
from infbench.backends.registry import spec
from infbench.bench.process import status_of
from infbench.core.cell import Cell
from infbench.core.io import check_artifact

ONNX = "results/digits/resnet18/onnx/fp32.onnx"
CHECKPOINT = "results/digits/resnet18/checkpoint.pt"
DATASET = "results/digits/data.npz"
REFERENCE = "results/digits/resnet18/reference/32.npz"  # up to date in the default study (conftest's reported_copy)


def result(workdir: Path, backend: str, size: int = 32, batch: int = 4) -> dict:
    return json.loads((workdir / f"results/digits/resnet18/bench/{backend}/fp32/cpu/{size}x{batch}.json").read_text())


def truncate(path: Path, keep: float = 0.3) -> None:
    """Cut a file short, keeping its times (as a damaged disk or an interrupted copy would leave it)."""
    st = path.stat()
    path.write_bytes(path.read_bytes()[: int(st.st_size * keep)])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def wait_for_child(workdir: Path, run: subprocess.Popen, backend: str, timeout: float = 300) -> int:
    """pid of the measuring process of `backend`'s cell, as soon as it exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for pid, cell in measuring_processes(workdir).items():
            if cell["backend"] == backend:
                return pid
        if run.poll() is not None:
            raise AssertionError(f"snakemake ended first:\n{(workdir / 'snakemake.out').read_text()}")
        time.sleep(0.02)
    raise AssertionError(f"no measuring process of {backend} within {timeout} s")


def finish(workdir: Path, run: subprocess.Popen, timeout: float = 600) -> str:
    run.wait(timeout=timeout)
    out = (workdir / "snakemake.out").read_text()
    assert run.returncode == 0, out
    return out


def assert_report_lists(workdir: Path, expected: dict[str, str]) -> pl.DataFrame:
    """The report was built and its summary holds each backend's cell with the expected status."""
    report = workdir / "results/digits/resnet18/report"
    assert (report / "index.html").stat().st_size > 0
    df = pl.read_parquet(report / "summary.parquet")
    got = dict(zip(df["backend"].to_list(), df["status"].to_list(), strict=True))
    assert got == expected, df.select("backend", "status", "error")
    return df


# -- a crash, a corrupt artifact ---------------------------------------------------------------


def test_a_segfault_becomes_a_result_and_the_report_completes(reported_copy):
    """torch's cell is killed by SIGSEGV mid-run. (A damaged artifact is not a result of the cell
    but a file to rebuild: tests/test_integrity.py.)"""
    wd = reported_copy
    before = (wd / "results/digits/resnet18/report/index.html").stat().st_mtime_ns
    run = start_snakemake(wd, "report", "--forcerun", "bench_repetition")  # each cell's repetitions, then the cell
    pid = wait_for_child(wd, run, "torch")
    resource.prlimit(pid, resource.RLIMIT_CORE, (0, 0))  # a segfault, without a core file
    os.kill(pid, signal.SIGSEGV)
    finish(wd, run)

    crashed = result(wd, "torch")
    assert crashed["status"] == "error"
    assert "killed by SIGSEGV" in crashed["error"], crashed["error"]
    assert result(wd, "onnxruntime")["status"] == "ok"

    df = assert_report_lists(wd, {"torch": "error", "onnxruntime": "ok"})
    assert (wd / "results/digits/resnet18/report/index.html").stat().st_mtime_ns > before
    assert "SIGSEGV" in " ".join(e for e in df["error"].to_list() if e)
    html = (wd / "results/digits/resnet18/report/index.html").read_text()
    assert "SIGSEGV" in html, "the report does not show the failed cell"


# -- a timeout ---------------------------------------------------------------------------------


def test_a_cell_past_its_timeout_is_killed_and_recorded(reported_copy):
    wd = reported_copy
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["grid"]["backends"] = {"torch": ["fp32"]}
    # A 3 s latency phase; the timeout is just above the phases' total, so start-up (imports,
    # loading, the agreement check) alone runs past it.
    cfg["bench"].update(latency_s=3, energy_window_s=0, timeout_s=3.5)
    write_config(wd, cfg)
    started = time.monotonic()
    snakemake(wd, "report")
    cell = result(wd, "torch")
    assert cell["status"] == "timeout"
    assert "no result within the cell timeout of 3.5 s" in cell["error"], cell["error"]
    assert cell["wall_s"] < 30 and time.monotonic() - started < 300
    assert not measuring_processes(wd), "the timed-out measuring process is still running"
    assert_report_lists(wd, {"torch": "timeout"})


# -- an out-of-memory --------------------------------------------------------------------------


def limit_each_child(workdir: Path, run: subprocess.Popen, backend: str, limit: int, timeout: float = 600) -> int:
    """Limit the address space of every measuring process of `backend` (prlimit on its pid as soon as it
    exists, long before it allocates), as `ulimit -v` for the cell would, until the run ends: how many."""
    limited: set[int] = set()
    deadline = time.monotonic() + timeout
    while run.poll() is None:
        assert time.monotonic() < deadline, f"the run did not end within {timeout} s"
        for pid, cell in measuring_processes(workdir).items():
            if cell["backend"] == backend and pid not in limited:
                try:
                    resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
                    limited.add(pid)
                except ProcessLookupError:  # it ended between the listing and the limit
                    pass
        time.sleep(0.02)
    return len(limited)


def test_out_of_memory_is_status_oom(reported_copy):
    """A 1024×1024 batch of 64 needs far more than the 5 GiB of address space the cell is given.

    The limit is set on the cell's measuring processes alone (prlimit on each one's pid, right after
    it starts and long before it allocates), so Snakemake, the report and other rules run
    unconstrained. Each repetition's process is limited: an unlimited one would spend the cell's
    timeout on a batch this machine computes in minutes (and several GiB of its memory).
    A large image size rather than a huge batch: the accuracy job runs at the grid's largest batch.
    """
    wd = reported_copy
    cfg = json.loads(json.dumps(TINY_CONFIG))
    cfg["grid"].update(backends={"torch": ["fp32"]}, image_sizes=[1024], batch_sizes=[64])
    cfg["bench"]["cpu_threads"] = 2  # few threads: few thread stacks and malloc arenas in the address space
    write_config(wd, cfg)
    run = start_snakemake(wd, "report")
    limited = limit_each_child(wd, run, "torch", 5 * 2**30)
    assert limited == TINY_CONFIG["bench"]["repetitions"], (wd / "snakemake.out").read_text()  # one a repetition
    finish(wd, run)
    cell = result(wd, "torch", 1024, 64)
    assert cell["status"] == "oom", cell["error"]
    assert "allocate" in cell["error"].lower(), cell["error"]
    assert_report_lists(wd, {"torch": "oom"})


# -- no device ---------------------------------------------------------------------------------


def test_a_missing_device_is_unavailable_with_the_reason(reported_copy):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: a CUDA cell is not unavailable here")
    out = reported_copy / "cuda_cell.json"
    proc = subprocess.run(
        [sys.executable, "-m", "infbench.cli", "bench", "--backend", "torch", "--precision", "fp32",
         "--device", "cuda", "--size", "32", "--batch", "4", "--artifact", CHECKPOINT, "--reference", REFERENCE,
         "--out", str(out), *protocol_args()],
        cwd=reported_copy, capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(reported_copy / "workflow")},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    cell = json.loads(out.read_text())
    assert cell["status"] == "unavailable" and "CUDA" in cell["error"], cell


# -- corrupt artifacts, at the loaders ---------------------------------------------------------


@pytest.fixture
def damaged(trained_workflow, tmp_path):
    """Copy an artifact of the trained workflow and truncate it; returns its new path."""

    def make(rel: str, keep: float = 0.3) -> Path:
        dest = tmp_path / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(trained_workflow / rel, dest)
        truncate(dest, keep)
        return dest

    return make


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.99])
def test_truncated_checkpoint_names_the_file_and_rule(damaged, keep):
    from infbench.stages.model import load_checkpoint

    path = damaged(CHECKPOINT, keep)
    with pytest.raises((ValueError, FileNotFoundError)) as info:
        load_checkpoint(path)
    assert str(path) in str(info.value) and "'train'" in str(info.value)


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.99])
def test_truncated_dataset_names_the_file_and_rule(damaged, keep):
    from infbench.stages import data

    path = damaged(DATASET, keep)
    with pytest.raises(ValueError) as info:
        data.load_split(path, "test")
    assert str(path) in str(info.value) and "'prepare_data'" in str(info.value)


@pytest.mark.parametrize("keep", [0.0, 0.3, 0.99])
def test_truncated_onnx_names_the_file_and_rule(damaged, keep):
    pytest.importorskip("onnxruntime")
    cell = Cell("resnet18", "onnxruntime", "fp32", "cpu", 32, 4)
    backend_spec = spec("onnxruntime")
    artifact = backend_spec.artifact(cell)
    path = damaged(f"results/digits/resnet18/{artifact.path}", keep)
    backend = backend_spec.load_class()(cell, path, 1, artifact.rule)
    with pytest.raises(ValueError) as info:
        backend.load()
    assert str(path) in str(info.value) and "'export_onnx'" in str(info.value)


def test_missing_artifact_names_the_rule(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"rebuild it with the rule 'compile_aoti'"):
        check_artifact(tmp_path / "absent.pt2", "compile_aoti")


@pytest.mark.parametrize(
    "exc, status",
    [
        (MemoryError("Unable to allocate 768. MiB for an array"), "oom"),
        (RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 4294967296 bytes"), "oom"),
        (RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB"), "oom"),
        (OSError(errno.ENOMEM, "Cannot allocate memory"), "oom"),
        (BackendUnavailable("no CUDA device visible"), "unavailable"),
        (ValueError("cannot load x.onnx"), "error"),
    ],
)
def test_failure_classification(exc, status):
    assert status_of(exc) == status
