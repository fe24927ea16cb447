rule train:
    input:
        DATASET,
    output:
        checkpoint=CHECKPOINT,
        metrics=TRAIN_METRICS,
    log:
        f"{STUDY_DIR}/logs/train.log",
    priority: BUILD_PRIORITY
    conda:
        CORE_ENV
    threads: all_cores
    resources:
        mem_mb=4000,
        runtime=120,
    params:
        arch=MODEL,
        hp=config["train"],
        stem=config["model"]["stem"],
        code=grid.code_hash("train.py", "model.py", "data.py"),
    shell:
        "infbench train --dataset {input:q} --checkpoint {output.checkpoint:q} --metrics {output.metrics:q}"
        " --arch {params.arch} --stem {params.stem} --epochs {params.hp[epochs]} --batch-size {params.hp[batch_size]}"
        " --lr {params.hp[lr]} --weight-decay {params.hp[weight_decay]} --seed {params.hp[seed]}"
        " --image-size {params.hp[image_size]} --threads {threads} > {log} 2>&1"
