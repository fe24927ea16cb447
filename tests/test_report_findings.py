"""Findings on hand-made summary tables whose answers are known."""

from __future__ import annotations

import polars as pl
import pytest

from infbench.report.charts import pareto_front
from infbench.report.findings import findings, saturation, size_scaling


def cell(backend="torch", precision="fp32", device="cpu", size=32, batch=1, tput=100.0, status="ok", **extra):
    """One summary row (± 2% on throughput and latency); latency follows from throughput unless given."""
    measured = status in ("ok", "unstable")
    row = {
        "model": "resnet18",
        "backend": backend,
        "precision": precision,
        "device": device,
        "image_size": size,
        "batch_size": batch,
        "machine": "box",
        "status": status,
        "error": None if measured else f"{status}: made up",
        "throughput_img_s": tput if measured else None,
        "throughput_uncertainty_pct": 2.0 if measured else None,
        "latency_ms_p50": 1000.0 * batch / tput if measured and tput else None,
        "latency_uncertainty_pct": 2.0 if measured else None,
        "time_per_image_ms": 1000.0 / tput if measured and tput else None,
        "quiet_repetitions": 5 if measured else None,
    }
    row.update(extra)
    return row


def table(*rows) -> pl.DataFrame:
    return pl.DataFrame(list(rows), infer_schema_length=None)


def by_key(found, key):
    return [f for f in found if f.key == key]


def one(found, key):
    [f] = by_key(found, key)
    return f


def test_fastest_configuration_and_failed_cells_ignored():
    df = table(
        cell("torch", "fp32", batch=8, tput=400.0),
        cell(
            "onnxruntime",
            "fp32",
            batch=8,
            tput=1000.0,
            speedup_vs_baseline=2.5,
            speedup_low=2.4,
            speedup_high=2.6,
            speedup_stable=True,
        ),
        cell("onnxruntime", "fp32", batch=1, tput=300.0),
        cell("tensorrt", "fp16", batch=8, status="error"),
    )
    found = findings(df, {})
    best = one(found, "max_throughput")
    assert best.determined and best.data["significant"] is True
    assert (best.data["row"]["backend"], best.data["row"]["batch_size"]) == ("onnxruntime", 8)
    assert "1,000 img/s ± 2.0%" in best.text and "2.50× the torch fp32 baseline, interval 2.40–2.60×" in best.text
    assert (
        "the next variant, torch fp32 on cpu, 32 px, batch 8, reaches 400 img/s ± 2.0% (the best does 150% more)"
        in (best.text)
    )
    cells = one(found, "cells")
    assert cells.data == {"total": 4, "not_ok": {"error": 1}, "unstable": 0, "disturbed": 0}
    assert "3 of 4 cells ran ok; 1 did not run: 1 error" in cells.text


def test_overlapping_intervals_name_no_winner():
    """9,866 ± 2.4% and 9,500 ± 2.9% overlap: no significant difference, and neither is called the best."""
    df = table(
        cell("onnxruntime", "int8", batch=32, tput=9866.0, throughput_uncertainty_pct=2.4),
        cell("onnxruntime", "fp32", batch=32, tput=9500.0, throughput_uncertainty_pct=2.9),
        cell("torch", "fp32", batch=32, tput=3000.0),
    )
    f = one(findings(df, {}), "max_throughput")
    assert f.data["significant"] is False and f.data["runner_up"]["precision"] == "fp32"
    assert f.text == (
        "Highest throughput: no significant difference between onnxruntime int8 on cpu, 32 px, batch 32 "
        "(9,866 img/s ± 2.4%) and onnxruntime fp32 on cpu, 32 px, batch 32 (9,500 img/s ± 2.9%): "
        "their intervals overlap."
    )
    # with tighter uncertainties the same figures differ significantly and the winner is named
    tight = df.with_columns(pl.lit(1.0).alias("throughput_uncertainty_pct"))
    f = one(findings(tight, {}), "max_throughput")
    assert f.data["significant"] is True and f.text.startswith("Highest throughput: onnxruntime int8 on cpu")
    # the same for batch-1 latency (p50)
    df = table(
        cell("onnxruntime", "int8", batch=1, latency_ms_p50=0.211, latency_uncertainty_pct=5.6),
        cell("onnxruntime", "fp32", batch=1, latency_ms_p50=0.220, latency_uncertainty_pct=4.0),
    )
    f = one(findings(df, {}), "min_latency_batch1")
    assert f.data["significant"] is False and "no significant difference" in f.text
    assert "0.211 ms ± 5.6%" in f.text and "0.22 ms ± 4.0%" in f.text


