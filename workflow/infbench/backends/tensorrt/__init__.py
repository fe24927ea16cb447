"""TensorRT, all of it: Torch-TensorRT, ONNX Runtime's TensorRT EP, Model Optimizer's INT8."""
