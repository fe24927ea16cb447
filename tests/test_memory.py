"""Memory and GPU counters: never negative, null (with the reason) where they cannot be measured."""

from __future__ import annotations

import json
import time

import polars as pl
import pytest
from conftest import MEASURED

from infbench.measure import memory, nvml

MiB = 2**20


def test_clamp_never_negative():
    assert memory.clamp_delta_mib(100 * MiB, 612 * MiB) == (512.0, None)
    assert memory.clamp_delta_mib(100 * MiB, 100 * MiB) == (0.0, None)  # a real zero is a zero
    value, why = memory.clamp_delta_mib(612 * MiB, 100 * MiB)  # another process freed memory
    assert value is None and "fell" in why
    assert memory.clamp_delta_mib(None, 100 * MiB)[0] is None
    assert memory.clamp_delta_mib(100 * MiB, None)[0] is None
    assert memory.nonnegative_mib(-3.0) is None and memory.nonnegative_mib(None) is None
    assert memory.nonnegative_mib(0) == 0.0
    assert memory.host_peak_mib(0) is None and memory.host_peak_mib(-1) is None
    assert memory.host_peak_mib(2048) == 2.0


class FakeNvml:
    """used_bytes() returns the next of `readings` (an NVML stand-in for the clamp logic)."""

    def __init__(self, readings, processes=1):
        self.readings = list(readings)
        self.processes = processes

    def used_bytes(self):
        return self.readings.pop(0)

    def process_count(self):
        return self.processes


def test_device_memory_delta_around_session_and_run():
    tracker = memory.DeviceMemory(FakeNvml([1000 * MiB, 1300 * MiB, 1310 * MiB, 1305 * MiB]))
    tracker.baseline()
    for label in ("after_load", "after_inputs", "after_run"):
        tracker.mark(label)
    section = tracker.section(allocator_peak_mib=None, sampled_peak=1400 * MiB)
    assert section["device_peak_mib"] == 400.0 and section["device_method"] == "nvml device used delta"
    assert section["device_note"] is None
    # A torch backend: the device-level figure still leads (every backend alike); the allocator's
    # own peak stands beside it.
    tracker = memory.DeviceMemory(FakeNvml([1000 * MiB, 1200 * MiB]))
    tracker.baseline()
    tracker.mark("after_run")
    section = tracker.section(allocator_peak_mib=150.0)
    assert section["device_peak_mib"] == 200.0 and section["device_method"] == "nvml device used delta"
    assert section["allocator_peak_mib"] == 150.0


def test_device_memory_falling_below_baseline_is_null_not_negative():
    tracker = memory.DeviceMemory(FakeNvml([5000 * MiB, 3000 * MiB, 3100 * MiB], processes=2))
    tracker.baseline()
    tracker.mark("after_load")
    tracker.mark("after_run")
    section = tracker.section(allocator_peak_mib=None, sampled_peak=3200 * MiB)
    assert section["device_peak_mib"] is None and section["device_used_delta_mib"] is None
    assert "another process freed memory" in section["device_note"]
    assert "2 processes" in section["device_note"]


def test_without_nvml_device_memory_is_null_with_the_reason():
    session, why = nvml.Nvml.open()
    if session is not None:
        session.close()
        pytest.skip("NVML works on this machine")
    assert why.startswith("NVML unavailable")
    section = memory.DeviceMemory(None, why).section(allocator_peak_mib=None)
    assert section["device_peak_mib"] is None and section["device_note"] == why
    empty = nvml.empty(why)
    assert all(empty[k] is None for k in ("gpu_util_pct", "power_w", "energy_mj_per_image", "images_per_joule"))
    assert empty["note"] == why


class FakeSampler:
    def __init__(self, samples, name="Fake GPU"):
        self.samples = samples
        self.interval_s = 0.1
        self.throttle_mask = 0x4 | 0x1000_0000  # sw power cap (+ an unknown bit, ignored)
        self.temperature_c = 60
        self.nvml = type("N", (), {"name": lambda self: name})()