def test_unstable_cells_never_carry_a_finding():
    """The fastest cell is unstable: it is counted, but the headline is the fastest stable cell; a speedup against
    an unstable baseline is not stated; saturation around an unstable cell is not claimed."""
    df = table(
        cell("onnxruntime", "int8", batch=8, tput=20000.0, status="unstable", throughput_uncertainty_pct=30.0),
        cell(
            "onnxruntime",
            "int8",
            batch=1,
            tput=5000.0,
            speedup_vs_baseline=10.0,
            speedup_low=8.0,
            speedup_high=12.0,
            speedup_stable=False,
            disturbed_repetitions=1,
        ),
        cell("torch", "fp32", batch=1, tput=500.0, status="unstable", disturbed_repetitions=2),
        cell("torch", "fp32", batch=8, tput=900.0),
    )
    found = findings(df, {})
    cells = one(found, "cells")
    assert cells.data == {"total": 4, "not_ok": {}, "unstable": 2, "disturbed": 3}
    assert "2 of 4 cells ran ok; 2 unstable" in cells.text and "3 repetitions were disturbed" in cells.text
    best = one(found, "max_throughput")
    assert best.data["row"]["throughput_img_s"] == 5000.0  # the best stable cell; the faster one named beside it
    assert "onnxruntime int8 on cpu, 32 px, batch 8 measured 20,000 img/s but its repetitions disagreed" in best.text
    assert "10.0×" not in best.text and "no speedup stated: its torch fp32 baseline cell is unstable" in best.text
    lat = one(found, "min_latency_batch1")
    assert lat.data["row"]["backend"] == "onnxruntime" and lat.data["runner_up"] is None  # torch b1 is unstable
    saturation_texts = [f.text for f in by_key(found, "saturation")]
    assert not any("Batch saturation (first batch" in t for t in saturation_texts)
    assert any(
        t.startswith("Batch saturation not stated for onnxruntime int8 on cpu at 32 px") for t in saturation_texts
    )


def test_a_faster_unstable_cell_is_named_beside_the_best_stable_one_with_its_range():
    """The issue's noisy run: the headline named a variant at 60% of the best without a word about the best."""
    shaky = {"status": "unstable", "throughput_uncertainty_pct": 62.0}
    df = table(
        cell("onnxruntime", "fp32", batch=32, tput=5374.0),
        cell("onnxruntime", "int8", batch=1, tput=4532.0),
        cell(
            "onnxruntime",
            "int8",
            batch=8,
            tput=8780.0,
            throughput_min_img_s=3300.0,
            throughput_max_img_s=9400.0,
            **shaky,
        ),
        cell(
            "torch",
            "fp32",
            batch=1,
            tput=600.0,
            latency_ms_p50=0.15,
            latency_p50_min_ms=0.1,
            latency_p50_max_ms=3.0,
            **shaky,
        ),
    )
    found = findings(df, {})
    best = one(found, "max_throughput")
    assert best.data["row"]["throughput_img_s"] == 5374.0
    assert (
        "onnxruntime int8 on cpu, 32 px, batch 8 measured 8,780 img/s but its repetitions disagreed "
        "(range 3,300–9,400 img/s)" in best.text
    )
    assert "± 62" not in best.text  # a ± above 50% is never printed
    lat = one(found, "min_latency_batch1")
    assert lat.data["row"]["backend"] == "onnxruntime"
    assert (
        "torch fp32 on cpu, 32 px, batch 1 measured 0.15 ms but its repetitions disagreed (range 0.1–3.00 ms)"
        in lat.text
    )
    # a slower unstable cell is not mentioned
    calm = findings(
        table(cell("onnxruntime", "fp32", batch=32, tput=5374.0), cell("torch", "fp32", tput=10.0, **shaky)), {}
    )
    assert "disagreed" not in one(calm, "max_throughput").text


