"""The H100 overlays (benchmarks/h100_seeds.yaml, h100_peak.yaml) are valid configs and give the grids they promise.

The config is put together the way workflow/Snakefile does it: config/config.yaml, then each --configfile
merged by Snakemake, the last overlay's grid.backends as the whole map, the schema's checks and defaults.
"""

from __future__ import annotations

import copy

from conftest import REPO
from snakemake.utils import update_config, validate

from infbench.backends.registry import BACKENDS
from infbench.study import grid
from infbench.study.config import check_config, check_schema, overlay_backends, read_yaml

SCHEMA = REPO / "config" / "schema.yaml"
SEEDS = ["config/cifar10.yaml", "benchmarks/h100_seeds.yaml"]


def study_config(configfiles: list[str], cli: dict) -> dict:
    config = read_yaml(REPO / "config" / "config.yaml")
    for f in configfiles:
        update_config(config, read_yaml(REPO / f))
    update_config(config, copy.deepcopy(cli))
    backends = overlay_backends([REPO / f for f in configfiles], cli)
    if backends is not None:
        config["grid"]["backends"] = backends
    check_schema(config, SCHEMA)
    validate(config, str(SCHEMA), set_default=True)
    check_config(config, REPO)
    return config


def variants(cells) -> set[tuple[str, str]]:
    return {(c.backend, c.precision) for c in cells}


def test_the_seeds_grid_is_seven_variants_on_cuda():
    config = study_config(SEEDS, {"dataset": "digits"})
    cells, dropped = grid.expand(config)
    assert variants(cells) == {
        ("torch", "fp32"),
        ("torch", "fp16"),
        ("torch_cudagraphs", "fp16"),
        ("torch_compile_max_autotune", "fp16"),
        ("torchscript", "fp16"),
        ("onnxruntime", "fp32"),
        ("onnxruntime", "fp16"),
    }
    assert len(cells) == 7 * 4 * 6 and not dropped
    assert {c.device for c in cells} == {"cuda"}
    assert {(c.image_size, c.batch_size) for c in cells} == {
        (s, b) for s in (224, 256, 384, 512) for b in (1, 4, 8, 16, 32, 64)
    }
    # the protocol's counts stay; only the phases are shorter
    bench = config["bench"]
    assert bench["repetitions"] == 3 and bench["tolerance"] == 0.05 and bench["windows"] == 5
    assert bench["window_s"] == 0.1 and bench["latency_iterations"] == 100 and bench["energy_window_s"] == 1
    # no TensorRT INT8 accuracy job (no variant of it here; nvidia-modelopt is not on the device)
    assert config["accuracy"]["expected_tensorrt"] == []
    # the techniques keep cifar10.yaml's channels-last; the baseline stays plain
    assert config["backend_options"]["torch_compile_max_autotune"]["channels_last"] is True
    assert config["backend_options"].get("torch", {}).get("channels_last", False) is False


def test_the_peak_overlay_sets_each_technique_at_its_peak():
    config = study_config([*SEEDS, "benchmarks/h100_peak.yaml"], {"dataset": "digits"})
    cells, _ = grid.expand(config)
    assert {(c.image_size, c.batch_size) for c in cells} == {(224, b) for b in (1, 128, 256, 512)}
    assert ("torch", "fp32") in variants(cells)  # the baseline of every speedup
    options = {b: BACKENDS[b].option_values(given) for b, given in config["backend_options"].items()}
    # max-autotune keeps its own CUDA graphs (cudagraphs null: the mode's choice)
    assert options["torch_compile_max_autotune"] == {"channels_last": True, "freezing": True, "cudagraphs": None}
    assert options["torch_compile"] == {"channels_last": True, "freezing": True, "cudagraphs": True}
    assert options["onnxruntime"] == {
        "enable_cuda_graph": True,
        "prefer_nhwc": True,
        "cudnn_conv_use_max_workspace": True,
        "fixed_shape": True,
    }


def test_the_family_overlay_is_mobilenet_v3_on_each_cuda_backend():
    """benchmarks/gpu_family.yaml (issue 36): one cell of a non-ResNet family per CUDA technique, beside
    the baseline, with the seeds' protocol."""
    config = study_config([*SEEDS, "benchmarks/gpu_family.yaml"], {})
    cells, dropped = grid.expand(config)
    assert {c.model for c in cells} == {"mobilenet_v3_large"} and not dropped
    assert variants(cells) == {
        ("torch", "fp32"),
        ("torch", "fp16"),
        ("torch_cudagraphs", "fp16"),
        ("torch_compile", "fp16"),
        ("onnxruntime", "fp16"),
    }
    assert {(c.device, c.image_size, c.batch_size) for c in cells} == {("cuda", 224, 32)}
    assert config["dataset"] == "digits" and config["bench"]["repetitions"] == 3


def test_the_gpu_serving_overlay_is_four_variants_in_three_scenarios_on_cuda():
    config = study_config(["config/cifar10.yaml", "benchmarks/gpu_serving.yaml"], {"dataset": "digits"})
    serving = grid.serving_cells(config)
    assert {(c.backend, c.precision, c.device, c.image_size, c.batch_size) for c, _ in serving} == {
        (b, p, "cuda", 224, 8) for b in ("torch", "onnxruntime") for p in ("fp32", "fp16")
    }
    assert sorted({s for _, s in serving}) == ["Offline", "Server", "SingleStream"] and len(serving) == 12
    assert config["serving"]["requests_in_flight"] == 2
