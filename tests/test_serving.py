"""Serving cells (README "Serving"): real LoadGen scenarios against real ONNX Runtime and OpenVINO sessions of a
tiny model (short runs), the Server search's verdict at a bound that cannot be met, the batching queue, the report's
Serving section, and the serve rule through Snakemake."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TINY_CONFIG, copy_workflow, planned_jobs, snakemake

from infbench.report import serving as serving_report
from infbench.report.build import _chart_section, html_table
from infbench.serving import loadgen
from infbench.serving.batching import SampleQueue
from infbench.serving.runners import Sample

pytest.importorskip("mlperf_loadgen", reason="mlcommons-loadgen is needed (pip install -e '.[serving]')")

SHORT = ["--repetitions", "2", "--duration", "0.3", "--warmup", "0.3", "--min-queries", "100", "--server-steps", "3"]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    """A tiny ONNX classifier (conv, relu, pooling, a linear layer; dynamic batch and size) and 8 images of 16 px."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    folder = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    weights = [
        numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.1, "w"),
        numpy_helper.from_array(rng.standard_normal((8, 10)).astype(np.float32), "fc"),
    ]
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c"], ["r"]),
        helper.make_node("GlobalAveragePool", ["r"], ["g"]),
        helper.make_node("Flatten", ["g"], ["f"]),
        helper.make_node("MatMul", ["f", "fc"], ["logits"]),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        weights,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, folder / "tiny.onnx")
    np.savez(folder / "ref.npz", images=rng.standard_normal((8, 3, 16, 16)).astype(np.float32))
    return folder