def test_an_unstable_cell_whose_slowest_repetition_beats_every_other_cell_is_the_best():
    """Two quiet runs on the 2-core VM: OpenVINO int8 at batch 1 spread 0.168-0.252 ms, unstable in both, while
    the best stable batch-1 cell (0.43 ms) changed between runs. Its spread does not put its lead in doubt, so
    the headline names it (the same in both runs); a lead that the rivals' intervals reach is not claimed."""
    shaky = {"status": "unstable", "throughput_uncertainty_pct": 30.0, "latency_uncertainty_pct": 30.0}
    df = table(
        cell("onnxruntime", "int8", batch=1, tput=2240.0, latency_ms_p50=0.432),
        cell(
            "openvino",
            "fp32",
            batch=1,
            tput=2228.0,
            latency_ms_p50=0.44,
            latency_p50_min_ms=0.4,
            latency_p50_max_ms=0.5,
            throughput_min_img_s=1930.0,
            throughput_max_img_s=2401.0,
            **shaky,
        ),
        cell(
            "openvino",
            "int8",
            batch=1,
            tput=5738.0,
            latency_ms_p50=0.169,
            latency_p50_min_ms=0.168,
            latency_p50_max_ms=0.252,
            throughput_min_img_s=4029.0,
            throughput_max_img_s=5842.0,
            **shaky,
        ),
        cell("torch", "fp32", batch=1, tput=180.0, latency_ms_p50=5.5),
    )
    found = findings(df, {})
    lat = one(found, "min_latency_batch1")
    assert lat.data["row"]["backend"] == "openvino" and lat.data["unstable_lead"]
    assert "openvino int8 on cpu at 32 px: 0.169 ms, unstable (range 0.168–0.252 ms), yet even its slowest" in lat.text
    assert "the best stable cell, onnxruntime int8 on cpu at 32 px, takes 0.432 ms ± 2.0%" in lat.text
    best = one(found, "max_throughput")
    assert best.data["row"]["precision"] == "int8" and best.data["row"]["backend"] == "openvino"
    # its slowest repetition (4,029) no longer clears a stable rival's interval (4,000 ± 2% reaches 4,080)
    close = findings(pl.concat([df, table(cell("onnxruntime", "fp32", batch=32, tput=4000.0))], how="diagonal"), {})
    best = one(close, "max_throughput")
    assert best.data["row"]["throughput_img_s"] == 4000.0 and "unstable_lead" not in best.data
    assert "measured 5,738 img/s but its repetitions disagreed (range 4,029–5,842 img/s)" in best.text
    # the same lead measured while the machine was loaded (no quiet repetition: its figures are the disturbed
    # ones), or on one quiet repetition: no spread vouches for it, so no headline rests on it
    for quiet in (0, 1):
        loaded = df.with_columns(
            pl.when(pl.col("backend") == "openvino").then(quiet).otherwise(5).alias("quiet_repetitions")
        )
        lat = one(findings(loaded, {}), "min_latency_batch1")
        assert lat.data["row"]["backend"] == "onnxruntime" and "slowest repetition" not in lat.text, lat.text


def test_launch_bound_cells_are_named():
    df = table(
        cell("torch", "fp16", "cuda", batch=1, tput=2000.0, launch_bound=True),
        cell("torch", "fp16", "cuda", batch=4, tput=7000.0, launch_bound=True),
        cell("torch", "fp16", "cuda", size=64, batch=1, tput=1900.0, launch_bound=True),
        cell("torch", "fp16", "cuda", batch=256, tput=40000.0, launch_bound=False),
        cell("onnxruntime", "fp32", "cpu", batch=1, tput=900.0),  # not applicable: null
    )
    f = one(findings(df, {}), "launch_bound")
    assert len(f.data["cells"]) == 3
    assert "3 of 4 cells are launch-bound" in f.text
    assert "torch fp16 on cuda at 32 px batch 1, 4, 64 px batch 1." in f.text
    assert by_key(findings(table(cell()), {}), "launch_bound") == []  # CPU only: no launch-bound finding


