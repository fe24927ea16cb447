# Precision variants of the fp32 ONNX model, cached in the study's folder under onnx/:
# int8_static.onnx (calibrated static INT8, QDQ), int8_trt.onnx (the same calibration as symmetric
# int8 Q/DQ, what TensorRT's explicit quantisation takes), int8_dynamic.onnx (opt-in dynamic INT8)
# and fp16.onnx (float16 compute with float32 inputs/outputs, for the GPU execution providers).
# PyTorch fp16/bf16 are precisions of the torch backends and need no artifact.

from infbench.backends.registry import ONNX_PATH
from infbench.stages import quantize


rule quantize_int8:
    input:
        onnx=ONNX_FP32,
        # the calibration split, for the static model only
        dataset=lambda wc: DATASET if wc.qmode != "dynamic" else [],
    output:
        f"{STUDY}/{ONNX_PATH.format(variant='int8_{qmode}')}",
    log:
        f"{STUDY}/logs/quantize/int8_{{qmode}}.log",
    wildcard_constraints:
        qmode="static|dynamic|trt",
    priority: BUILD_PRIORITY
    conda:
        CORE_ENV
    # Calibration runs the model: it takes every core, so no measurement runs beside it.
    threads: all_cores
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        # only what shapes the variant: calibration settings rebuild the static model, not the dynamic one
        args=lambda wc: quantize.cli_args(
            wc.qmode,
            config["quantize"],
            DATASET,
            model_config(wc)["train"]["image_size"],
        ),
        code=grid.stage_code_hash("stages.quantize"),
        versions=grid.package_versions("onnxruntime", "onnx"),
    shell:
        "infbench quantize-int8 --onnx {input.onnx:q} --out {output:q} {params.args} > {log} 2>&1"


rule convert_fp16:
    input:
        onnx=ONNX_FP32,
    output:
        f"{STUDY}/{ONNX_PATH.format(variant='fp16')}",
    log:
        f"{STUDY}/logs/quantize/fp16.log",
    priority: BUILD_PRIORITY
    conda:
        CORE_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        code=grid.stage_code_hash("stages.quantize"),
        versions=grid.package_versions("onnxruntime", "onnx", "onnxconverter-common"),
    shell:
        "infbench convert-fp16 --onnx {input.onnx:q} --out {output:q} > {log} 2>&1"
