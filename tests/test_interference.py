"""A competing CPU load part-way through a real run: the repetitions it hits are marked disturbed
and re-measured, the cells it spoils are unstable, and no finding rests on them."""

from __future__ import annotations

import copy
import json
import shutil
import subprocess
import sys
import threading
import time

import polars as pl
from conftest import TINY_CONFIG, start_snakemake, write_config

LOAD_S = 8.0


def busy_processes(n: int) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(n)]


def test_a_load_part_way_through_marks_repetitions_disturbed_and_no_finding_uses_them(reported_copy):
    wd = reported_copy
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["grid"].update(batch_sizes=[1, 4, 8])
    # Stability is judged by disturbance alone here (tolerance 1): what this test is about.
    cfg["bench"].update(repetitions=2, max_extra_repetitions=1, latency_s=0.5, canary_slowdown=1.3, foreign_cores=0.25)
    write_config(wd, cfg)
    for folder in ("bench", "repetitions"):  # every repetition of this grid measured by this run
        shutil.rmtree(wd / "results/digits/resnet18" / folder)

    run = start_snakemake(wd, "report")
    deadline = time.monotonic() + 600
    # The load starts once a repetition is done (repetitions run in rounds, the cells' jobs at the end).
    while not list((wd / "results/digits/resnet18/repetitions").rglob("*.json")):
        assert run.poll() is None, (wd / "snakemake.out").read_text()
        assert time.monotonic() < deadline, "no repetition finished in time"
        time.sleep(0.1)
    load = busy_processes(2)  # as many as the machine has cores: every core is shared
    load_on = time.time()
    # On for LOAD_S at least, and until a repetition has measured wholly under it (a fixed stretch could
    # fall on the slowed starts of the next repetitions alone: then the test tests nothing), 120 s at most.
    while time.time() - load_on < LOAD_S or not measured_since(wd, load_on):
        if time.time() - load_on > 120 or run.poll() is not None:
            break
        time.sleep(0.2)
    for p in load:
        p.kill()
        p.wait()
    load_off = time.time()
    assert run.wait(timeout=900) == 0, (wd / "snakemake.out").read_text()

    cells = [json.loads(p.read_text()) for p in sorted((wd / "results/digits/resnet18/bench").rglob("*.json"))]
    runs = [(c, r) for c in cells for r in c["repetition_runs"]]

    # A repetition whose timed part (what the foreign-load signal reads, measure/interference.py) ran
    # at least half inside the loaded stretch was seen as disturbed. A load that only slowed its start
    # (imports, loading) did not touch its figures.
    def under_load(r):
        timed = r["measure_ended_at"] - r["measure_started_at"]
        return min(r["measure_ended_at"], load_off) - max(r["measure_started_at"], load_on) >= timed / 2

    hit = [(c, r) for c, r in runs if under_load(r)]
    assert hit, "no repetition ran while the load was on: the test did not test anything"
    missed = [(c["cell"], r) for c, r in hit if not r["disturbed"]]
    assert not missed, f"repetitions run under load but not marked disturbed: {missed}"
    # A cell's figures come from quiet repetitions only; where none was quiet enough, it is unstable.
    for c in cells:
        quiet = [r for r in c["repetition_runs"] if not r["disturbed"]]
        if c["status"] == "ok":
            assert len(quiet) >= 2 and c["disturbed_repetitions"] == len(c["repetition_runs"]) - len(quiet)
        else:
            assert c["status"] == "unstable", c["error"]
    assert sum(c["disturbed_repetitions"] for c in cells) >= 1

    summary = pl.read_parquet(wd / "results/digits/resnet18/report/summary.parquet")
    meta = json.loads((wd / "results/digits/resnet18/report/meta.json").read_text())
    assert meta["repetitions_disturbed"] == sum(c["disturbed_repetitions"] for c in cells)
    from infbench.report.findings import findings

    # A finding rests on measured cells (ok or noisy alike: the label never gates); a decided one never on
    # figures from disturbed repetitions (report/findings.py `compare`: fewer than two quiet ones decide nothing).
    for f in findings(summary, meta):
        for r in cell_rows(f.data):
            assert r.get("status", "ok") in ("ok", "unstable"), f"finding {f.key} rests on a {r.get('status')} cell"
        compared = [f.data.get(k) for k in ("row", "runner_up") if isinstance(f.data.get(k), dict)]
        if f.decided and f.data.get("comparison") is not None:
            assert all(r["quiet_repetitions"] >= 2 for r in compared), f"decided on disturbed figures: {f.text}"
    unstable = summary.filter(pl.col("status") == "unstable").height
    print(f"{len(hit)} repetitions under load, {unstable} unstable cells, {meta['repetitions_disturbed']} disturbed")


def measured_since(wd, t: float) -> bool:
    """Whether a repetition written so far began its timed part at or after `t`."""
    for path in (wd / "results/digits/resnet18/repetitions").rglob("*.json"):
        try:
            if json.loads(path.read_text()).get("measure_started_at", 0) >= t:
                return True
        except (OSError, ValueError):  # being written
            continue
    return False


def cell_rows(data) -> list[dict]:
    """Every summary row a finding's data holds, however nested."""
    if isinstance(data, dict):
        own = [data] if "backend" in data and "batch_size" in data else []
        return own + [r for v in data.values() for r in cell_rows(v)]
    if isinstance(data, list | tuple):
        return [r for v in data for r in cell_rows(v)]
    return []


def test_a_repetition_waits_for_a_burst_of_other_work_to_end(tmp_path):
    """Real busy processes on every core: the wait sees them and ends once they do; with a machine busy
    for good it gives up after its limit, and the run's ledger remembers, so that the next repetitions
    do not wait again."""
    from infbench.measure.budget import Ledger
    from infbench.measure.interference import foreign_cores_now, wait_until_quiet

    load = busy_processes(2)
    try:
        assert foreign_cores_now(0.5) > 1.0  # both cores: the signal sees other processes' work
        waited, quiet = wait_until_quiet(0.25, spare=0, max_wait_s=1.0)
        assert not quiet and waited >= 1.0
        threading.Timer(2.0, lambda: [p.kill() for p in load]).start()  # the burst ends 2 s from now
        waited, quiet = wait_until_quiet(0.25, spare=0, max_wait_s=30.0)
        assert quiet and 1.0 < waited < 30.0
    finally:
        for p in load:
            p.kill()
            p.wait()
    ledger = Ledger(tmp_path / "extra_budget.json", 0.0, run="run-1")
    assert not ledger.busy_recently(60)
    ledger.note_busy()
    assert ledger.busy_recently(60)
    assert not Ledger(tmp_path / "extra_budget.json", 0.0, run="run-2").busy_recently(60)  # a new run forgets
