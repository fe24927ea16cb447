"""Result JSONs → the summary table: speedups with their interval, the pure baseline, and the
launch-bound cross-check against CUDA-graph replay."""

from __future__ import annotations

import pytest

from infbench.report.aggregate import summary_table


def result(backend, precision, tput, u_pct, status="ok", device="cpu", size=32, batch=8, launch_bound=None):
    return {
        "cell": {
            "model": "resnet18",
            "backend": backend,
            "precision": precision,
            "device": device,
            "image_size": size,
            "batch_size": batch,
        },
        "status": status,
        "stability": "stable" if status == "ok" else "unstable",
        "throughput_img_s": tput,
        "throughput_uncertainty_pct": u_pct,
        "launch_bound": launch_bound,
        "repetitions": 3,
        "disturbed_repetitions": 0,
        "environment": {"machine": "m"},
    }


def row(df, backend):
    return df.filter(df["backend"] == backend).row(0, named=True)


def test_speedup_is_decided_by_the_repetitions_not_by_the_cells_own_labels():
    """The ratio of medians with the Hodges–Lehmann interval of the 25 pairwise ratios (3rd to 23rd); an
    unstable baseline no longer withholds a speedup its repetitions decide."""
    base_reps = [970.0, 990.0, 1000.0, 1010.0, 1030.0]
    fast_reps = [1940.0, 1980.0, 2000.0, 2020.0, 2060.0]
    df = summary_table(
        [
            with_repetitions(result("torch", "fp32", 1000.0, 3.0), base_reps),
            with_repetitions(result("onnxruntime", "int8", 2000.0, 4.0), fast_reps),
        ]
    )
    r = row(df, "onnxruntime")
    ratios = sorted(a / b for a in fast_reps for b in base_reps)
    assert r["speedup_vs_baseline"] == pytest.approx(2.0)
    assert (r["speedup_low"], r["speedup_high"]) == pytest.approx((ratios[2], ratios[22]))
    assert r["speedup_verdict"] == "better" and r["speedup_decided"] is True and r["baseline"] == "torch fp32"
    noisy_base = [800.0, 900.0, 1000.0, 1100.0, 1250.0]  # ±25%: an unstable cell
    shaky = summary_table(
        [
            with_repetitions(result("torch", "fp32", 1000.0, 25.0, status="unstable"), noisy_base),
            with_repetitions(result("onnxruntime", "int8", 2000.0, 4.0), fast_reps),
        ]
    )
    r = row(shaky, "onnxruntime")
    assert r["speedup_vs_baseline"] == pytest.approx(2.0) and r["speedup_verdict"] == "better"
    close = summary_table(
        [
            with_repetitions(result("torch", "fp32", 1000.0, 25.0, status="unstable"), noisy_base),
            with_repetitions(result("onnxruntime", "int8", 1080.0, 4.0), [b * 1.08 for b in base_reps]),
        ]
    )
    assert row(close, "onnxruntime")["speedup_verdict"] == "undecided"


def test_failed_cells_have_no_speedup():
    df = summary_table(
        [result("torch", "fp32", 1000.0, 3.0), result("onnxruntime", "fp32", None, None, status="error")]
    )
    assert row(df, "onnxruntime")["speedup_vs_baseline"] is None


@pytest.mark.parametrize(
    ("eager_u", "expected"),
    [(1.0, True), (15.0, False)],  # graph clearly faster → launch-bound; intervals overlap → the cell's own verdict
)
def test_eager_is_launch_bound_where_its_graph_replay_is_significantly_faster(eager_u, expected):
    cells = [
        result("torch", "fp16", 23647.0, eager_u, device="cuda", size=224, batch=64, launch_bound=False),
        result("torch_cudagraphs", "fp16", 25800.0, 1.0, device="cuda", size=224, batch=64, launch_bound=False),
    ]
    df = summary_table(cells)
    assert row(df, "torch")["launch_bound"] is expected
    assert row(df, "torch_cudagraphs")["launch_bound"] is False


def with_repetitions(cell: dict, values: list[float]) -> dict:
    return {**cell, "throughput": {"repetitions": values}, "latency": {"p50": {"repetitions": values}}}