def test_lowest_batch1_latency_uses_p50_of_batch1_cells_only():
    df = table(
        cell("torch", size=32, batch=1, latency_ms_p50=5.0, latency_ms_p99=9.0),
        cell("onnxruntime", size=32, batch=1, latency_ms_p50=3.0, latency_ms_p99=4.0),
        cell("onnxruntime", size=64, batch=1, latency_ms_p50=11.0),
        cell("torch", size=64, batch=1, latency_ms_p50=10.0),
        cell("torch", size=32, batch=4, latency_ms_p50=1.0),  # not batch 1: ignored
    )
    f = one(findings(df, {}), "min_latency_batch1")
    assert f.data["row"]["backend"] == "onnxruntime" and f.data["row"]["latency_ms_p50"] == 3.0
    assert {s: r["backend"] for s, r in f.data["per_size"].items()} == {32: "onnxruntime", 64: "torch"}
    assert "3.00 ms ± 2.0%" in f.text and "p99 4.00 ms" in f.text
    assert f.data["significant"] and "the next variant, torch fp32 on cpu, takes 5.00 ms ± 2.0%" in f.text


def test_best_within_tolerance_excludes_over_tolerance_variant():
    df = table(
        cell("onnxruntime", "int8-dynamic", batch=8, tput=900.0, accuracy_drop=40.0, over_tolerance=True),
        cell("onnxruntime", "int8", batch=8, tput=700.0, accuracy_drop=0.4, over_tolerance=False),
        cell("torch", "fp32", batch=8, tput=300.0, accuracy_drop=0.0, over_tolerance=False),
    )
    f = one(findings(df, {"tolerance_points": 1.0}), "best_within_tolerance")
    assert f.data["row"]["precision"] == "int8"
    assert "700 img/s" in f.text and "1-point" in f.text
    assert "int8-dynamic" in f.text and "breaks the tolerance" in f.text  # the faster one is named


def test_tolerance_derived_from_drop_when_flag_is_null():
    df = table(
        cell("onnxruntime", "int8", tput=900.0, accuracy_drop=2.5),
        cell("onnxruntime", "fp32", tput=500.0, accuracy_drop=0.0),
    )
    f = one(findings(df, {"tolerance_points": 1.0}), "best_within_tolerance")
    assert f.data["row"]["precision"] == "fp32"
    over = one(findings(df, {"tolerance_points": 1.0}), "over_tolerance")
    assert [v["precision"] for v in over.data["over"]] == ["int8"]


def test_over_tolerance_variants_from_meta_accuracy():
    meta = {
        "tolerance_points": 1.0,
        "accuracy": [
            {
                "variant": "fp32",
                "backend": "torch",
                "precision": "fp32",
                "device": "cpu",
                "accuracy_top1": 0.98,
                "accuracy_drop": 0.0,
                "over_tolerance": False,
            },
            {
                "variant": "int8-dynamic",
                "backend": "onnxruntime",
                "precision": "int8-dynamic",
                "device": "cpu",
                "accuracy_top1": 0.55,
                "accuracy_drop": 43.0,
                "over_tolerance": True,
            },
        ],
    }
    f = one(findings(table(cell()), meta), "over_tolerance")
    assert f.determined and [v["precision"] for v in f.data["over"]] == ["int8-dynamic"]
    assert "43.0 points" in f.text and "55.00%" in f.text
    meta["accuracy"] = meta["accuracy"][:1]
    f = one(findings(table(cell()), meta), "over_tolerance")
    assert f.data["over"] == [] and "within the 1-point" in f.text


