"""Snakemake's own process keeps still while cells are measured.

Its job-rate limiter (on by default) re-plans from a 1-s timer after every scheduling round, and
each finished job starts one more chain of such timers: late in a grid the main process re-plans
dozens of times a second, on the cores the cell is timed on (common.smk drops it for local runs).
Each chain is a live `threading.Timer` thread, so the thread count of the Snakemake process
shows them without timing anything.
"""

from __future__ import annotations

import copy
import os
import time

from conftest import TINY_CONFIG, measuring_processes, start_snakemake, write_config


def threads(pid: int) -> int:
    try:
        return len(os.listdir(f"/proc/{pid}/task"))
    except FileNotFoundError:
        return 0


def test_no_timer_threads_pile_up_in_snakemake_while_cells_measure(reported_copy):
    wd = reported_copy
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["grid"]["batch_sizes"] = [1, 2, 4, 8]  # 6 new cells, 12 repetitions: many jobs finish
    write_config(wd, cfg)
    reps = wd / "results/digits/resnet18/repetitions"
    before = len(list(reps.rglob("*.json")))
    run = start_snakemake(wd, "report")
    seen = []
    while run.poll() is None:
        done = len(list(reps.rglob("*.json"))) - before
        if done >= 8 and measuring_processes(wd):  # late in the run, a cell measuring
            seen.append(threads(run.pid))
        time.sleep(0.2)
    assert run.returncode == 0, (wd / "snakemake.out").read_text()[-3000:]
    assert seen, "never saw a repetition measuring after 8 had finished"
    # Snakemake's main thread, its log listener and one executor worker; a chain per finished job otherwise.
    assert max(seen) <= 6, f"threads of the Snakemake process while cells measured: {sorted(set(seen))}"
