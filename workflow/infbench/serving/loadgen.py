"""One LoadGen test: a scenario at its settings, run against a runner (runners.py), and what LoadGen's detail
log says of it (mlperf_log_summary.txt and mlperf_log_detail.txt stay in the test's folder).

These are short, non-compliant runs (MLPerf's minimum is 600 s; README "Serving"): LoadGen's early-stopping
check, which needs thousands of queries, fails them all, so a Server run is judged by LoadGen's own latency
check (`result_perf_constraints_met`: its p99 within the bound) and its minimum duration and query count;
LoadGen's overall verdict is recorded beside it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

SCENARIOS = ("Offline", "Server", "SingleStream")
NS_PER_MS = 1e6
# LoadGen sizes an Offline run from the expected rate (samples = rate × duration × 1.1): a variant that serves
# faster than its warm-up ends the run before its minimum duration (2 of 6 OpenVINO Offline runs on a noisy
# 2-core VM); 1.5 times the warm-up's rate makes the run last 1 to 1.5 times the minimum instead
OFFLINE_HEADROOM = 1.5


@dataclass(frozen=True)
class Test:
    scenario: str
    duration_s: float  # LoadGen's minimum duration
    min_queries: int
    expected_rate: float  # samples/s, from the warm-up: Offline's expected rate, SingleStream's expected latency
    target_rate: float | None = None  # Server: the Poisson arrival rate (queries/s, one sample each)
    bound_ms: float | None = None  # Server: p99 latency bound


def settings(test: Test, samples: int):
    import mlperf_loadgen as lg

    s = lg.TestSettings()
    s.scenario = getattr(lg.TestScenario, test.scenario)
    s.mode = lg.TestMode.PerformanceOnly
    s.min_duration_ms = int(test.duration_s * 1000)
    s.min_query_count = test.min_queries
    s.performance_sample_count_override = samples
    if test.scenario == "Offline":
        s.offline_expected_qps = test.expected_rate * OFFLINE_HEADROOM
    elif test.scenario == "SingleStream":
        s.single_stream_expected_latency_ns = int(1e9 / test.expected_rate)
    elif test.scenario == "Server":
        s.server_target_qps = test.target_rate
        s.server_target_latency_ns = int(test.bound_ms * NS_PER_MS)
        s.server_target_latency_percentile = 0.99
    else:
        raise ValueError(f"scenario {test.scenario!r}: expected one of {', '.join(SCENARIOS)}")
    return s


def run(runner, test: Test, samples: int, log_dir: Path) -> dict:
    """LoadGen's `test` against `runner` (started), `samples` distinct images; the figures of its detail log."""
    import mlperf_loadgen as lg

    log_dir.mkdir(parents=True, exist_ok=True)

    def respond(batch):
        lg.QuerySamplesComplete([lg.QuerySampleResponse(s.id, 0, 0) for s in batch])

    runner.on_done = respond
    sut = lg.ConstructSUT(runner.issuer(test.scenario), lambda: None)
    qsl = lg.ConstructQSL(samples, samples, lambda indices: None, lambda indices: None)  # images stay in memory
    log = lg.LogSettings()
    log.log_output.outdir = str(log_dir)
    log.log_output.copy_summary_to_stdout = False
    log.enable_trace = False
    try:
        lg.StartTestWithLogSettings(sut, qsl, settings(test, samples), log, "")
    finally:
        lg.DestroyQSL(qsl)
        lg.DestroySUT(sut)
    runner.raise_failure()
    (log_dir / "mlperf_log_accuracy.json").unlink(missing_ok=True)  # empty in a performance run
    return figures(read_detail(log_dir / "mlperf_log_detail.txt"), test, log_dir)


def read_detail(path: Path) -> dict:
    """Every `:::MLLOG {...}` record of a detail log, key → value (the last one of a key)."""
    found = {}
    for line in path.read_text().splitlines():
        if line.startswith(":::MLLOG "):
            record = json.loads(line.removeprefix(":::MLLOG "))
            found[record["key"]] = record["value"]
    return found


# samples/s as each scenario's detail log names it (Server, Offline, SingleStream)
RATE_KEYS = ("result_completed_samples_per_sec", "result_samples_per_second", "result_qps_with_loadgen_overhead")


def figures(detail: dict, test: Test, log_dir: Path) -> dict:
    def ms(percentile: str):
        value = detail.get(f"result_{percentile}_percentile_latency_ns")
        return None if value is None else value / NS_PER_MS

    rate = next((detail[k] for k in RATE_KEYS if detail.get(k) is not None), None)
    constraints = bool(detail.get("result_perf_constraints_met"))
    enough = bool(detail.get("result_min_duration_met")) and bool(detail.get("result_min_queries_met"))
    return {
        "scenario": test.scenario,
        "target_rate": test.target_rate,
        "bound_ms": test.bound_ms,
        "samples_per_s": rate,
        "queries": detail.get("result_query_count"),
        "p50_ms": ms("50.00"),
        "p90_ms": ms("90.00"),
        "p99_ms": ms("99.00"),
        "mean_ms": (detail.get("result_mean_latency_ns") or 0) / NS_PER_MS or None,
        # a Server run meets the bound where LoadGen's latency check passed in a run long enough
        "within_bound": constraints and enough if test.scenario == "Server" else None,
        "loadgen_result": detail.get("result_validity"),
        "loadgen_early_stopping_met": detail.get("early_stopping_met"),
        "logs": str(log_dir),
    }
