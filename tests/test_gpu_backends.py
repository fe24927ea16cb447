"""The PyTorch-family and GPU backends.

On the CPU (CI): torchscript, torch.compile and AOTInductor run for real on tiny shapes and must
compute what eager PyTorch computes; TensorRT paths must report `unavailable` with the import
error. Everything that needs a GPU is skipped with the reason.
"""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path

import numpy as np
import pytest
import yaml

from infbench.backends.base import BackendUnavailable
from infbench.backends.registry import BACKENDS, spec
from infbench.backends.unavailable import UNAVAILABLE_KIND
from infbench.core.cell import Cell
from infbench.study import grid

REPO = Path(__file__).resolve().parents[1]

torch = pytest.importorskip("torch")
HAS_CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU (torch.cuda.is_available() is False)")
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
HAS_TORCH_TENSORRT = importlib.util.find_spec("torch_tensorrt") is not None


def _ort_has_cuda() -> bool:
    try:
        import onnxruntime as ort
    except ImportError:
        return False
    return "CUDAExecutionProvider" in ort.get_available_providers()


needs_ort_cuda = pytest.mark.skipif(
    not (HAS_CUDA and _ort_has_cuda()), reason="needs a CUDA GPU and onnxruntime-gpu (CUDAExecutionProvider)"
)


@pytest.fixture(scope="session", autouse=True)
def shared_inductor_cache(tmp_path_factory):
    """One Inductor/Triton cache for the whole session, so a shape compiles its C++ kernels once."""
    root = tmp_path_factory.mktemp("inductor-cache")
    old = {k: os.environ.get(k) for k in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(root / "inductor")
    os.environ["TRITON_CACHE_DIR"] = str(root / "triton")
    yield root
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory) -> Path:
    """A randomly initialised ResNet-18 in the format `infbench train` writes."""
    from infbench.stages.model import Facts, build, save

    torch.manual_seed(0)
    net = build("resnet18", 10, "imagenet").eval()
    path = tmp_path_factory.mktemp("ckpt") / "checkpoint.pt"
    save(path, net, Facts("resnet18", 10))
    return path


def reference(checkpoint: Path, x: np.ndarray) -> np.ndarray:
    from infbench.stages.model import load_checkpoint

    with torch.inference_mode():
        return load_checkpoint(checkpoint)(torch.from_numpy(x)).numpy()


def make(name: str, precision: str, device: str, size: int, batch: int, artifact: Path, options=None):
    cell = Cell("resnet18", name, precision, device, size, batch)
    s = spec(name)
    return s.load_class()(cell, artifact, 2, s.artifact(cell).rule, options or {})


def run_once(backend, x: np.ndarray) -> np.ndarray:
    backend.check_available()
    backend.load()
    out = backend.run(backend.prepare(x))
    backend.synchronize()
    return backend.to_numpy(out)


def images(batch: int, size: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size), dtype=np.float32)


# -- registry, config ------------------------------------------------------------------------------
def test_every_backend_is_in_the_schema_and_importable():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    in_schema = set(schema["properties"]["grid"]["properties"]["backends"]["properties"])
    assert set(BACKENDS) <= in_schema, set(BACKENDS) - in_schema
    for s in BACKENDS.values():
        assert s.load_class().__name__ == s.cls  # importing a backend module imports no runtime


def test_modes_are_separate_backends_and_gpu_only_ones_are_dropped_on_cpu():
    assert {"torch_compile", "torch_compile_max_autotune", "torch_compile_reduce_overhead"} <= set(BACKENDS)
    assert "runs on: cuda" in spec("torch_compile_reduce_overhead").unsupported_reason("cpu", "fp32")
    assert "runs on: cuda" in spec("torch_tensorrt").unsupported_reason("cpu", "fp16")
    assert "runs on: cuda" in spec("onnxruntime_trt").unsupported_reason("cpu", "fp32")
    assert spec("torch_tensorrt").unsupported_reason("cuda", "int8") is None


