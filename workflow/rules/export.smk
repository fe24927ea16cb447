rule export_onnx:
    input:
        checkpoint=CHECKPOINT,
        dataset=DATASET,
    output:
        ONNX_FP32,
    log:
        f"{STUDY}/logs/export/fp32.log",
    wildcard_constraints:
        model=models_pattern(TORCH_MODELS),
    priority: BUILD_PRIORITY
    conda:
        CORE_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    params:
        export=config["export"],
        image_size=lambda wc: model_config(wc)["train"]["image_size"],
        code=grid.stage_code_hash("stages.export"),
    shell:
        "infbench export-onnx --checkpoint {input.checkpoint:q} --dataset {input.dataset:q} --out {output:q}"
        " --image-size {params.image_size:q} --opset {params.export[opset]:q}"
        " --parity-images {params.export[parity_images]:q} --atol {params.export[atol]:q} > {log} 2>&1"
