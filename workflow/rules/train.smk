rule train:
    input:
        dataset=DATASET,
        source=train_source,
    output:
        checkpoint=CHECKPOINT,
        metrics=TRAIN_METRICS,
    log:
        f"{STUDY}/logs/train.log",
    wildcard_constraints:
        model=models_pattern(TORCH_MODELS),
    priority: BUILD_PRIORITY
    conda:
        CORE_ENV
    threads: all_cores
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        model=lambda wc: model_config(wc)["model"]["name"],
        start=train_args,
        hp=lambda wc: model_config(wc)["train"],
        stem=lambda wc: model_config(wc)["model"]["stem"],
        norm=train_norm_args,
        dataset_name=config["dataset"],
        code=grid.stage_code_hash("stages.train"),
    shell:
        "infbench train --dataset {input.dataset:q} --checkpoint {output.checkpoint:q} --metrics {output.metrics:q}"
        " --model {params.model:q} --stem {params.stem:q} {params.start} --epochs {params.hp[epochs]:q}"
        " --batch-size {params.hp[batch_size]:q} --optimizer {params.hp[optimizer]:q} --lr {params.hp[lr]:q} --weight-decay {params.hp[weight_decay]:q}"
        " --seed {params.hp[seed]:q} --image-size {params.hp[image_size]:q} {params.norm}"
        " --dataset-name {params.dataset_name:q} > {log} 2>&1"
