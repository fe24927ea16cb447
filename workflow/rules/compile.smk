# Ahead-of-time artifacts, one per (device,) precision and shape: a benchmark job loads them and
# never recompiles. AOTInductor needs the device it compiles for; Torch-TensorRT needs a GPU and
# TensorRT (where Torch-TensorRT cannot be imported, its rule writes a stub and the cell reports
# 'unavailable' with the import error and what to install); its .json beside the program records the
# build time and settings. Compiles take every core, so no measurement runs beside one.

from infbench.backends.registry import AOTI_PATH, TORCH_TENSORRT_PATH


rule compile_aoti:
    input:
        checkpoint=CHECKPOINT,
    output:
        f"{STUDY}/{AOTI_PATH}",
    log:
        f"{STUDY}/logs/compile/aoti/{{device}}/{{precision}}/{{size}}x{{batch}}.log",
    priority: BUILD_PRIORITY
    conda:
        device_env
    threads: all_cores
    resources:
        gpu=cell_gpus,
        mem_mb=16000,
        runtime=60,
    params:
        max_autotune=(
            "--max-autotune" if config["compile"].get("aoti_max_autotune") else ""
        ),
        code=grid.stage_code_hash("backends.aotinductor"),
        versions=grid.package_versions("torch", "torchvision", "triton"),
    shell:
        "infbench compile-aoti --checkpoint {input.checkpoint:q} --out {output:q} --device {wildcards.device}"
        " --precision {wildcards.precision} --size {wildcards.size} --batch {wildcards.batch}"
        " {params.max_autotune} --threads {threads} > {log} 2>&1"


rule compile_torch_tensorrt:
    input:
        checkpoint=CHECKPOINT,
        dataset=DATASET,
    output:
        program=f"{STUDY}/{TORCH_TENSORRT_PATH}",
        info=f"{STUDY}/{TORCH_TENSORRT_PATH.removesuffix('.ep')}.json",
    log:
        f"{STUDY}/logs/compile/torch_tensorrt/{{precision}}/{{size}}x{{batch}}.log",
    priority: BUILD_PRIORITY
    conda:
        "../../envs/tensorrt.yaml"
    threads: all_cores
    resources:
        gpu=1,
        mem_mb=16000,
        runtime=60,
    params:
        workspace=config["compile"].get("trt_workspace_gb", 4),
        calib=config["compile"].get("trt_calib_images", 128),
        code=grid.stage_code_hash("backends.tensorrt.torch_tensorrt"),
        versions=grid.package_versions(
            "torch", "torch-tensorrt", "tensorrt", "nvidia-modelopt"
        ),
    shell:
        "infbench compile-torch-tensorrt --checkpoint {input.checkpoint:q} --out {output.program:q} --info {output.info:q}"
        " --precision {wildcards.precision} --size {wildcards.size} --batch {wildcards.batch}"
        " --dataset {input.dataset:q} --calib-images {params.calib:q} --workspace-gb {params.workspace:q} > {log} 2>&1"
