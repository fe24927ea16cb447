"""INT8 for TensorRT, made and scored before TensorRT is installed.

TensorRT 11 builds strongly typed networks only: INT8 comes from explicit quantize/dequantize (Q/DQ)
nodes in the model, never from a builder flag and a calibrator. Both TensorRT INT8 variants are
therefore made without TensorRT:

- Torch-TensorRT: NVIDIA Model Optimizer's PyTorch quantisation (`mtq.quantize` with
  `INT8_DEFAULT_CFG`: per-channel int8 weights, per-tensor int8 activations, max calibration),
  calibrated on the calibration split (backends/tensorrt/modelopt.py); backends/tensorrt/torch_tensorrt.py
  exports that model and compiles it.
- ONNX Runtime's TensorRT EP: the symmetric Q/DQ ONNX of quantize.py (`int8_trt.onnx`).

Their expected accuracy on TensorRT is measured here on the CPU, like any variant (top-1 on the
test split, agreement with PyTorch fp32): the Model Optimizer model with its fake quantisation (int8
rounding simulated in float), and the Q/DQ ONNX on ONNX Runtime's CPU execution provider. TensorRT
runs the same quantised arithmetic, so a user sees the INT8 cost before owning the GPU; only the
rounding of TensorRT's own kernels can differ.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from infbench.backends.tensorrt.modelopt import modelopt_logits, qdq_logits
from infbench.core.arguments import schema_default
from infbench.stages import accuracy
from infbench.study.grid import model_configs, results_name, study_dir

BACKENDS = ("onnxruntime_trt", "torch_tensorrt")
VARIANT = {
    "onnxruntime_trt": "expected accuracy on TensorRT: symmetric int8 Q/DQ ONNX (int8_trt) on ONNX Runtime, CPU",
    "torch_tensorrt": "expected accuracy on TensorRT: Model Optimizer int8 (fake-quantised PyTorch), CPU",
}


def expected_path(dataset: str, model: str, backend: str) -> str:
    return f"{study_dir(dataset, model)}/accuracy/expected_tensorrt/{backend}.json"


def planned(config: dict) -> list[str]:
    """The expected-accuracy results the config asks for (accuracy.expected_tensorrt)."""
    backends = config.get("accuracy", {}).get("expected_tensorrt", [])
    return [
        expected_path(results_name(config), m, b)
        for m, one in model_configs(config).items()
        for b in backends
        if not (b == "torch_tensorrt" and one["model"].get("onnx"))  # it quantises the PyTorch model
    ]


def evaluate_expected(
    backend: str,
    model: str,
    artifact: Path | None,
    checkpoint: Path,
    dataset: Path,
    image_size: int,
    batch: int,
    calib_images: int,
    threads: int,
    tolerance_points: float,
) -> dict:
    """An accuracy record (the fields of accuracy.evaluate) of a TensorRT INT8 variant simulated on the
    CPU; device 'cpu' is where it was computed, `variant` says what it stands for."""
    if backend not in BACKENDS:
        raise ValueError(f"no expected TensorRT accuracy for backend '{backend}' (choose from {', '.join(BACKENDS)})")
    fields = {"expected_on": "tensorrt", "image_size": image_size, "tolerance_points": tolerance_points}
    result = accuracy.record(VARIANT[backend], model, backend, "int8", "cpu", artifact, **fields)

    def logits_of(x: np.ndarray) -> np.ndarray:
        import torch

        torch.set_num_threads(threads)
        if backend == "torch_tensorrt":
            return modelopt_logits(checkpoint, dataset, image_size, calib_images, x, batch)
        if artifact is None:
            raise ValueError("onnxruntime_trt needs --artifact (the Q/DQ ONNX int8_trt.onnx)")
        return qdq_logits(model, artifact, x, batch, threads)

    return accuracy.score(result, logits_of, checkpoint, dataset, image_size, tolerance_points)


def add_parser(sub) -> None:
    """`infbench expected-accuracy`."""
    help = "a TensorRT INT8 variant's accuracy simulated on the CPU (before TensorRT exists)"
    s = sub.add_parser("expected-accuracy", help=help)
    accuracy.add_arguments(s)
    s.add_argument("--backend", required=True, choices=BACKENDS)
    s.add_argument("--artifact", type=Path, default=None, help="onnxruntime_trt: the Q/DQ ONNX (int8_trt.onnx)")
    s.add_argument(
        "--calib-images",
        type=int,
        default=schema_default("compile.trt_calib_images"),
        help="torch_tensorrt: Model Optimizer calibration images",
    )
    s.set_defaults(func=lambda a: accuracy.run_stage(evaluate_expected, a))
