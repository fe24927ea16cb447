# NNCF's INT8 models for the openvino backend (its other precisions read the ONNX files of export.smk and
# quantize.smk): openvino/int8_nncf.xml (post-training quantisation) and openvino/int8_nncf_ac.xml
# (accuracy-controlled, max drop accuracy.tolerance_points), each with its .bin (weights) and a .json
# saying how it was made and, for the accuracy-controlled one, whether the tolerance was met.

from infbench.backends import openvino_nncf
from infbench.backends.registry import OPENVINO_NNCF_STEM


rule quantize_nncf:
    input:
        onnx=ONNX_FP32,
        dataset=DATASET,
    output:
        xml=f"{STUDY}/{OPENVINO_NNCF_STEM}.xml",
        bin=f"{STUDY}/{OPENVINO_NNCF_STEM}.bin",
        info=f"{STUDY}/{OPENVINO_NNCF_STEM}.json",
    log:
        f"{STUDY}/logs/quantize/openvino_{{nncf}}.log",
    wildcard_constraints:
        nncf="int8_nncf|int8_nncf_ac",
    priority: BUILD_PRIORITY
    conda:
        CORE_ENV
    # Calibration (and accuracy control's validation) runs the model: every core, nothing measured beside it.
    threads: all_cores
    resources:
        mem_mb=8000,
        runtime=60,
    params:
        args=lambda wc: openvino_nncf.cli_args(wc.nncf, model_config(wc), DATASET),
        code=grid.stage_code_hash("backends.openvino_nncf"),
        versions=grid.package_versions("openvino", "nncf"),
    shell:
        "infbench quantize-nncf --onnx {input.onnx:q} --out {output.xml:q} {params.args} > {log} 2>&1"
