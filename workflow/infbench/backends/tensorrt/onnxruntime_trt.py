"""ONNX Runtime's TensorRT execution provider: the ONNX variants (fp32, fp16, the symmetric INT8 Q/DQ
`int8_trt.onnx`) run through TensorRT engines that the EP builds and caches per study and ONNX content."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from infbench.backends.base import BackendUnavailable, import_or_unavailable
from infbench.backends.onnxruntime import OnnxRuntime
from infbench.core import integrity

# TensorRT engines built by the TensorRT EP are cached here, per study and ONNX content (`engine_cache`).
TRT_CACHE_ROOT = Path("results/cache/ort_trt")


# onnxruntime-gpu's TensorRT EP links one TensorRT major (1.31.1: libnvinfer.so.10, CUDA 13).
ORT_TENSORRT_INSTALL = (
    "pip install onnxruntime-gpu tensorrt-cu13==10.* (the TensorRT major its TensorRT EP links: "
    "libnvinfer.so.10 for onnxruntime-gpu 1.31)"
)


def onnx_digest(path: Path) -> str:
    """The ONNX file's sha256: the one its rule recorded in the sidecar, or the file's own where none is."""
    try:
        return json.loads(integrity.sidecar(path).read_text())["sha256"]
    except (OSError, ValueError, KeyError):
        return integrity.file_digest(path)


class OnnxRuntimeTensorRT(OnnxRuntime):
    """The TensorRT execution provider, its engine built while the session is created (in `load`,
    never in a timed region) and cached under
    results/cache/ort_trt/<dataset>/<model>/<ONNX sha256>/<precision>/<shape>/ (`engine_cache`).

    The precision is in the model: fp32 reads the fp32 ONNX, fp16 the fp16 ONNX, int8 the symmetric
    int8 Q/DQ ONNX (int8_trt.onnx, explicit quantisation). The precision switches are still set,
    because the EP of onnxruntime-gpu 1.31 builds weakly typed TensorRT 10 networks, where a half or
    int8 kernel needs its flag (`trt_fp16_enable`, `trt_int8_enable`). The optimisation profile is
    pinned to the cell's shape (`trt_profile_min/opt/max_shapes`), so no input can trigger a rebuild.
    TF32: the EP has no option for it (its option list has none; ORT issue #21457), so fp32 and int8
    cells set NVIDIA_TF32_OVERRIDE=0, the NVIDIA libraries' own switch, before the session exists.
    """

    def provider_for(self) -> str:
        return "TensorrtExecutionProvider"

    def check_available(self) -> None:
        if self.cell.device != "cuda":
            raise BackendUnavailable("the TensorRT execution provider runs on CUDA only")
        import_or_unavailable("tensorrt", ORT_TENSORRT_INSTALL, "TensorRT")  # the EP loads libnvinfer from it
        super().check_available()

    def engine_cache(self) -> Path:
        """The folder of this cell's engine: per study and ONNX content, then precision and shape. ONNX
        Runtime's own engine id hashes the file's name and tensor names, not its weights: a retrained model,
        or the same model name in another study, would otherwise load an engine of other weights."""
        c = self.cell
        study = self.artifact.resolve().parent.parent  # results/<dataset>/<model>/onnx/<variant>.onnx
        digest = onnx_digest(self.artifact)[:16]
        return TRT_CACHE_ROOT / study.parent.name / study.name / digest / c.precision / f"{c.image_size}x{c.batch_size}"

    def artifact_mib(self) -> float | None:
        """The TensorRT engine the cell runs (the cache's engine files), else the ONNX file."""
        engines = sum(f.stat().st_size for f in self.engine_cache().glob("*.engine"))
        return engines / 2**20 if engines else super().artifact_mib()

    def trt_options(self, input_name: str) -> dict:
        c = self.cell
        cache = self.engine_cache()
        cache.mkdir(parents=True, exist_ok=True)
        shape = f"{input_name}:{c.batch_size}x3x{c.image_size}x{c.image_size}"
        return {
            "device_id": "0",
            "trt_engine_cache_enable": "True",
            "trt_engine_cache_path": str(cache.resolve()),
            "trt_timing_cache_enable": "True",
            "trt_fp16_enable": str(c.precision == "fp16"),
            "trt_int8_enable": str(c.precision == "int8"),
            "trt_profile_min_shapes": shape,
            "trt_profile_opt_shapes": shape,
            "trt_profile_max_shapes": shape,
        }

    def load(self) -> None:
        if self.cell.precision in ("fp32", "int8"):  # IEEE fp32 for the float layers; see the class doc
            os.environ["NVIDIA_TF32_OVERRIDE"] = "0"
        super().load()
        # One run at the cell's shape now: the engine exists (built or read from the cache) before
        # anything is timed, whether the EP built it with the session or defers it to the first run.
        self.session.run(None, {self.input_name: np.zeros(self.cell.input_shape, np.float32)})

    def providers(self) -> list:
        import onnx

        input_name = onnx.load(str(self.artifact), load_external_data=False).graph.input[0].name
        trt = {**self.trt_options(input_name), **self.cuda_stream_options()}
        # Nodes TensorRT cannot take fall back to the CUDA EP (reported in the log, not hidden).
        return [(self.provider, trt), ("CUDAExecutionProvider", self.cuda_ep_options())]