def test_cpu_cells_uncertainty_is_at_least_the_machines_drift_and_gpu_cells_keep_their_own():
    from infbench.measure.repetitions import drift_floor

    drifting = [100.0, 110.0, 90.0]  # 10% either side of the median
    calm = [100.0, 100.5, 99.5]  # close together: its own ± is narrow
    cells = [
        with_repetitions(result("torch", "fp32", 100.0, 40.0), drifting),
        with_repetitions(result("onnxruntime", "fp32", 100.0, 0.2), calm),  # windows' ± narrower still
        with_repetitions(result("onnxruntime", "int8", 100.0, 1.0, device="cuda"), calm),
    ]
    cells[1]["latency_uncertainty_pct"] = 0.2
    df = summary_table(cells)
    floor = 100 * drift_floor([drifting, calm])
    assert floor == pytest.approx(0.5)  # the lower median of the cells' intervals (10%, 0.5%)
    cpu_calm = df.filter((df["device"] == "cpu") & (df["backend"] == "onnxruntime")).row(0, named=True)
    assert cpu_calm["throughput_uncertainty_pct"] == pytest.approx(floor) == cpu_calm["drift_floor_pct"]
    assert cpu_calm["latency_uncertainty_pct"] == pytest.approx(floor)
    assert cpu_calm["status"] == "ok"
    assert row(df, "torch")["throughput_uncertainty_pct"] == 40.0  # wider than the floor: its own
    gpu = df.filter(df["device"] == "cuda").row(0, named=True)
    assert gpu["throughput_uncertainty_pct"] == 1.0 and gpu["drift_floor_pct"] is None


def test_a_drift_floor_above_half_makes_the_cell_unstable_never_a_printed_plus_minus():
    wild = [100.0, 180.0, 30.0]  # 80% off their median: every CPU cell of this run drifted so
    cells = [
        with_repetitions(result("torch", "fp32", 100.0, 80.0), wild),
        with_repetitions(result("onnxruntime", "fp32", 100.0, 2.0), [100.0, 170.0, 35.0]),
    ]
    df = summary_table(cells)
    ort = row(df, "onnxruntime")
    assert ort["throughput_uncertainty_pct"] > 50 and ort["status"] == "unstable"


def judged(cell: dict, tolerance_pct: float = 5.0, planned: int = 5, quiet: int = 5) -> dict:
    return {**cell, "tolerance_pct": tolerance_pct, "planned_repetitions": planned, "quiet_repetitions": quiet}


def test_a_machine_drifting_beyond_the_tolerance_leaves_no_cpu_cell_stable_and_says_which_tolerance_it_supports():
    """The printed ± is what is judged: a cell stable by its own repetitions, printed at the run's 6%
    floor, is unstable at a 5% tolerance (drift-limited), and the overview says what tolerance the machine
    supports. A GPU cell keeps its own verdict."""
    from infbench.report.findings import findings

    six = [100.0, 106.0, 94.0, 101.0, 99.0]  # 6% either side of the median
    calm = [100.0, 101.0, 99.0, 100.5, 99.5]  # 1%: stable by its own repetitions
    cells = [
        judged(with_repetitions(result("torch", "fp32", 100.0, 6.0, status="unstable"), six)),
        judged(with_repetitions(result("openvino", "int8", 300.0, 6.0, status="unstable"), six)),
        judged(with_repetitions(result("onnxruntime", "fp32", 200.0, 1.0), calm)),
        judged(with_repetitions(result("onnxruntime", "int8", 900.0, 1.0, device="cuda"), calm)),
    ]
    df = summary_table(cells)
    ort = df.filter((df["device"] == "cpu") & (df["backend"] == "onnxruntime")).row(0, named=True)
    assert ort["drift_floor_pct"] == pytest.approx(6.0) and ort["throughput_uncertainty_pct"] == pytest.approx(6.0)
    assert ort["status"] == "unstable" and ort["drift_limited"] is True
    assert row(df, "torch")["drift_limited"] is False  # unstable by its own repetitions
    gpu = df.filter(df["device"] == "cuda").row(0, named=True)
    assert gpu["status"] == "ok" and gpu["drift_limited"] is None
    overview = next(f for f in findings(df, {}) if f.key == "cells").text
    assert "the run's drift (±6.0%, the typical cell's interval) is wider than the tolerance (±5%" in overview
    assert "it is the margin of this run's comparisons" in overview and "0 of" not in overview

    # Under the tolerance the floor decides nothing: the calm cell is stable.
    loose = summary_table([judged(c, tolerance_pct=8.0) for c in cells])
    assert loose.filter((loose["device"] == "cpu") & (loose["backend"] == "onnxruntime"))["status"][0] == "ok"


def test_the_drift_floor_ignores_cells_left_with_fewer_quiet_repetitions_than_planned():
    """Two quiet repetitions of a cell under load span less by being two: the floor comes from the cells
    judged on all their planned repetitions."""
    six = [100.0, 106.0, 94.0, 101.0, 99.0]
    short = [100.0, 100.5]  # what a load left of a cell: its range is narrow by having two
    cells = [
        judged(with_repetitions(result("torch", "fp32", 100.0, 6.0, status="unstable"), six)),
        judged(with_repetitions(result("openvino", "fp32", 100.0, 0.5, status="unstable"), short), quiet=2),
        judged(with_repetitions(result("openvino", "int8", 100.0, 0.5, status="unstable"), short), quiet=2),
    ]
    df = summary_table(cells)
    assert df["drift_floor_pct"].to_list() == pytest.approx([6.0] * 3)
