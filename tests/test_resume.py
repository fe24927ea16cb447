"""Resume after `kill -9` of Snakemake mid-grid: finished cells kept, nothing half-written used.

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

BATCHES = [1, 2, 4]


def cell_files(workdir) -> dict:
    """Result file → (inode, mtime) of every cell result on disk."""
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in (workdir / "results" / "bench").rglob("*.json")}


def test_kill_9_mid_grid_then_resume_keeps_finished_cells(reported_copy):
    wd = reported_copy
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["grid"].update(backends={"torch": ["fp32"]}, batch_sizes=BATCHES)
    # Each repetition measures latency for 3 s, so the kill surely lands mid-measurement.
    cfg["bench"].update(latency_s=3)
    write_config(wd, cfg)
    shutil.rmtree(wd / "results" / "bench")  # the earlier run's cells: this grid measures its own
    report_before = (wd / "results/report/index.html").stat().st_mtime_ns

    run = start_snakemake(wd, "report")
    deadline = time.monotonic() + 600
    while True:
        done = cell_files(wd)
        measuring = [c for c in measuring_processes(wd).values() if f"32x{c['batch_size']}.json" not in str(done)]
        if done and measuring:
            break
        assert run.poll() is None, "the run ended before it could be killed:\n" + (wd / "snakemake.out").read_text()
        assert time.monotonic() < deadline, "no cell finished in time"
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

    finished = cell_files(wd)
    assert 1 <= len(finished) < len(BATCHES), finished
    for path in finished:  # whatever is on disk under a result's name is a whole result
        assert json.loads(path.read_text())["status"] in MEASURED, path
    assert (wd / "results/report/index.html").stat().st_mtime_ns == report_before

    resumed = snakemake(wd, "report")
    log = resumed.stdout + resumed.stderr
    # The killed run's lock was cleared (its process is gone): no `snakemake --unlock` needed.
    assert "removed the lock of an earlier Snakemake run that is gone" in log, log
    # Only the cells that had not finished ran again, and the finished ones were not rewritten.
    assert len(re.findall(r"^\[ *\d+/\d+\] torch fp32 cpu ", log, re.MULTILINE)) == len(BATCHES) - len(finished), log
    after = cell_files(wd)
    assert {p: after[p] for p in finished} == finished
    assert len(after) == len(BATCHES)
    for path in after:
        assert json.loads(path.read_text())["status"] in MEASURED, path
    # Nothing half-written was taken as a result: the summary has exactly the grid's cells.
    summary = pl.read_parquet(wd / "results/report/summary.parquet")
    assert summary.height == len(BATCHES) and summary["status"].is_in(MEASURED).all()
    assert (wd / "results/report/index.html").stat().st_size > 0
    assert not list((wd / "results").rglob("*.tmp")), "a temporary file was left in results/"
    assert planned_jobs(wd, "report") == {}


def test_a_live_runs_lock_is_never_cleared(tmp_path):
    """Only the lock of a run that is gone is removed: not a live one's, not another host's."""
    from infbench import locks

    lockdir = tmp_path / "locks"
    lockdir.mkdir()
    for name in ("0.input.lock", "0.output.lock", "1.input.lock"):
        (lockdir / name).write_text("results/x.json\n")
    locks.record_owner([lockdir / "0.input.lock", lockdir / "0.output.lock"], lockdir)  # this process: alive
    assert locks.clear_stale(lockdir) == []
    assert len(list(lockdir.glob("*.lock"))) == 3

    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    record = json.loads((lockdir / f"infbench-owner-{os.getpid()}.json").read_text())
    (lockdir / f"infbench-owner-{os.getpid()}.json").unlink()
    elsewhere = {**record, "pid": dead_pid, "host": "another-host", "locks": ["1.input.lock"]}
    (lockdir / f"infbench-owner-{dead_pid}-x.json").write_text(json.dumps(elsewhere))
    here = {**record, "pid": dead_pid, "start": None}
    (lockdir / f"infbench-owner-{dead_pid}.json").write_text(json.dumps(here))
    cleared = locks.clear_stale(lockdir)
    assert len(cleared) == 1 and str(dead_pid) in cleared[0]
    assert sorted(p.name for p in lockdir.glob("*.lock")) == ["1.input.lock"]  # another host's lock stays