def test_artifact_paths_are_per_shape_and_precision():
    c = Cell("resnet18", "aotinductor", "fp16", "cuda", 224, 8)
    assert spec("aotinductor").artifact(c).path == "aoti/cuda/fp16/224x8.pt2"
    assert spec("aotinductor").artifact(c).rule == "compile_aoti"
    c = Cell("resnet18", "torch_tensorrt", "int8", "cuda", 384, 16)
    assert spec("torch_tensorrt").artifact(c).path == "torch_tensorrt/int8/384x16.ep"
    assert spec("torch_tensorrt").artifact(c).rule == "compile_torch_tensorrt"
    trt = spec("onnxruntime_trt")
    # strongly typed TensorRT: the precision is in the model (fp16 ONNX; symmetric int8 Q/DQ ONNX)
    assert trt.artifact(Cell("resnet18", "onnxruntime_trt", "fp16", "cuda", 224, 1)).path.endswith("onnx/fp16.onnx")
    assert trt.artifact(Cell("resnet18", "onnxruntime_trt", "int8", "cuda", 224, 1)).path.endswith("onnx/int8_trt.onnx")
    # Precisions don't share artifacts: fp16 and fp32 AOTInductor packages are distinct files.
    paths = {spec("aotinductor").artifact(Cell("m", "aotinductor", p, "cuda", 32, 1)).path for p in ("fp32", "fp16")}
    assert len(paths) == 2


def test_study_config_validates_and_covers_every_backend_and_the_seed_grid():
    from snakemake.utils import validate

    config = yaml.safe_load((REPO / "config" / "cifar10.yaml").read_text())
    validate(config, str(REPO / "config" / "schema.yaml"), set_default=True)
    assert config["dataset"] == "cifar10"
    assert config["grid"]["image_sizes"] == [224, 256, 384, 512]
    assert config["grid"]["batch_sizes"] == [1, 4, 8, 16, 32, 64]
    assert set(config["grid"]["devices"]) == {"cpu", "cuda"}
    assert set(config["grid"]["backends"]) == set(BACKENDS)
    cells, dropped = grid.expand(config)
    on_cuda = {c.backend for c in cells if c.device == "cuda"}
    assert on_cuda == {name for name, b in BACKENDS.items() if "cuda" in b.support}
    on_cpu = {c.backend for c in cells if c.device == "cpu"}
    assert on_cpu >= {"torch", "torchscript", "torch_compile", "aotinductor", "openvino"}
    assert any(d.backend == "torch_tensorrt" and d.device == "cpu" for d in dropped)
    # digits override keeps the same grid (no download needed)
    digits_cells, _ = grid.expand({**config, "dataset": "digits"})
    assert digits_cells == cells


def test_backend_options_are_typed_and_only_the_declared_ones():
    """Options arrive as text (--option KEY=VALUE) or config values; each backend takes only its own."""
    from infbench.backends.registry import spec

    assert spec("torch").parse_options(["channels_last=true"]) == {"channels_last": True}
    assert spec("torchscript").parse_options([]) == {"channels_last": False}
    assert spec("torch").option_values({"channels_last": "False"}) == {"channels_last": False}
    assert spec("torch").option_args({"channels_last": True}) == "--option channels_last=true"
    assert spec("torch").option_args({"channels_last": False}) == ""  # a default reruns nothing
    with pytest.raises(ValueError, match="option channels_last='maybe': expected bool"):
        spec("torch").parse_options(["channels_last=maybe"])
    with pytest.raises(ValueError, match="backend torch_compile has no option cuda_graphs"):
        spec("torch_compile").parse_options(["cuda_graphs=true"])
    with pytest.raises(ValueError, match=r"backend aotinductor has no option channels_last \(its options: none\)"):
        spec("aotinductor").option_values({"channels_last": True})


# -- CPU: run for real, tiny shapes -------------------------------------------------------------------
@pytest.mark.parametrize(
    "name,options",
    [("torch", {"channels_last": "true"}), ("torchscript", {}), ("torchscript", {"channels_last": "true"})],
)
def test_cpu_backends_match_eager(checkpoint, name, options):
    x = images(2, 32)
    got = run_once(make(name, "fp32", "cpu", 32, 2, checkpoint, options), x)
    np.testing.assert_allclose(got, reference(checkpoint, x), atol=1e-3, rtol=1e-3)


def test_torch_compile_on_cpu_matches_eager_and_caches_under_results(checkpoint, tmp_path, monkeypatch):
    from infbench.backends import torch_compile

    x = images(1, 32)
    backend = make("torch_compile", "fp32", "cpu", 32, 1, checkpoint)
    got = run_once(backend, x)
    np.testing.assert_allclose(got, reference(checkpoint, x), atol=1e-3, rtol=1e-3)
    # the same input again: no recompilation, same answer
    np.testing.assert_allclose(backend.to_numpy(backend.run(backend.prepare(x))), got, atol=1e-6)
    # Without a user's choice, Inductor's cache goes under results/cache (not ~/.cache).
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.delenv("TRITON_CACHE_DIR")
    monkeypatch.chdir(tmp_path)
    torch_compile.use_result_caches()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "results" / "cache" / "inductor")


