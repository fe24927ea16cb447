# Accuracy of every variant the grid benchmarks: one job per (backend, precision, device), top-1 on
# the whole test split at the training resolution through the backend's own code path, compared
# with PyTorch fp32. A device this machine lacks gives a JSON with status 'unavailable'.
# Plus the expected accuracy of the TensorRT INT8 variants (config accuracy.expected_tensorrt),
# simulated on the CPU before TensorRT exists; the report lists them in the same table.

from infbench.stages import expected_accuracy, model_onnx
from infbench.stages.accuracy import eval_artifact, eval_cell, planned

ACCURACY = planned(CELLS, RESULTS) + expected_accuracy.planned(config)
# report_meta() plus the tolerance the report marks variants against
ACCURACY_REPORT_META = json.dumps(
    {
        **json.loads(report_meta()),
        "tolerance_points": config["accuracy"]["tolerance_points"],
    },
    sort_keys=True,
)


rule accuracy:
    input:
        artifact=lambda wc: eval_artifact(
            wc.model, wc.backend, wc.precision, wc.device, model_config(wc)
        ),
        checkpoint=CHECKPOINT,
        dataset=DATASET,
    output:
        f"{STUDY}/accuracy/{{backend}}/{{precision}}/{{device}}.json",
    log:
        f"{STUDY}/logs/accuracy/{{backend}}/{{precision}}/{{device}}.log",
    conda:
        cell_env
    # Like a cell: every core on the CPU (nothing is measured beside it), one GPU on CUDA.
    threads: cell_threads
    resources:
        gpu=cell_gpus,
        mem_mb=8000,
        runtime=30,
    params:
        tolerance=config["accuracy"]["tolerance_points"],
        image_size=lambda wc: model_config(wc)["train"]["image_size"],
        batch=lambda wc: eval_cell(
            wc.model, wc.backend, wc.precision, wc.device, model_config(wc)
        ).batch_size,
        cpu_threads=config["bench"]["cpu_threads"],
        options=cell_options,
        code=lambda wc: grid.accuracy_code_hash(wc.backend),
        versions=lambda wc: grid.backend_versions(wc.backend, wc.precision),
        effective_options=cell_effective_options,
    shell:
        "infbench accuracy --model {wildcards.model:q} --backend {wildcards.backend} --precision {wildcards.precision}"
        " --device {wildcards.device} --artifact {input.artifact:q} --checkpoint {input.checkpoint:q}"
        " --dataset {input.dataset:q} --image-size {params.image_size:q} --batch {params.batch:q}"
        " --threads {params.cpu_threads:q} --tolerance-points {params.tolerance:q} {params.options}"
        " --out {output:q} > {log} 2>&1"


rule expected_accuracy_tensorrt:
    input:
        # onnxruntime_trt: the Q/DQ ONNX its int8 cells read; torch_tensorrt quantises the checkpoint
        artifact=lambda wc: (
            f"{grid.study_dir(RESULTS, wc.model)}/onnx/int8_trt.onnx"
            if wc.backend == "onnxruntime_trt"
            else []
        ),
        checkpoint=CHECKPOINT,
        dataset=DATASET,
    output:
        f"{STUDY}/accuracy/expected_tensorrt/{{backend}}.json",
    log:
        f"{STUDY}/logs/accuracy/expected_tensorrt/{{backend}}.log",
    wildcard_constraints:
        backend="onnxruntime_trt|torch_tensorrt",
    conda:
        CORE_ENV
    # Runs on the CPU like a CPU cell: every core, nothing measured beside it.
    threads: all_cores()
    resources:
        mem_mb=8000,
        runtime=30,
    params:
        artifact=lambda wc, input: (
            f"--artifact {shlex.quote(input.artifact)}"
            if wc.backend == "onnxruntime_trt"
            else ""
        ),
        tolerance=config["accuracy"]["tolerance_points"],
        image_size=lambda wc: model_config(wc)["train"]["image_size"],
        batch=lambda wc: model_onnx.eval_batch(
            model_config(wc), config["accuracy"]["batch_size"]
        ),
        calib=config["compile"].get("trt_calib_images", 128),
        cpu_threads=config["bench"]["cpu_threads"],
        code=grid.stage_code_hash("stages.expected_accuracy"),
        versions=lambda wc: grid.package_versions(
            "onnxruntime", "torch", "nvidia-modelopt"
        ),
    shell:
        "infbench expected-accuracy --backend {wildcards.backend} --model {wildcards.model:q} {params.artifact}"
        " --checkpoint {input.checkpoint:q} --dataset {input.dataset:q} --image-size {params.image_size:q}"
        " --batch {params.batch:q} --calib-images {params.calib:q} --threads {params.cpu_threads:q}"
        " --tolerance-points {params.tolerance:q} --out {output:q} > {log} 2>&1"
