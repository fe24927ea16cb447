"""Peak settings as backend options: ONNX Runtime's fixed-shape session (a real CPU session), the CUDA EP's
switches and torch.compile's Inductor settings (what each option turns into; the GPU runs are the H100's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from infbench.backends.onnxruntime import OnnxRuntime
from infbench.backends.torch_compile import TorchCompile, TorchCompileMaxAutotune
from infbench.core.cell import Cell

ONNX = "results/digits/resnet18/onnx/fp32.onnx"


def ort_backend(workdir, options: dict, batch: int = 4, size: int = 32) -> OnnxRuntime:
    cell = Cell("resnet18", "onnxruntime", "fp32", "cpu", size, batch)
    backend = OnnxRuntime(cell, workdir / ONNX, 1, "export_onnx", options)
    backend.check_available()
    backend.load()
    return backend


def test_a_fixed_shape_session_runs_its_shape_and_refuses_another(trained_workflow):
    fixed = ort_backend(trained_workflow, {"fixed_shape": "true"})
    free = ort_backend(trained_workflow, {})
    assert free.session.get_inputs()[0].shape == ["batch", 3, "height", "width"]
    assert fixed.session.get_inputs()[0].shape == [4, 3, 32, 32]
    x = np.random.default_rng(0).standard_normal((4, 3, 32, 32)).astype(np.float32)
    np.testing.assert_allclose(fixed.run(fixed.prepare(x)), free.run(free.prepare(x)), rtol=1e-5, atol=1e-5)
    with pytest.raises(Exception, match="(?i)dimension|shape"):
        fixed.run(fixed.prepare(x[:2]))


def test_cuda_ep_switches_follow_the_options():
    cell = Cell("resnet18", "onnxruntime", "fp16", "cuda", 224, 64)
    set_ = OnnxRuntime(cell, "x.onnx", 1, "", {"enable_cuda_graph": "true", "prefer_nhwc": "true"})
    assert set_.cuda_option_overrides() == {"enable_cuda_graph": "1", "prefer_nhwc": "1"}
    off = OnnxRuntime(cell, "x.onnx", 1, "", {"cudnn_conv_use_max_workspace": "false"})
    assert off.cuda_option_overrides() == {"cudnn_conv_use_max_workspace": "0"}
    assert OnnxRuntime(cell, "x.onnx", 1, "", {}).cuda_option_overrides() == {}  # ONNX Runtime's defaults


def test_inductor_settings_follow_the_options():
    cell = Cell("resnet18", "torch_compile", "fp16", "cuda", 224, 64)
    assert TorchCompile(cell, "c.pt", 1, "", {}).inductor_overrides() == {}  # the mode as it is
    assert TorchCompile(cell, "c.pt", 1, "", {"freezing": "true", "cudagraphs": "true"}).inductor_overrides() == {
        "freezing": True,
        "triton.cudagraphs": True,
    }
    assert TorchCompileMaxAutotune(cell, "c.pt", 1, "", {"cudagraphs": "false"}).inductor_overrides() == {
        "triton.cudagraphs": False
    }


def test_a_frozen_compiled_model_computes_what_eager_does(trained_workflow, monkeypatch, tmp_path):
    """torch.compile with Inductor freezing and channels-last, compiled for real on the CPU."""
    from infbench.backends.torch_eager import TorchEager

    monkeypatch.chdir(tmp_path)  # the compile caches go under ./results/cache
    checkpoint = trained_workflow / "results/digits/resnet18/checkpoint.pt"
    cell = Cell("resnet18", "torch_compile", "fp32", "cpu", 32, 4)
    frozen = TorchCompile(cell, checkpoint, 2, "train", {"freezing": "true", "channels_last": "true"})
    eager = TorchEager(cell, checkpoint, 2, "train", {})
    for backend in (frozen, eager):
        backend.load()
    assert frozen.inductor_overrides() == {"freezing": True} and frozen.cudagraphs is False
    x = np.random.default_rng(1).standard_normal((4, 3, 32, 32)).astype(np.float32)
    got = frozen.to_numpy(frozen.run(frozen.prepare(x)))
    np.testing.assert_allclose(got, eager.to_numpy(eager.run(eager.prepare(x))), rtol=1e-4, atol=1e-4)


def test_a_warmed_compile_cache_is_hit_by_the_next_process(trained_workflow, tmp_path):
    """benchmarks/warm_compile_cache.py, for real on the CPU: its first process compiles (an FX graph cache
    miss), the next fresh one, started as a measuring process starts, reuses it (a hit); each says so."""
    checkpoint = trained_workflow / "results/digits/resnet18/checkpoint.pt"
    script = Path(__file__).parents[1] / "benchmarks/warm_compile_cache.py"
    cmd = [sys.executable, str(script), "--checkpoint", str(checkpoint), "--backend", "torch_compile"]
    cmd += ["--precision", "fp32", "--device", "cpu", "--option", "channels_last=true"]
    cmd += ["--sizes", "32", "--batches", "4", "--passes", "2"]
    # a fresh shell's environment: no cache folders set (this test process may hold another test's)
    env = {k: v for k, v in os.environ.items() if k not in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR")}
    out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=600, env=env)
    assert out.returncode == 0, out.stderr[-2000:]
    first, second = (line for line in out.stdout.splitlines() if "cpu 32x4:" in line)
    assert first.startswith("pass 1") and "'fxgraph_cache_miss': 1" in first, first
    assert second.startswith("pass 2") and "'fxgraph_cache_hit': 1" in second and "miss" not in second, second
    assert (tmp_path / "results/cache/inductor").is_dir()  # the caches live under the study's results/cache


def test_compiled_backends_point_inductor_at_the_study_caches_before_importing_it(monkeypatch, tmp_path):
    """Importing Inductor writes its default cache folder into the environment: a measuring process imports
    first (prepare_host), so the study's cache folder must be set before that, or it compiles elsewhere."""
    monkeypatch.chdir(tmp_path)
    for var in ("TORCHINDUCTOR_CACHE_DIR", "TRITON_CACHE_DIR"):
        monkeypatch.delenv(var, raising=False)
    backend = TorchCompile(Cell("resnet18", "torch_compile", "fp32", "cpu", 32, 4), "x", 1, "train", {})
    backend.prepare_host()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "results/cache/inductor")
    assert os.environ["TRITON_CACHE_DIR"] == str(tmp_path / "results/cache/triton")