def test_memory_cap_prefers_device_memory_and_excludes_cells_over_the_cap():
    df = table(
        # GPU cell: device-level peak 300 MiB counts (its host RSS of 900 MiB and the allocator's 50 MiB do not)
        cell(
            "torch",
            "fp16",
            "cuda",
            batch=32,
            tput=5000.0,
            device_memory_peak_mib=300.0,
            host_memory_peak_mib=900.0,
            allocator_memory_peak_mib=50.0,
        ),
        cell(
            "torch",
            "fp32",
            "cuda",
            batch=64,
            tput=8000.0,
            device_memory_peak_mib=700.0,
            host_memory_peak_mib=900.0,
            allocator_memory_peak_mib=90.0,
        ),
        cell("torch", "fp32", "cuda", batch=1, tput=100.0, device_memory_peak_mib=None, host_memory_peak_mib=None),
    )
    f = one(findings(df, {"memory_cap_mib": 500.0}), "best_within_memory_cap")
    assert f.data["row"]["precision"] == "fp16" and f.data["row"]["_mem_kind"] == "device"
    assert "500 MiB" in f.text and "300 MiB" in f.text and "1 cells without a memory figure" in f.text
    assert "5,000 img/s ± 2.0%" in f.text
    f = one(findings(df, {"memory_cap_mib": 100.0}), "best_within_memory_cap")  # the allocator's 50/90 MiB would fit
    assert f.data["row"] is None and "No ok cell fits" in f.text
    f = one(findings(df, {}), "best_within_memory_cap")  # no cap: the smallest footprint is named, with its margin
    assert f.data["cap_mib"] is None and f.data["row"]["device_memory_peak_mib"] == 300.0
    assert f.data["runner_up"]["precision"] == "fp32" and "peaks at 700 MiB (the smallest needs 57% less)" in f.text


def energy_cell(backend, precision, mj, u, batch=64, **extra):
    return cell(
        backend,
        precision,
        "cuda",
        batch=batch,
        tput=1000.0,
        energy_mj_per_image=mj,
        power_w=mj,
        energy_uncertainty_pct=u,
        **extra,
    )


def test_least_energy_per_image_with_its_margin_only_where_the_intervals_part():
    """GPU cells: the least energy per image is named with its margin over the best cell of another variant;
    where their intervals overlap, neither is called the best; an unstable cell never counts; a CPU cell
    (no NVML energy) has no such finding."""
    df = table(
        energy_cell("onnxruntime", "fp16", 10.0, 3.0),
        energy_cell("onnxruntime", "fp16", 12.0, 3.0, batch=8),
        energy_cell("torch", "fp16", 13.0, 3.0),
        energy_cell("torch_cudagraphs", "fp16", 5.0, 3.0, status="unstable"),
        cell("torch", "fp32", "cpu", batch=8, tput=100.0),
    )
    found = findings(df, {})
    f = one(found, "min_energy_per_image")
    assert f.data["significant"] is True and f.data["row"]["backend"] == "onnxruntime"
    assert f.data["runner_up"]["backend"] == "torch"  # another variant, not the same one at another batch
    assert f.text == (
        "[cuda] Least energy per image: onnxruntime fp16 on cuda, 32 px, batch 64: 10.0 mJ/img ± 3.0% (at 10.0 W); "
        "the next variant, torch fp16 on cuda, 32 px, batch 64, needs 13.0 mJ/img ± 3.0% (the best needs 23% less)."
    )
    wide = df.with_columns(pl.lit(20.0).alias("energy_uncertainty_pct"))
    f = one(findings(wide, {}), "min_energy_per_image")
    assert f.data["significant"] is False and "no significant difference" in f.text
    no_nvml = df.with_columns(pl.lit(None, pl.Float64).alias("energy_mj_per_image"))
    f = one(findings(no_nvml, {}), "min_energy_per_image")
    assert not f.determined and "no ok cell has an NVML energy figure" in f.text


