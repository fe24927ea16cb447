rule bench_cell:
    input:
        artifact=cell_artifact,
        checkpoint=CHECKPOINT,
        dataset=DATASET,
        flops=f"{STUDY}/flops/{{size}}.json",
        probe="results/probe/{device}.json",
    output:
        f"{STUDY}/bench/{{backend}}/{{precision}}/{{device}}/{{size}}x{{batch}}.json",
    log:
        f"{STUDY}/logs/bench/{{backend}}/{{precision}}/{{device}}/{{size}}x{{batch}}.log",
    conda:
        cell_env
    threads: cell_threads
    resources:
        gpu=cell_gpus,
        mem_mb=8000,
        runtime=lambda wc: int(config["bench"]["timeout_s"] / 60) + 5,
    params:
        bench=config["bench"],
        options=cell_options,
        # A backend's code or installed version changing reruns that backend's cells only.
        code=lambda wc: grid.backend_code_hash(wc.backend),
        versions=lambda wc: grid.backend_versions(wc.backend),
    shell:
        "infbench bench --model {wildcards.model} --backend {wildcards.backend} --precision {wildcards.precision}"
        " --device {wildcards.device} --size {wildcards.size} --batch {wildcards.batch}"
        " --artifact {input.artifact:q} --checkpoint {input.checkpoint:q} --dataset {input.dataset:q}"
        " --out {output:q} --flops {input.flops:q} --probe {input.probe:q} --threads {params.bench[cpu_threads]} --timeout {params.bench[timeout_s]} --mode {params.bench[mode]}"
        " --tolerance {params.bench[tolerance]} --time-budget {params.bench[time_budget_s]}"
        " --warmup-budget {params.bench[warmup_budget_s]} --agreement-images {params.bench[agreement_images]} {params.options}"
        " > {log} 2>&1"
