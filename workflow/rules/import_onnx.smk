# A user's ONNX file (model: {onnx: path}) takes the place of train and export_onnx: its study's
# fp32.onnx (the graph behind a float32 NCHW input, the normalisation in its metadata) and a checkpoint
# holding its facts alone (infbench/stages/model_onnx.py). The study's folder is named by the file's
# content hash, so a changed file is a new study; the file itself is no input (a copy or touch reruns nothing).


from infbench.stages import model_onnx


rule import_onnx:
    input:
        dataset=DATASET,
    output:
        onnx=ONNX_FP32,
        checkpoint=CHECKPOINT,
        metrics=TRAIN_METRICS,
    log:
        f"{STUDY}/logs/import_onnx.log",
    wildcard_constraints:
        model=models_pattern(ONNX_MODELS),
    priority: BUILD_PRIORITY
    conda:
        CORE_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    params:
        args=lambda wc: model_onnx.cli_args(model_config(wc)["model"]),
        image_size=lambda wc: model_config(wc)["train"]["image_size"],
        code=grid.stage_code_hash("stages.model_onnx"),
    shell:
        "infbench import-onnx {params.args} --dataset {input.dataset:q} --out {output.onnx:q}"
        " --checkpoint {output.checkpoint:q} --metrics {output.metrics:q} --image-size {params.image_size}"
        " > {log} 2>&1"