def _samples(energy=True):
    # 0..2 s at 0.1 s: warm-up until 1 s at 100 W, then the measurement at 300 W, 90% busy.
    out = []
    for i in range(21):
        t = i * 0.1
        power = 100.0 if t < 1.0 else 300.0
        joules = 100 * min(t, 1.0) + 300 * max(0.0, t - 1.0)
        out.append(
            {
                "t": t,
                "gpu_util": 90 if t >= 1.0 else 20,
                "mem_util": 30,
                "sm_clock": 1980,
                "power_w": power,
                "energy_mj": round(joules * 1000) if energy else None,
                "used": 1,
            }
        )
    return out


def test_nvml_summary_uses_the_measurement_window_and_the_energy_counter():
    samples = _samples()
    samples[0]["sm_clock"] = 1200  # idle clock when the timed rounds began
    summary = nvml.summarize(FakeSampler(samples), start=1.0, end=2.0, images=600)
    assert summary["sm_clock_mhz_start"] == 1200 and summary["sm_clock_mhz_end"] == 1980
    assert summary["sm_clock_mhz"] == pytest.approx(1980.0)  # the mean is over the window only
    assert summary["window_s"] == pytest.approx(1.0)
    assert summary["energy_source"] == "nvmlDeviceGetTotalEnergyConsumption"
    assert summary["energy_j"] == pytest.approx(300.0, rel=1e-3)  # 300 W for 1 s
    assert summary["energy_mj_per_image"] == pytest.approx(500.0, rel=1e-3)
    assert summary["images_per_joule"] == pytest.approx(2.0, rel=1e-3)
    assert summary["gpu_util_pct"] == pytest.approx(90.0) and summary["power_w"] == pytest.approx(300.0)
    assert summary["throttle_reasons"] == ["sw_power_cap"] and summary["gpu"] == "Fake GPU"
    assert_energy_agrees_with_power(summary)


def assert_energy_agrees_with_power(nvml_section: dict) -> None:
    """Energy per image × the window's throughput is the window's power (within 2%)."""
    s = nvml_section
    assert s["window_img_s"] > 0 and s["power_w"] > 0
    assert s["energy_mj_per_image"] / 1000 * s["window_img_s"] == pytest.approx(s["power_w"], rel=0.02)


def test_power_is_energy_over_the_window_even_where_power_samples_disagree():
    """Power samples that miss the spikes the energy counter integrates: power follows energy."""
    samples = _samples()
    for s in samples:
        s["power_w"] = 200.0  # the samples read low; the counter says 300 W
    summary = nvml.summarize(FakeSampler(samples), start=1.0, end=2.0, images=600)
    assert summary["power_w"] == pytest.approx(300.0, rel=1e-3)
    assert_energy_agrees_with_power(summary)


def test_nvml_summary_integrates_power_without_an_energy_counter():
    summary = nvml.summarize(FakeSampler(_samples(energy=False)), start=1.0, end=2.0, images=600)
    assert summary["energy_source"] == "power samples integrated over time"
    assert summary["energy_j"] == pytest.approx(300.0, rel=0.02)
    assert summary["energy_mj_per_image"] > 0


def test_real_cells_have_flops_utilisation_and_host_memory(reported_workflow):
    """Two real CPU cells through Snakemake (the default study, conftest's `reported_run`): host memory
    measured, device figures null, FLOPs and utilisation."""
    results = sorted((reported_workflow / "results/digits/resnet18/bench").rglob("*.json"))
    assert len(results) == 2
    probe = json.loads((reported_workflow / "results/probe/cpu.json").read_text())
    assert probe["status"] == "ok" and probe["peak_tflops"]["fp32"] > 0
    for path in results:
        r = json.loads(path.read_text())
        assert r["status"] in MEASURED, r["error"]
        assert r["memory"]["host_peak_mib"] > 0
        assert r["memory"]["device_peak_mib"] is None and r["memory"]["device_note"]
        assert r["memory"]["artifact_mib"] > 0
        assert all(r["nvml"][k] is None for k in ("gpu_util_pct", "power_w", "energy_mj_per_image"))
        assert r["nvml"]["note"]
        f = r["flops"]
        assert f["gflops_per_image"] > 0 and f["arithmetic_intensity"] > 0
        assert f["achieved_tflops"] == pytest.approx(f["gflops_per_image"] * r["throughput_img_s"] / 1000)
        assert f["utilization_pct"] == pytest.approx(100 * f["achieved_tflops"] / probe["peak_tflops"]["fp32"])
    df = pl.read_parquet(reported_workflow / "results/digits/resnet18/report/summary.parquet")
    for column in ("gflops_per_image", "achieved_tflops", "utilization_pct", "host_memory_peak_mib"):
        assert df[column].null_count() == 0 and (df[column] > 0).all(), column
    assert df["device_memory_peak_mib"].null_count() == df.height
    meta = json.loads((reported_workflow / "results/digits/resnet18/report/meta.json").read_text())
    assert {row["precision"] for row in meta["peaks"]} == {"fp32", "bf16", "int8"}