def assert_unavailable_for_the_loader_crash(out, device, size, batch, precision="fp32"):
    """The build's outcome where torch's AOTInductor loader crashes in a fresh process: the cell is
    'unavailable' with the signal, the note and the reproducer, not an error."""
    with pytest.raises(BackendUnavailable, match=r"killed by SIG\w+.*crashes in a fresh process.*aoti_load_check"):
        make("aotinductor", precision, device, size, batch, out).check_available()


def test_aoti_package_builds_once_and_loads_on_cpu(checkpoint, tmp_path):
    from infbench.backends.aotinductor import build_aoti

    out = tmp_path / "results/digits/resnet18/aoti/cpu/fp32/32x1.pt2"
    info = build_aoti(checkpoint, out, "cpu", "fp32", 32, 1)
    assert out.stat().st_size > 0 and not list(out.parent.glob(".*tmp*"))  # written atomically
    x = images(1, 32, seed=1)
    if info.get("kind") == UNAVAILABLE_KIND:  # torch 2.11 on the H100: its loader crashes in a fresh process
        assert_unavailable_for_the_loader_crash(out, "cpu", 32, 1)
        return
    assert info["shape"] == [1, 3, 32, 32]
    got = run_once(make("aotinductor", "fp32", "cpu", 32, 1, out), x)
    np.testing.assert_allclose(got, reference(checkpoint, x), atol=1e-3, rtol=1e-3)


def test_aoti_missing_or_corrupt_package_names_the_rule(tmp_path):
    backend = make("aotinductor", "fp32", "cpu", 32, 1, tmp_path / "missing.pt2")
    with pytest.raises(FileNotFoundError, match="compile_aoti"):
        backend.load()
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="compile_aoti"):
        make("aotinductor", "fp32", "cpu", 32, 1, bad).load()


# -- TensorRT: unavailable here, with the import error ---------------------------------------------------
@pytest.mark.skipif(HAS_TORCH_TENSORRT, reason="torch_tensorrt is installed here")
def test_torch_tensorrt_reports_unavailable_with_import_error(tmp_path, checkpoint):
    from infbench.backends.tensorrt.torch_tensorrt import build_torch_tensorrt
    from infbench.backends.unavailable import read_unavailable

    out = tmp_path / "fp16" / "224x1.ep"
    stub = build_torch_tensorrt(checkpoint, out, "fp16", 224, 1)
    assert read_unavailable(out) == stub and "torch_tensorrt" in stub["error"]
    backend = make("torch_tensorrt", "fp16", "cuda", 224, 1, out)
    with pytest.raises(BackendUnavailable) as err:
        backend.check_available()
        backend.load()
    message = str(err.value)
    assert ("torch_tensorrt cannot be imported" in message) or ("no CUDA device" in message)
    if HAS_CUDA:
        assert "No module named 'torch_tensorrt'" in message


@pytest.mark.skipif(HAS_TENSORRT, reason="tensorrt is installed here")
def test_onnxruntime_trt_reports_unavailable_with_import_error(tmp_path):
    backend = make("onnxruntime_trt", "fp16", "cuda", 224, 1, tmp_path / "fp32.onnx")
    with pytest.raises(BackendUnavailable, match="TensorRT cannot be imported .*tensorrt"):
        backend.check_available()


def test_onnxruntime_trt_options_pin_the_profile_and_cache_under_results(tmp_path, monkeypatch):
    from infbench.core import integrity

    monkeypatch.chdir(tmp_path)
    onnx = tmp_path / "results/digits/resnet18/onnx/fp16.onnx"
    onnx.parent.mkdir(parents=True)
    onnx.write_bytes(b"model")
    integrity.record(onnx)
    backend = make("onnxruntime_trt", "fp16", "cuda", 224, 8, onnx)
    opts = backend.trt_options("input")
    assert opts["trt_engine_cache_enable"] == "True" and opts["trt_fp16_enable"] == "True"
    assert opts["trt_int8_enable"] == "False"
    digest = integrity.file_digest(onnx)[:16]
    cache = tmp_path / f"results/cache/ort_trt/digits/resnet18/{digest}/fp16/224x8"
    assert opts["trt_engine_cache_path"] == str(cache)
    assert opts["trt_profile_min_shapes"] == opts["trt_profile_max_shapes"] == "input:8x3x224x224"


