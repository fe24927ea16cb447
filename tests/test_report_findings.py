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
    # five repetitions spread over the row's ± (or given as throughput_repetitions / latency_p50_repetitions)
    for column, reps, spread in (
        ("throughput_img_s", "throughput_repetitions", "throughput_uncertainty_pct"),
        ("latency_ms_p50", "latency_p50_repetitions", "latency_uncertainty_pct"),
        ("energy_mj_per_image", "energy_repetitions", "energy_uncertainty_pct"),
    ):
        u = row.get(spread) or 0.0
        if measured and row.get(column) is not None and reps not in extra:
            row[reps] = [row[column] * (1 + u / 100 * s) for s in (-1, -0.5, 0, 0.5, 1)]
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
            speedup_verdict="better",
        ),
        cell("onnxruntime", "fp32", batch=1, tput=300.0),
        cell("tensorrt", "fp16", batch=8, status="error"),
    )
    found = findings(df, {})
    best = one(found, "max_throughput")
    assert best.determined and best.decided and best.data["comparison"].verdict == "better"
    assert (best.data["row"]["backend"], best.data["row"]["batch_size"]) == ("onnxruntime", 8)
    assert "1,000 img/s ± 2.0% (faster than the torch fp32 baseline: 2.50× (2.40–2.60×))" in best.text
    assert (
        "the best is faster than the next variant, torch fp32 on cpu, 32 px, batch 8 (400 img/s ± 2.0%): 2.50× ("
        in best.text
    )
    cells = one(found, "cells")
    assert cells.data == {"total": 4, "not_ok": {"error": 1}, "unstable": 0, "disturbed": 0}
    assert "3 of 4 cells were measured; 1 did not run: 1 error" in cells.text


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
    assert (
        f.decided
        and "the best is faster than the next variant, torch fp32 on cpu, 32 px, batch 1 (5.00 ms ± 2.0%)" in f.text
    )


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
    assert f.data["row"] is None and "No measured cell fits" in f.text
    f = one(findings(df, {}), "best_within_memory_cap")  # no cap: the smallest footprint is named, with its margin
    assert f.data["cap_mib"] is None and f.data["row"]["device_memory_peak_mib"] == 300.0
    assert (
        f.data["runner_up"]["precision"] == "fp32"
        and "the next variant, torch fp32 on cuda, 32 px, batch 64, peaks at 700 MiB" in f.text
    )


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
    # the unstable torch_cudagraphs cell counts now: its label informs, it does not gate
    assert f.decided and f.data["row"]["backend"] == "torch_cudagraphs"
    assert f.data["runner_up"]["backend"] == "onnxruntime"  # another variant, not the same one at another batch
    assert f.text.startswith(
        "[cuda] Least energy per image: torch_cudagraphs fp16 on cuda, 32 px, batch 64: 5.00 mJ/img ± 3.0% "
        "(at 5.00 W); the best is more frugal than the next variant, onnxruntime fp16 on cuda, 32 px, batch 64 "
        "(10.0 mJ/img ± 3.0%): 2.00×"
    )
    close = table(energy_cell("onnxruntime", "fp16", 10.0, 20.0), energy_cell("torch", "fp16", 11.0, 20.0))
    f = one(findings(close, {}), "min_energy_per_image")
    assert not f.decided and "undecided between the best and the next variant" in f.text
    no_nvml = df.with_columns(pl.lit(None, pl.Float64).alias("energy_mj_per_image"))
    f = one(findings(no_nvml, {}), "min_energy_per_image")
    assert not f.determined and "no measured cell has an NVML energy figure" in f.text


def test_memory_cap_uses_host_memory_on_cpu():
    df = table(
        cell("torch", batch=1, tput=100.0, host_memory_peak_mib=350.0),
        cell("torch", batch=64, tput=400.0, host_memory_peak_mib=1200.0),
    )
    f = one(findings(df, {"memory_cap_mib": 512}), "best_within_memory_cap")
    assert f.data["row"]["batch_size"] == 1 and "host memory peak of 350 MiB" in f.text


