"""Resume after `kill -9` of Snakemake mid-grid: finished measurements kept, nothing half-written used.

A real run of a grid of several cells is killed with SIGKILL (its whole process group, as a
node failure or `kill -9 -PGID` would) while a cell is measuring. Then `snakemake report` runs
again, as the user would, and must finish the grid without touching the cells that were done.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import polars as pl
from conftest import MEASURED, TINY_CONFIG, measuring_processes, planned_jobs, snakemake, start_snakemake, write_config

# Two cells: their first repetitions run before either's second, so the kill lands mid-grid.
BATCHES = [1, 4]


REPS = TINY_CONFIG["bench"]["repetitions"]


def measured_files(workdir, folder: str = "repetitions") -> dict:
    """Result file → (inode, mtime) of every repetition (or, folder "bench", cell) result on disk."""
    return {
        p: (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (workdir / f"results/digits/resnet18/{folder}").rglob("*.json")
    }


def test_kill_9_mid_grid_then_resume_keeps_finished_repetitions(reported_copy):
    wd = reported_copy
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["grid"].update(backends={"torch": ["fp32"]}, batch_sizes=BATCHES)
    # Each repetition measures latency for 3 s, so the kill surely lands mid-measurement.
    cfg["bench"].update(latency_s=3)
    write_config(wd, cfg)
    for folder in ("bench", "repetitions"):  # the earlier run's cells: this grid measures its own
        shutil.rmtree(wd / "results/digits/resnet18" / folder)
    report_before = (wd / "results/digits/resnet18/report/index.html").stat().st_mtime_ns

    run = start_snakemake(wd, "report")
    deadline = time.monotonic() + 600
    while not (measured_files(wd) and measuring_processes(wd)):  # one repetition done, the next measuring
        assert run.poll() is None, "the run ended before it could be killed:\n" + (wd / "snakemake.out").read_text()
        assert time.monotonic() < deadline, "no repetition finished in time"
        time.sleep(0.05)
    time.sleep(0.5)
    os.killpg(run.pid, signal.SIGKILL)
    run.wait()

    # The measuring process ran in its own session (out of the group's reach), yet it does not
    # live on as an orphan that would disturb the resumed run's timings: it dies with its parent.
    deadline = time.monotonic() + 10
    while measuring_processes(wd) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not measuring_processes(wd), "an orphaned measuring process outlived the killed run"

    finished = measured_files(wd)
    assert 1 <= len(finished) < len(BATCHES) * REPS, finished
    for path in finished:  # whatever is on disk under a result's name is a whole result
        assert json.loads(path.read_text())["status"] == "ok", path
    assert (wd / "results/digits/resnet18/report/index.html").stat().st_mtime_ns == report_before

    resumed = snakemake(wd, "report")
    log = resumed.stdout + resumed.stderr
    # The killed run's lock was cleared (its process is gone): no `snakemake --unlock` needed.
    assert "removed the lock of an earlier Snakemake run that is gone" in log, log
    # Only the repetitions that had not finished ran again, and the finished ones were not rewritten.
    again = re.findall(r"^ +repetition \d+ of resnet18 torch fp32 cpu ", log, re.MULTILINE)
    assert len(again) == len(BATCHES) * REPS - len(finished), log
    after = measured_files(wd)
    assert {p: after[p] for p in finished} == finished
    assert len(after) == len(BATCHES) * REPS
    cells = measured_files(wd, "bench")
    assert len(cells) == len(BATCHES)
    for path in cells:
        assert json.loads(path.read_text())["status"] in MEASURED, path
    # Nothing half-written was taken as a result: the summary has exactly the grid's cells.
    summary = pl.read_parquet(wd / "results/digits/resnet18/report/summary.parquet")
    assert summary.height == len(BATCHES) and summary["status"].is_in(MEASURED).all()
    assert (wd / "results/digits/resnet18/report/index.html").stat().st_size > 0
    assert not list((wd / "results").rglob("*.tmp")), "a temporary file was left in results/"
    assert planned_jobs(wd, "report") == {}


def test_a_live_runs_lock_is_never_cleared(tmp_path):
    """Only the locks of a run that is gone are removed: not a live one's, not another host's."""
    from infbench.core import locks

    run_lock, snakemake_locks = tmp_path / "infbench-run.lock", tmp_path / "locks"
    snakemake_locks.mkdir()
    (snakemake_locks / "0.input.lock").write_text("results/x.json\n")
    # A live run (another process) holds the folder: this one is refused, and its locks are kept.
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from infbench.core import locks; locks.acquire({str(run_lock)!r}, {str(tmp_path)!r}); "
         "print('held', flush=True); input()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert holder.stdout.readline().strip() == "held"
    try:
        locks.acquire(run_lock, snakemake_locks)
        raise AssertionError("a live run's folder was taken")
    except locks.FolderBusy as busy:
        assert f"pid {holder.pid} on " in str(busy) and f"kill {holder.pid}" in str(busy), busy
    assert (snakemake_locks / "0.input.lock").exists()
    holder.kill()
    holder.wait()

    # Gone (killed): its Snakemake locks on this host are stale and removed.
    notes = locks.acquire(run_lock, snakemake_locks)
    assert len(notes) == 1 and f"pid {holder.pid}" in notes[0], notes
    assert not list(snakemake_locks.glob("*.lock"))
    locks.release(run_lock)

    # A record of another host (a shared filesystem): its locks are left to Snakemake's own check.
    record = json.loads(run_lock.read_text())
    run_lock.write_text(json.dumps({**record, "host": "another-host"}))
    (snakemake_locks / "1.input.lock").write_text("results/y.json\n")
    assert locks.acquire(run_lock, snakemake_locks) == []
    assert (snakemake_locks / "1.input.lock").exists()
    locks.release(run_lock)

    # A run that takes the folder after Snakemake wrote its own locks (onstart, for a target other than
    # `report`): the gone run's record on this host, yet no lock is cleared (they may be this run's).
    run_lock.write_text(json.dumps({**record, "pid": holder.pid}))
    assert locks.acquire(run_lock, None) == []
    assert (snakemake_locks / "1.input.lock").exists()
    locks.release(run_lock)