def serve(tiny: Path, backend: str, scenario: str, *extra: str, python: tuple[str, ...] = ("-m",)) -> dict:
    """`infbench serve` as the rule runs it (a real process; its repetitions fresh processes of their own)."""
    out = tiny / f"{backend}-{scenario}-{len(extra)}.json"
    cmd = [sys.executable, *python, "infbench.cli", "serve", "--model", "tiny", "--backend", backend]
    cmd += ["--precision", "fp32", "--device", "cpu", "--size", "16", "--scenario", scenario]
    cmd += ["--artifact", str(tiny / "tiny.onnx"), "--reference", str(tiny / "ref.npz"), *SHORT, *extra]
    cmd += ["--logs", str(out.with_suffix(".loadgen")), "--out", str(out)]
    env = {**os.environ, "PYTHONPATH": str(REPO / "workflow")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(out.read_text())


def summary_figure(log_dir: Path, label: str) -> float:
    """A figure of LoadGen's own mlperf_log_summary.txt ('Completed samples per second : 123.4')."""
    for line in (log_dir / "mlperf_log_summary.txt").read_text().splitlines():
        if line.split(":")[0].strip() == label:
            return float(line.split(":")[1])
    raise AssertionError(f"{label} not in {log_dir}/mlperf_log_summary.txt")


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_offline_and_single_stream_record_loadgens_own_figures(tiny, backend):
    if backend == "openvino":
        pytest.importorskip("openvino")
    offline = serve(tiny, backend, "Offline")
    assert offline["status"] == "ok" and offline["compliant"] is False
    reps = offline["repetitions"]
    assert len(reps) == 2
    rates = [rep["best"]["samples_per_s"] for rep in reps]
    assert all(rate > 0 for rate in rates)
    assert offline["figure"]["value"] == pytest.approx(np.median(rates))
    assert offline["figure"]["min"] <= offline["figure"]["value"] <= offline["figure"]["max"]
    for rep in reps:  # the figure is LoadGen's, as its summary log prints it
        logs = Path(rep["best"]["logs"])
        assert (logs / "mlperf_log_detail.txt").is_file()
        assert rep["best"]["samples_per_s"] == pytest.approx(summary_figure(logs, "Samples per second"), rel=1e-3)
    if backend == "openvino":  # OpenVINO's own async queue, with the throughput hint's streams
        assert offline["runner"]["how"].startswith("openvino AsyncInferQueue")
        assert offline["runner"]["streams"] >= 1 and offline["runner"]["requests_in_flight"] >= 1
    else:
        cores = len(os.sched_getaffinity(0))  # requests_in_flight 0: one session per core, a thread each
        assert offline["runner"] == {"requests_in_flight": cores, "how": "threads", "threads_per_request": 1}

    single = serve(tiny, backend, "SingleStream", "--max-batch", "4", "--requests", "3")
    assert single["status"] == "ok" and single["metric"] == "p90_ms"
    # one query of one sample at a time, answered where LoadGen issues it, by the batch-1 cell's backend
    assert single["runner"]["how"] == "one query at a time, answered in LoadGen's issue thread"
    assert (single["settings"]["max_batch"], single["settings"]["requests"]) == (1, 1)
    assert serving_report.in_flight(single["runner"]).startswith("1 (one at a time, ")
    for rep in single["repetitions"]:
        run = rep["best"]
        assert 0 < run["p50_ms"] <= run["p90_ms"] <= run["p99_ms"]
        assert run["queries"] >= 100
        assert run["p90_ms"] * 1e6 == pytest.approx(summary_figure(Path(run["logs"]), "90.00 percentile latency (ns)"))
    assert single["figure"]["value"] == pytest.approx(np.median([r["best"]["p90_ms"] for r in single["repetitions"]]))


def test_openvino_offline_serves_batches_of_several_samples_through_its_own_loop(tiny):
    pytest.importorskip("openvino")
    result = serve(tiny, "openvino", "Offline", "--max-batch", "3", "--requests", "2")
    assert result["status"] == "ok" and result["settings"]["max_batch"] == 3
    for rep in result["repetitions"]:  # every sample LoadGen issued was answered, in batches of up to 3
        logs = Path(rep["best"]["logs"])
        detail = loadgen.read_detail(logs / "mlperf_log_detail.txt")
        assert detail["result_validity"] in ("VALID", "INVALID") and rep["best"]["samples_per_s"] > 0
        assert summary_figure(logs, "Samples per second") == pytest.approx(rep["best"]["samples_per_s"], rel=1e-3)


def test_server_finds_a_rate_within_the_bound_and_records_its_latencies(tiny):
    result = serve(tiny, "onnxruntime", "Server", "--bound-ms", "50")
    assert result["status"] == "ok" and result["metric"] == "target_rate"
    for rep in result["repetitions"]:
        best, runs = rep["best"], rep["runs"]
        assert best["within_bound"] and best["p99_ms"] <= 50
        assert best["target_rate"] == max(r["target_rate"] for r in runs if r["within_bound"])
        assert all(not r["within_bound"] for r in runs if r["target_rate"] > best["target_rate"])
        assert summary_figure(Path(best["logs"]), "Scheduled samples per second") == pytest.approx(
            best["target_rate"], rel=0.25
        )  # LoadGen's Poisson arrivals, a short run: near the target
    lat = result["latency_ms"]
    assert lat["p50_ms"]["value"] <= lat["p90_ms"]["value"] <= lat["p99_ms"]["value"] <= 50


def test_a_bound_the_variant_cannot_meet_says_so_instead_of_a_rate(tiny):
    result = serve(tiny, "onnxruntime", "Server", "--bound-ms", "0.001")
    assert result["status"] == "unmet"
    assert "figure" not in result
    # one query alone takes longer than the bound: no rate is searched, the note says so with that latency
    assert "one query at a time already takes p99" in result["note"] and "0.001 ms bound" in result["note"]
    for rep in result["repetitions"]:
        assert rep["runs"] == [] and rep["best"] is None and rep["alone"]["p99_ms"] > 0.001
    html = serving_report.section([_write(tiny / "unmet.json", result)], _chart_section, html_table)[1]
    assert "bound not met" in html and "No rate tried kept p99 within" in html


def _write(path: Path, result: dict) -> Path:
    path.write_text(json.dumps(result))
    return path


def test_without_loadgen_a_serving_cell_is_unavailable_with_the_install_command(tiny):
    # the interpreter's own way of a package that is not there: an import of it raises, find_spec finds nothing
    hide = "import runpy, sys; sys.modules['mlperf_loadgen'] = None; sys.argv[0] = 'infbench'; "
    hide += "runpy.run_module(sys.argv.pop(1), run_name='__main__')"
    result = serve(tiny, "onnxruntime", "Offline", python=("-c", hide))
    assert result["status"] == "unavailable"
    assert "pip install -e '.[serving]'" in result["error"]
    assert result["repetitions"] == []


def test_a_free_request_takes_what_waits_up_to_max_batch():
    q = SampleQueue(max_batch=4, timeout_s=0)
    q.put([Sample(i) for i in range(10)])
    assert [len(q.take()) for _ in range(3)] == [4, 4, 2]
    q.close(1)
    assert q.take() is None
    # with a timeout, a lone sample waits for one that arrives within it
    q = SampleQueue(max_batch=2, timeout_s=1.0)
    q.put([Sample(0)])
    threading.Timer(0.05, lambda: q.put([Sample(1)])).start()
    assert [s.index for s in q.take()] == [0, 1]


def test_the_overlay_plans_one_serve_job_per_variant_and_scenario(tmp_path):
    workdir = copy_workflow(tmp_path / "wf", TINY_CONFIG)
    jobs = planned_jobs(workdir, "report", "--configfile", "config/config.yaml", "config/serving.yaml")
    assert jobs["serve"] == 5 * 3  # torch fp32, onnxruntime fp32/int8, openvino fp32/int8 × three scenarios
    assert "serve" not in planned_jobs(workdir, "report")  # off by default


def test_serving_cells_through_snakemake_reach_the_report(workflow_copy):
    """The serve rule on the tiny study: two scenarios of onnxruntime fp32, then the report's Serving section."""
    serving = {
        "enabled": True,
        "scenarios": ["Offline", "Server"],
        "backends": {"onnxruntime": ["fp32"]},
        "duration_s": 0.3,
        "warmup_s": 0.3,
        "min_queries": 100,
        "server_steps": 2,
        "repetitions": 2,
        "latency_bound_ms": 50,
    }
    overlay = workflow_copy / "serving.yaml"
    overlay.write_text(json.dumps({"serving": serving}))
    snakemake(workflow_copy, "report", "--configfile", "config/config.yaml", str(overlay))
    folder = workflow_copy / "results/digits/resnet18/serving/onnxruntime/fp32/cpu/32"
    offline = json.loads((folder / "Offline.json").read_text())
    assert offline["status"] == "ok" and offline["figure"]["value"] > 0, offline
    server = json.loads((folder / "Server.json").read_text())
    # a rate within the bound, or (a 2-core machine shared by others can be that slow) a note saying none was
    assert server["status"] in ("ok", "unmet") and len(server["repetitions"]) == 2, server
    if server["status"] == "ok":
        assert server["latency_ms"]["p99_ms"]["value"] <= 50
    for scenario in ("Offline", "Server"):
        assert (folder / f"{scenario}.loadgen" / "rep1.json").is_file()
        assert list((folder / f"{scenario}.loadgen" / "rep1").rglob("mlperf_log_summary.txt"))
    page = (workflow_copy / "results/digits/resnet18/report/index.html").read_text()
    assert '<h2 id="serving">Serving</h2>' in page and "onnxruntime fp32 cpu 32px" in page
    assert (workflow_copy / "results/digits/resnet18/report/plots/serving-p99.svg").is_file()
    # cached: a second run does nothing
    assert "serve" not in planned_jobs(workflow_copy, "report", "--configfile", "config/config.yaml", str(overlay))


def test_the_serving_section_renders_in_headless_chromium(tiny, tmp_path):
    """The report with real serving results: the section's table, findings and chart, drawn by a real browser."""
    pytest.importorskip("websocket", reason="websocket-client is needed (pip install -e '.[test]')")
    pytest.importorskip("openvino")
    from report_example import example
    from test_report_browser import CHROMIUM, check_report

    from infbench.report.build import build_report

    if not Path(CHROMIUM).exists():
        pytest.skip(f"headless Chromium not found at {CHROMIUM}")
    results = [
        serve(tiny, "onnxruntime", "Offline"),
        serve(tiny, "onnxruntime", "Server", "--bound-ms", "1000"),  # met, whatever the machine's load
        serve(tiny, "openvino", "Server", "--bound-ms", "1000"),
    ]
    paths = [_write(tmp_path / f"{k}.json", r) for k, r in enumerate(results)]
    summary, meta = example(machines=1, gpu=False)
    out = tmp_path / "report"
    build_report(summary, meta, out, paths)
    page = (out / "index.html").read_text()
    table = page[page.index('id="serving-table"') : page.index("</table>", page.index('id="serving-table"'))]
    assert table.count("<tr>") == 1 + 2  # the header, one row per variant
    assert "Most samples per second, everything queued (Offline): onnxruntime fp32 cpu 16px" in page
    assert "Most requests per second with p99 ≤ 1,000 ms" in page
    state = check_report(out / "index.html", tmp_path / "report.png")
    assert state["problems"] == [], state["problems"]
    assert state["failed"] == 0 and state["rendered"] == len(state["charts"])
    chart = next(c for c in state["charts"] if c["id"] == "vis-serving-p99")
    assert chart["svg"] >= 1 and chart["marks"] >= sum(len(r["runs"]) for r in results[1]["repetitions"])
    assert (out / "plots" / "serving-p99.svg").is_file()
    if os.environ.get("INFBENCH_SCREENSHOT"):
        (tmp_path / "report.png").replace(os.environ["INFBENCH_SCREENSHOT"])


def test_serving_findings_take_the_scenarios_drift_as_their_margin():
    """Two tight cells 1.2× apart among cells whose typical interval is ±25%: within that margin, no meaningful
    difference (with the 5% tolerance alone the same repetitions would call it faster)."""
    from infbench.serving import command

    findings = serving_report.findings

    def cell(name: str, reps: list[float]) -> dict:
        return {
            "backend": name,
            "precision": "fp32",
            "device": "cpu",
            "image_size": 32,
            "scenario": "Offline",
            "status": "ok",
            "runner": {"requests_in_flight": 2, "how": "threads", "threads_per_request": 1},
            "figure": {**command.interval(reps), "repetitions": reps},
        }

    results = [
        cell("a", [120.0, 121.0, 122.0]),
        cell("b", [100.0, 101.0, 102.0]),
        cell("c", [30.0, 40.0, 50.0]),
        cell("d", [20.0, 30.0, 40.0]),
        cell("e", [10.0, 14.0, 18.0]),
    ]
    (text, decided), *_ = findings(results, tolerance=0.05)
    assert decided and "no meaningful difference between a fp32 cpu 32px and b fp32 cpu 32px (within ±25%" in text
    tight = [r for r in results if r["backend"] in ("a", "b")]
    (text, decided), *_ = findings(tight, tolerance=0.05)
    assert decided and "a fp32 cpu 32px is faster than b fp32 cpu 32px" in text