def test_energy_window_is_the_throughput_windows_and_lasts_long_enough():
    """Energy and utilisation are read over the throughput windows themselves: the sampler runs from
    just before the first window to just after the last (not during warm-up or latency), the span
    holds exactly the windows' batches, and on a GPU the windows together last the energy window."""
    from infbench.bench.process import energy_policy
    from infbench.measure import timing
    from infbench.measure.timing import TimingPolicy

    policy = energy_policy(TimingPolicy(0.01, 0.01, 3, 5, 0.01, 10), energy_window_s=0.1)
    assert policy.window_s == pytest.approx(0.02)  # 5 windows × 0.02 s ≥ the 0.1 s energy window
    assert energy_policy(policy, 0) == policy  # no energy window (or no NVML): the windows as configured
    calls, entered = [], []

    class Window:
        def __enter__(self):
            entered.append(("in", len(calls)))

        def __exit__(self, *exc):
            entered.append(("out", len(calls)))

    def step():  # a batch of a known 2 ms, so that the windows are sized from a true per-batch time
        time.sleep(0.002)
        calls.append(1)

    out = timing.measure_repetition(step, lambda: None, policy, 4, Window)
    t = out["throughput"]
    windows_batches = t["iterations_per_window"] * len(t["windows_img_s"])
    (_, before), (_, after) = entered
    assert after - before == windows_batches and t["images"] == 4 * windows_batches
    assert before == out["warmup_batches"]  # entered after the warm-up
    assert len(calls) - after == out["latency"]["iterations"]  # left before the latency phase
    assert t["span_end"] - t["span_start"] >= 0.9 * policy.windows * policy.window_s


MEASURING_PROCESS = """
import json, sys
from infbench.bench.process import measure_in_this_process as measure_repetition
result = measure_repetition(json.loads(sys.argv[1]))
print(json.dumps({"torch_imported": "torch" in sys.modules, "img_s": result["throughput"]["img_s"]}))
"""


def test_an_onnxruntime_cpu_cell_measures_without_torch_in_its_process(reported_workflow):
    """A CPU cell's host memory peak and threads are its runtime's own: the ONNX Runtime CPU cell's measuring
    process measures without importing torch (only GPU cells import ahead, to overlap the GPU's wait)."""
    import subprocess
    import sys

    study = reported_workflow / "results/digits/resnet18"
    args = {
        "cell": {"model": "resnet18", "backend": "onnxruntime", "precision": "fp32", "device": "cpu"}
        | {"image_size": 32, "batch_size": 4},
        "artifact": str(study / "onnx/fp32.onnx"),
        "reference": str(study / "reference/32.npz"),
        "threads": 2,
        "mode": "device",
        "options": {},
        "check_agreement": True,
        "energy_window_s": 0,
        "timing": {"warmup_s": 0.2, "window_s": 0.05, "window_iterations": 2, "windows": 3}
        | {"latency_s": 0.05, "latency_iterations": 5},
    }
    done = subprocess.run(
        [sys.executable, "-c", MEASURING_PROCESS, json.dumps(args)],
        cwd=reported_workflow,
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": str(reported_workflow / "workflow")},
    )
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["img_s"] > 0 and out["torch_imported"] is False
