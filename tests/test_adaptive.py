"""Adaptive repetitions: the run's budget (a real ledger file under a real flock, several processes at
once) and a real Snakemake run in which a cell wider than the tolerance measured more repetitions."""

from __future__ import annotations

import copy
import json
import multiprocessing
import shutil

import polars as pl
import pytest
from conftest import TINY_CONFIG, snakemake, write_config

from infbench.measure.budget import RESERVED, Ledger, run_id


def test_a_draw_is_granted_only_while_the_budget_lasts_and_settles_to_what_was_used(tmp_path):
    ledger = Ledger(tmp_path / "extra_budget.json", 20.0, run="run-1")
    assert ledger.draw("torch fp32", 8.0, priority=True)
    ledger.settle("torch fp32", 8.0, 6.5)  # the repetition took less than its estimate
    assert ledger.spent_s() == pytest.approx(6.5)
    assert ledger.draw("torch fp32", 8.0, priority=True)  # 14.5 of 20
    assert not ledger.draw("torch fp32", 8.0, priority=True)  # 22.5 would pass the budget
    state = json.loads((tmp_path / "extra_budget.json").read_text())
    assert state["cells"] == {"torch fp32": pytest.approx(14.5)}


def test_cells_the_findings_do_not_need_leave_the_reserved_share(tmp_path):
    ledger = Ledger(tmp_path / "extra_budget.json", 20.0, run="run-1")
    assert ledger.draw("onnxruntime int8", 6.0, priority=False)  # 14 left, above the reserved 10
    assert not ledger.draw("onnxruntime int8", 6.0, priority=False)  # would leave 8 < RESERVED · 20
    assert RESERVED * 20 == 10
    assert ledger.draw("torch fp32", 6.0, priority=True)  # the baseline may go below it


def test_a_new_run_starts_a_fresh_budget(tmp_path):
    path = tmp_path / "extra_budget.json"
    assert Ledger(path, 10.0, run="run-1").draw("a", 9.0, priority=True)
    assert not Ledger(path, 10.0, run="run-1").draw("a", 9.0, priority=True)
    assert Ledger(path, 10.0, run="run-2").draw("a", 9.0, priority=True)


def test_the_run_is_the_one_holding_the_folder_lock(tmp_path):
    lock = tmp_path / "infbench-run.lock"
    lock.write_text(json.dumps({"host": "h", "pid": 42, "since": "2026-01-01T00:00:00", "command": "snakemake"}))
    assert run_id(lock) == "h:42:2026-01-01T00:00:00"
    assert run_id(tmp_path / "absent.lock").startswith("by hand:")


def _draw_many(path: str, results) -> None:
    ledger = Ledger(path, 10.0, run="shared")
    results.put(sum(ledger.draw(f"cell {i}", 1.0, priority=True) for i in range(10)))


def test_concurrent_cell_jobs_never_overspend(tmp_path):
    path = str(tmp_path / "extra_budget.json")
    results = multiprocessing.get_context("spawn").Queue()
    procs = [multiprocessing.get_context("spawn").Process(target=_draw_many, args=(path, results)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    granted = sum(results.get(timeout=5) for _ in procs)
    assert granted == 10  # 40 draws of 1 s asked, exactly the 10 s of the budget granted
    assert Ledger(path, 10.0, run="shared").spent_s() == pytest.approx(10.0)


def test_a_cell_wider_than_the_tolerance_measures_more_from_the_budget(reported_copy):
    """A tolerance no cell can meet, and a grid of one cell (no comparison to decide: its own interval
    decides, bench/repeat.py `undecided`): past its planned repetitions (no extras allowed), the cell draws
    on the run's budget until it is spent; the summary counts the repetitions it took."""
    wd = reported_copy
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["grid"]["backends"] = {"onnxruntime": ["fp32"]}
    cfg["bench"].update(tolerance=1e-6, max_extra_repetitions=0, extra_budget_s=15)
    write_config(wd, cfg)
    # the torch cell left the grid: its repetitions on disk would still be compared with (bench/repeat.py
    # reads the device's repetitions folder, not the grid)
    shutil.rmtree(wd / "results/digits/resnet18/repetitions/torch")
    snakemake(wd, "report")  # the cells' jobs only: their repetitions are kept
    summary = pl.read_csv(wd / "results/digits/resnet18/report/summary.csv")
    reps = dict(zip(summary["backend"], summary["repetitions"], strict=True))
    adaptive = dict(zip(summary["backend"], summary["adaptive_repetitions"], strict=True))
    assert sum(adaptive.values()) >= 1, summary
    assert all(reps[b] == TINY_CONFIG["bench"]["repetitions"] + adaptive[b] for b in reps)
    ledger = json.loads((wd / "results/extra_budget.json").read_text())
    assert 0 < ledger["spent_s"] and ledger["budget_s"] == 15
    # every cell that measured more drew on the ledger (under its key "<model>/<backend>/…")
    drew = {key.split("/")[1] for key, spent in ledger["cells"].items() if spent > 0}
    assert drew == {b for b, n in adaptive.items() if n > 0}
    assert set(summary.filter(pl.col("adaptive_repetitions") > 0)["status"]) == {"unstable"}  # never within 1e-6
    assert summary["throughput_uncertainty_pct"].max() is not None


def _write_reps(root, backend, precision, shape, values, p50=None):
    folder = root / backend / precision / "cpu" / shape
    folder.mkdir(parents=True)
    for i, v in enumerate(values, 1):
        rep = {"status": "ok", "throughput": {"img_s": v}, "latency": {"p50_ms": (p50 or 1000.0 / v)}}
        (folder / f"{i}.json").write_text(json.dumps(rep))


def test_extra_repetitions_go_to_undecided_comparisons_not_to_wide_cells(tmp_path):
    """A cell far behind the leader needs none, however wide its own interval; one within reach of the leader
    (its interval straddles the margin) needs them first; one clearly behind the leader but undecided
    against its baseline needs them after the headline ones (bench/repeat.py `undecided`)."""
    from infbench.bench.repeat import HEADLINE, OTHER, undecided
    from infbench.core.cell import Cell

    root = tmp_path / "repetitions"
    spread = [0.97, 0.99, 1.0, 1.01, 1.03]
    _write_reps(root, "openvino", "int8", "32x8", [5000.0 * s for s in spread])  # the leader
    _write_reps(root, "torch", "fp32", "32x8", [1000.0 * s for s in spread])  # the baseline
    args = {"repetitions_root": str(root), "tolerance": 0.05}

    def runs(centre, rel):
        return [
            {"throughput": {"img_s": centre * (1 + rel * k)}, "latency": {"p50_ms": 1.0}} for k in (-1, -0.5, 0, 0.5, 1)
        ]

    wide_far_behind = runs(2500.0, 0.3)  # ±30%: noisy, but 2× behind the leader and 2.5× ahead of the baseline
    assert undecided(Cell("m", "onnxruntime", "int8", "cpu", 32, 8), wide_far_behind, args) is None
    close_to_leader = runs(4900.0, 0.04)  # 1.02× behind, interval straddling ±5%
    assert undecided(Cell("m", "onnxruntime", "int8", "cpu", 32, 8), close_to_leader, args) == HEADLINE
    near_baseline = runs(1060.0, 0.04)  # far behind the leader, undecided against the baseline
    assert undecided(Cell("m", "onnxruntime", "fp32", "cpu", 32, 8), near_baseline, args) == OTHER