@pytest.mark.skipif(HAS_TORCH_TENSORRT, reason="torch_tensorrt is installed here")
def test_unavailable_torch_tensorrt_cell_is_a_result_not_a_crash(tmp_path, checkpoint):
    """Through the real child-process path: status 'unavailable' with the reason."""
    from infbench.backends.tensorrt.torch_tensorrt import build_torch_tensorrt
    from infbench.bench.cell import run_cell

    artifact = tmp_path / "224x1.ep"
    build_torch_tensorrt(checkpoint, artifact, "fp16", 224, 1)
    cell = Cell("resnet18", "torch_tensorrt", "fp16", "cuda", 224, 1)
    args = cell_args(artifact, write_reference(tmp_path, checkpoint, 224, 1))
    result = run_cell(cell, args, tmp_path / "out.json", timeout_s=120)
    assert result["status"] == "unavailable", result
    assert json.loads((tmp_path / "out.json").read_text())["status"] == "unavailable"


def write_reference(tmp_path: Path, checkpoint: Path, size: int, images_n: int) -> Path:
    """The reference file a cell reads (rule reference_logits), from a small digits dataset."""
    from infbench.stages import data, reference

    dataset = tmp_path / "digits.npz"
    data.prepare("digits", tmp_path, dataset, 16, 16, 0)
    out = tmp_path / f"reference_{size}.npz"
    reference.write(checkpoint, dataset, size, images_n, out)
    return out


def cell_args(artifact: Path, reference_file: Path, **bench) -> dict:
    """What `infbench bench` hands run_cell, with short phases."""
    return {
        "artifact": str(artifact),
        "reference": str(reference_file),
        "threads": 1,
        "mode": "device",
        "options": {},
        "tolerance": 1.0,
        "repetitions": {"repetitions": 2, "max_extra": 0},
        "energy_window_s": 0.5,
        "interference": {"canary_slowdown": 1.3, "foreign_cores": 0.25},
        "timing": {
            "warmup_s": 0.2,
            "window_s": 0.05,
            "window_iterations": 3,
            "windows": 3,
            "latency_s": 0.1,
            "latency_iterations": 20,
        },
        **bench,
    }


# -- GPU only --------------------------------------------------------------------------------------------
@needs_cuda
@pytest.mark.parametrize("precision", ["fp32", "tf32", "fp16", "bf16"])
def test_torch_cuda_precisions(checkpoint, precision):
    x = images(4, 64)
    got = run_once(make("torch", precision, "cuda", 64, 4, checkpoint, {"channels_last": "true"}), x)
    ref = reference(checkpoint, x)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < (1e-4 if precision == "fp32" else 5e-2)


@needs_cuda
@pytest.mark.parametrize("batch", [2, 32])
def test_torch_cudagraphs_replay_matches_eager_at_every_batch(checkpoint, batch):
    x = images(batch, 64)
    backend = make("torch_cudagraphs", "fp16", "cuda", 64, batch, checkpoint)
    got = run_once(backend, x)
    assert backend.graph is not None
    eager = make("torch", "fp16", "cuda", 64, batch, checkpoint)
    np.testing.assert_allclose(got, run_once(eager, x), atol=1e-2)
    assert eager.graph is None  # the baseline is plain eager, whatever the batch


@needs_cuda
@pytest.mark.parametrize("backend", ["torch", "torch_cudagraphs"])
def test_a_cuda_cell_through_the_protocol(tmp_path, checkpoint, backend):
    """Repetitions in fresh processes on the GPU: window throughput, synchronised latency, the
    launch-bound verdict, device-level memory with the allocator's beside it, and power that is
    energy over the same window."""
    from infbench.bench.cell import run_cell

    cell = Cell("resnet18", backend, "fp16", "cuda", 64, 8)
    args = cell_args(checkpoint, write_reference(tmp_path, checkpoint, 64, 16))
    result = run_cell(cell, args, tmp_path / "out.json", timeout_s=300)
    assert result["status"] in ("ok", "unstable"), result["error"]
    assert result["repetitions"] == 2 and len(result["repetition_runs"]) == 2
    assert result["throughput_img_s"] > 0 and result["throughput_uncertainty_pct"] >= 0
    # batch 8 times latency_s (0.1 s): its p99 only where that came to 100 batches (measure/timing.py)
    assert 0 < result["latency_ms_p50"] <= (result["latency_ms_p99"] or result["latency_ms_p50"])
    assert isinstance(result["launch_bound"], bool) and 0 < result["host_issue_fraction"] <= 1.5
    assert result["memory"]["device_peak_mib"] > 0 and result["memory"]["device_method"] == "nvml device used delta"
    assert result["memory"]["allocator_peak_mib"] > 0
    n = result["nvml"]
    assert n["window_s"] >= 0.5 and n["energy_mj_per_image"] > 0
    assert n["energy_mj_per_image"] / 1000 * n["window_img_s"] == pytest.approx(n["power_w"], rel=0.02)
    assert result["agreement"]["top1_agreement"] >= 0.9
    shown = ("throughput_img_s", "latency_ms_p50", "launch_bound", "host_issue_fraction")
    print(backend, {k: result[k] for k in shown})