def test_memory_cap_uses_host_memory_on_cpu():
    df = table(
        cell("torch", batch=1, tput=100.0, host_memory_peak_mib=350.0),
        cell("torch", batch=64, tput=400.0, host_memory_peak_mib=1200.0),
    )
    f = one(findings(df, {"memory_cap_mib": 512}), "best_within_memory_cap")
    assert f.data["row"]["batch_size"] == 1 and "host memory peak of 350 MiB" in f.text


def test_saturation_batch_is_first_within_ten_percent_of_max():
    rising = [(1, 100.0), (2, 200.0), (4, 400.0)]
    flat = [(1, 100.0), (2, 180.0), (4, 300.0), (8, 380.0), (16, 400.0)]
    df = table(
        *(cell("torch", batch=b, tput=t) for b, t in flat),
        *(cell("onnxruntime", batch=b, tput=t) for b, t in rising),
        cell("onnxruntime", size=64, batch=1, tput=50.0),  # one batch only: no saturation for this size
    )
    rows = {r["backend"]: r for r in saturation(df)}
    assert rows["torch"]["saturation_batch"] == 8 and rows["torch"]["saturated"]
    assert rows["torch"]["max_batch"] == 16 and rows["torch"]["max_throughput"] == 400.0
    assert rows["onnxruntime"]["saturated"] is False and rows["onnxruntime"]["largest_batch"] == 4
    texts = {f.data["groups"][0]["backend"]: f.text for f in by_key(findings(df, {}), "saturation")}
    assert "32 px: batch 8 (380 img/s; max 400 img/s at batch 16)" in texts["torch"]
    assert "32 px: not reached, still rising at batch 4" in texts["onnxruntime"]


def test_size_scaling_against_flop_ratio_and_pixel_fallback():
    df = table(
        cell("torch", size=32, batch=8, tput=1000.0, gflops_per_image=1.0),  # 1 ms per image
        cell("torch", size=64, batch=8, tput=1000.0 / 3, gflops_per_image=4.0),  # 3 ms per image for 4× the FLOPs
        cell("torch", size=64, batch=1, tput=50.0, gflops_per_image=4.0),  # only one size at batch 1: not used
        cell("onnxruntime", size=32, batch=8, tput=1000.0),  # no FLOP counts: pixel ratio
        cell("onnxruntime", size=64, batch=8, tput=200.0),
    )
    rows = {r["backend"]: r for r in size_scaling(df)}
    t = rows["torch"]
    assert (t["from_size"], t["to_size"], t["batch_size"], t["flop_source"]) == (32, 64, 8, "flops")
    assert t["time_ratio"] == pytest.approx(3.0) and t["flop_ratio"] == pytest.approx(4.0)
    assert t["efficiency"] == pytest.approx(4 / 3)
    o = rows["onnxruntime"]
    assert (
        o["flop_source"] == "pixels" and o["flop_ratio"] == pytest.approx(4.0) and o["time_ratio"] == pytest.approx(5)
    )
    texts = {f.data["rows"][0]["backend"]: f.text for f in by_key(findings(df, {}), "size_scaling")}
    assert "3.00× the time per image for 4.00× the FLOPs" in texts["torch"]
    assert "more slowly than the FLOPs" in texts["torch"]
    assert "faster than the pixel count" in texts["onnxruntime"] and "FLOP counts missing" in texts["onnxruntime"]


def test_best_utilization():
    df = table(
        cell("torch", batch=1, utilization_pct=12.0, achieved_tflops=0.024),
        cell("onnxruntime", batch=8, utilization_pct=31.5, achieved_tflops=0.063),
        cell("onnxruntime", batch=16, utilization_pct=None),
    )
    f = one(findings(df, {}), "best_utilization")
    assert f.data["row"]["batch_size"] == 8 and "31.5%" in f.text and "0.063 TFLOP/s" in f.text
    assert "Above 100%" not in f.text


def test_utilisation_over_the_peak_is_explained():
    df = table(cell("onnxruntime", batch=32, utilization_pct=118.0, achieved_tflops=0.233))
    f = one(findings(df, {}), "best_utilization")
    assert "118%" in f.text and "Above 100%" in f.text and "padding" in f.text