def test_saturation_batch_is_the_first_within_the_margin_of_the_max():
    rising = [(1, 100.0), (2, 200.0), (4, 400.0)]
    flat = [(1, 100.0), (2, 180.0), (4, 300.0), (8, 395.0), (16, 400.0)]
    df = table(
        *(cell("torch", batch=b, tput=t, throughput_uncertainty_pct=1.0) for b, t in flat),
        *(cell("onnxruntime", batch=b, tput=t) for b, t in rising),
        cell("onnxruntime", size=64, batch=1, tput=50.0),  # one batch only: no saturation for this size
    )
    rows = {r["backend"]: r for r in saturation(df)}
    assert rows["torch"]["saturation_batch"] == 8 and rows["torch"]["saturated"]
    assert rows["torch"]["max_batch"] == 16 and rows["torch"]["max_throughput"] == 400.0
    assert rows["onnxruntime"]["saturated"] is False and rows["onnxruntime"]["largest_batch"] == 4
    texts = {f.data["groups"][0]["backend"]: f.text for f in by_key(findings(df, {}), "saturation")}
    assert "32 px: batch 8 (395 img/s; the maximum, 400 img/s at batch 16, is within ±5%: 1.01×" in texts["torch"]
    assert "batch 1→8: 3.95×" in texts["torch"]
    assert "32 px: still rising at batch 4 (the largest tried, 400 img/s at batch 4; 2.00×" in texts["onnxruntime"]
    # the same series one step short of the margin: undecided, and said so
    close = table(*(cell("torch", batch=b, tput=t) for b, t in [(1, 100.0), (8, 380.0), (16, 400.0)]))
    [f] = by_key(findings(close, {}), "saturation")
    assert not f.decided and "undecided whether batch 8 (380 img/s) reaches the maximum" in f.text


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
    assert "32→64 px costs 3.00× (2.91–3.09×) the time per image for 4.00× the FLOPs" in texts["torch"]
    assert "more slowly than the FLOPs" in texts["torch"]
    assert "faster than the pixel count" in texts["onnxruntime"]


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


def test_an_unstable_cell_no_longer_blocks_a_finding():
    """The issue's case: every cell unstable (±12–38%), yet differences of 2–10× are decided by the cells'
    repetitions; the overview does not read '0 of N cells ran ok'."""
    noisy = {"status": "unstable", "throughput_uncertainty_pct": 20.0, "drift_floor_pct": 11.9, "tolerance_pct": 5.0}
    df = table(
        cell("openvino", "int8", batch=1, tput=5762.0, **noisy),
        cell("openvino", "int8", batch=32, tput=12478.0, **noisy),
        cell("torch", "fp32", batch=1, tput=211.0, **noisy),
        cell("torch", "fp32", batch=32, tput=2139.0, **noisy),
    )
    found = findings(df, {})
    cells = one(found, "cells")
    assert "0 of" not in cells.text and "All 4 cells were measured; 4 of them noisy" in cells.text
    assert "±11.9%" in cells.text  # the drift is the margin
    best = one(found, "max_throughput")
    assert best.decided and best.data["row"]["backend"] == "openvino" and best.data["row"]["batch_size"] == 32
    assert "the best is faster than the next variant, torch fp32 on cpu, 32 px, batch 32" in best.text
    saturation_findings = by_key(found, "saturation")
    assert len(saturation_findings) == 2 and all(f.determined and f.decided for f in saturation_findings)
    assert all("still rising at batch 32" in f.text for f in saturation_findings)
    decided = one(found, "comparisons")
    assert decided.data["undecided"] == 0


def test_several_models_are_never_mixed_and_every_finding_names_its_model():
    """Issue 35, item 1: with two models, batch saturation, size scaling and the cells' names are per model."""
    rows = []
    for model, speed in (("resnet18", 1.0), ("mobilenet_v3_small", 3.0)):
        for size in (32, 64):
            for batch, tput in ((1, 100.0), (8, 400.0)):
                rows.append(
                    cell(
                        "torch",
                        batch=batch,
                        size=size,
                        tput=speed * tput * (32 / size) ** 2,
                        model=model,
                        accuracy_top1=0.9,
                    )
                )
    found = findings(table(*rows), {"tolerance_points": 1.0})
    saturation_findings = by_key(found, "saturation")
    assert len(saturation_findings) == 2  # one series per model, not one series mixing both
    assert {f.data["groups"][0]["model"] for f in saturation_findings} == {"resnet18", "mobilenet_v3_small"}
    for f in saturation_findings:
        model = f.data["groups"][0]["model"]
        assert f"{model} torch fp32 on cpu" in f.text
        assert all({r["model"] for r in g["rows"]} == {model} for g in f.data["groups"])
    scaling = by_key(found, "size_scaling")
    assert len(scaling) == 2 and all(f.data["rows"][0]["model"] in f.text for f in scaling)
    best = one(found, "max_throughput")
    assert best.text.startswith("Highest throughput: mobilenet_v3_small torch fp32 on cpu, 32 px, batch 8")
    assert "the next variant, resnet18 torch fp32 on cpu" in best.text


def test_a_several_model_summary_table_has_a_model_column():
    """Issue 35, item 1: summary.md of a several-model run had four identical-looking rows per cell."""
    from infbench.report.build import summary_markdown
    from infbench.report.frame import complete

    df = complete(table(cell(model="resnet18"), cell(model="mobilenet_v3_small", tput=300.0)))
    md = summary_markdown(df, {}, [])
    header = next(line for line in md.splitlines() if line.startswith("| "))
    assert header.startswith("| model | backend |")
    assert any(line.startswith("| mobilenet_v3_small | torch |") for line in md.splitlines())
    one = summary_markdown(complete(table(cell())), {}, [])
    assert next(line for line in one.splitlines() if line.startswith("| ")).startswith("| backend |")
