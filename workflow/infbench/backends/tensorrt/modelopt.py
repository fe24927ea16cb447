"""TensorRT's INT8 from NVIDIA Model Optimizer: the PyTorch model quantised with Q/DQ (`quantize_module`,
compiled by torch_tensorrt.py) and the expected-accuracy logits of both TensorRT INT8 variants on the CPU
(stages/expected_accuracy.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infbench.backends.base import import_or_unavailable, run_batches
from infbench.backends.onnxruntime import OnnxRuntime
from infbench.core.cell import Cell
from infbench.stages import model
from infbench.stages.quantize import calibration_images

# nvidia-modelopt 0.47 imports huggingface_hub from modelopt.torch without declaring it.
MODELOPT_INSTALL = "pip install nvidia-modelopt huggingface_hub (PyPI; no extras: [onnx] pins an older onnxruntime)"


def import_mtq():
    """modelopt.torch.quantization, or BackendUnavailable naming the import error and the fix."""
    return import_or_unavailable("modelopt.torch.quantization", MODELOPT_INSTALL, "NVIDIA Model Optimizer")


def quantize_module(model, images: np.ndarray, batch: int, device: str, dtype=None):
    """Insert Model Optimizer's INT8 quantisers into `model` (in place) and calibrate their ranges on
    `images` (normalised float32 NCHW), `batch` at a time; returns the model."""
    import torch

    mtq = import_mtq()

    def forward_loop(m):
        with torch.no_grad():
            for i in range(0, len(images), batch):
                m(torch.from_numpy(images[i : i + batch]).to(device, dtype or torch.float32))

    return mtq.quantize(model, mtq.INT8_DEFAULT_CFG, forward_loop=forward_loop)


def modelopt_logits(
    checkpoint: Path, dataset: Path, image_size: int, calib_images: int, x: np.ndarray, batch: int
) -> np.ndarray:
    """Logits of the Model Optimizer INT8 model (calibrated on the calibration split) on the CPU."""
    calibration = calibration_images(dataset, image_size, calib_images, model.input_norm(checkpoint))
    return model.logits(quantize_module(model.load_checkpoint(checkpoint), calibration, batch, "cpu"), x, batch)


def qdq_logits(model: str, artifact: Path, x: np.ndarray, batch: int, threads: int) -> np.ndarray:
    """Logits of the Q/DQ ONNX through the CPU execution provider, the path the onnxruntime cells run."""
    runner = OnnxRuntime(Cell(model, "onnxruntime", "int8", "cpu", x.shape[-1], batch), Path(artifact), threads)
    runner.check_available()
    runner.load()
    return run_batches(runner, x, batch)