def test_nulls_say_what_could_not_be_determined():
    # only the cell keys, a status and nothing measured: every finding says what is missing
    df = table(
        {
            "model": "m",
            "backend": "torch",
            "precision": "fp32",
            "device": "cpu",
            "image_size": 32,
            "batch_size": 1,
            "status": "ok",
            "throughput_img_s": None,
        },
        {
            "model": "m",
            "backend": "torch",
            "precision": "fp32",
            "device": "cpu",
            "image_size": 64,
            "batch_size": 4,
            "status": "ok",
            "throughput_img_s": None,
        },
    )
    found = findings(df, {"tolerance_points": 1.0, "memory_cap_mib": 100})
    undetermined = {f.key for f in found if not f.determined}
    assert undetermined == {
        "max_throughput",
        "min_latency_batch1",
        "best_within_tolerance",
        "best_within_memory_cap",
        "saturation",
        "size_scaling",
        "best_utilization",
        "over_tolerance",
    }
    for f in found:
        if not f.determined:
            assert "could not be determined" in f.text or "could not" in f.text, f.text


def test_no_ok_cells_and_empty_summary():
    found = findings(table(cell(status="oom"), cell(status="timeout", batch=2)), {})
    assert one(found, "cells").data["not_ok"] == {"oom": 1, "timeout": 1}
    assert not one(found, "max_throughput").determined
    empty = findings(pl.DataFrame(), {})
    assert not one(empty, "cells").determined


def test_several_machines_are_reported_apart():
    a = cell("torch", tput=100.0)
    b = {**cell("torch", tput=900.0), "machine": "gpu-box"}
    found = by_key(findings(table(a, b), {}), "max_throughput")
    assert sorted(f.data["row"]["machine"] for f in found) == ["box", "gpu-box"]
    assert any(f.text.startswith("[gpu-box, cpu]") for f in found)


def test_pareto_front():
    points = [
        {"t": 100.0, "a": 98.0},  # slow but most accurate: on the front
        {"t": 300.0, "a": 97.9},  # on the front
        {"t": 250.0, "a": 97.0},  # dominated by the 300/97.9 point
        {"t": 900.0, "a": 55.0},  # fastest: on the front
    ]
    assert pareto_front(points, "t", "a") == {0, 1, 3}


def test_every_cell_unstable_still_answers_where_one_cell_leads_beyond_all_spreads():
    """A noisy 2-core VM at 5% tolerance: all 20 cells unstable. The headline still names the cell whose slowest
    repetition beats every other cell's fastest, with the next variant beside it; without such a lead it says
    what could not be determined, never a winner."""
    shaky = {"status": "unstable", "throughput_uncertainty_pct": 11.0}
    df = table(
        cell(
            "openvino",
            "int8",
            batch=32,
            tput=12123.0,
            throughput_min_img_s=11618.0,
            throughput_max_img_s=12949.0,
            **shaky,
        ),
        cell(
            "onnxruntime",
            "int8",
            batch=32,
            tput=4793.0,
            throughput_min_img_s=4500.0,
            throughput_max_img_s=5100.0,
            **shaky,
        ),
    )
    best = one(findings(df, {}), "max_throughput")
    assert best.determined and best.data["row"]["backend"] == "openvino"
    assert "the next variant, onnxruntime int8 on cpu, 32 px, batch 32, measured 4,793 img/s ± 11.0% (unstable)" in (
        best.text
    )
    close = table(
        cell(
            "openvino", "int8", batch=32, tput=5000.0, throughput_min_img_s=4400.0, throughput_max_img_s=5600.0, **shaky
        ),
        cell(
            "onnxruntime",
            "int8",
            batch=32,
            tput=4793.0,
            throughput_min_img_s=4500.0,
            throughput_max_img_s=5100.0,
            **shaky,
        ),
    )
    assert not one(findings(close, {}), "max_throughput").determined