@needs_cuda
@pytest.mark.parametrize("name", ["torchscript", "torch_compile", "torch_compile_reduce_overhead"])
def test_compiled_backends_on_cuda(checkpoint, name):
    x = images(2, 64)
    backend = make(name, "fp16", "cuda", 64, 2, checkpoint)
    got = run_once(backend, x)
    again = backend.to_numpy(backend.run(backend.prepare(x)))
    ref = reference(checkpoint, x)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 5e-2
    np.testing.assert_allclose(again, got, atol=1e-2)


@needs_cuda
def test_aoti_on_cuda(checkpoint, tmp_path):
    from infbench.backends.aotinductor import build_aoti

    out = tmp_path / "pkg.pt2"
    info = build_aoti(checkpoint, out, "cuda", "fp16", 64, 2)
    if info.get("kind") == UNAVAILABLE_KIND:  # torch 2.11 on the H100: its loader crashes in a fresh process
        assert_unavailable_for_the_loader_crash(out, "cuda", 64, 2, precision="fp16")
        return
    x = images(2, 64)
    got = run_once(make("aotinductor", "fp16", "cuda", 64, 2, out), x)
    ref = reference(checkpoint, x)
    assert np.linalg.norm(got - ref) / np.linalg.norm(ref) < 5e-2


@needs_ort_cuda
def test_onnxruntime_cuda_io_binding_keeps_data_on_the_device(checkpoint, tmp_path):
    from infbench.stages.model import load_checkpoint

    onnx_path = tmp_path / "fp32.onnx"
    torch.onnx.export(
        load_checkpoint(checkpoint),
        (torch.randn(1, 3, 64, 64),),
        str(onnx_path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    backend = make("onnxruntime", "fp32", "cuda", 64, 2, onnx_path)
    backend.check_available()
    backend.load()
    assert backend.session.get_providers()[0] == "CUDAExecutionProvider"
    # fp32 means FP32 math: the CUDA EP's TF32 default is switched off (tf32 cells switch it on).
    assert backend.session.get_provider_options()["CUDAExecutionProvider"]["use_tf32"] == "0"
    x = images(2, 64)
    binding = backend.prepare(x)
    out = backend.run(binding)
    assert out.device_name().lower() == "cuda"  # the output stays on the device until to_numpy
    np.testing.assert_allclose(backend.to_numpy(out), reference(checkpoint, x), atol=1e-3, rtol=1e-3)


@needs_cuda
@pytest.mark.parametrize("tolerance, runs", [(1.0, 2), (1e-6, 3)])
def test_a_gpu_cell_stops_after_two_repetitions_only_where_they_agree_well_inside_the_tolerance(
    tmp_path, checkpoint, tolerance, runs
):
    """measure/early_stop.py on the GPU: of 3 planned repetitions, two that agree within 40% of a wide
    tolerance are enough; under a tolerance no two processes meet, the third runs."""
    from infbench.bench.cell import run_cell

    cell = Cell("resnet18", "torch_cudagraphs", "fp16", "cuda", 64, 8)
    args = cell_args(
        checkpoint,
        write_reference(tmp_path, checkpoint, 64, 16),
        tolerance=tolerance,
        repetitions={"repetitions": 3, "max_extra": 0},
    )
    result = run_cell(cell, args, tmp_path / "out.json", timeout_s=300)
    assert len(result["repetition_runs"]) == runs, result["error"]
    assert result["stopped_early"] is (runs == 2) and result["planned_repetitions"] == runs
