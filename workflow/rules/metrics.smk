# FLOPs per image (once per model and image size) and the hardware probe (once per device):
# what each cell's achieved FLOP/s, utilisation and arithmetic intensity are computed from.


# Devices that have cells: their probes feed the cells and the report's roofline.
PROBED_DEVICES = sorted({c.device for c in CELLS})


rule flops:
    input:
        CHECKPOINT,
    output:
        f"{STUDY}/flops/{{size}}.json",
    log:
        f"{STUDY}/logs/flops/{{size}}.log",
    priority: BUILD_PRIORITY
    conda:
        CORE_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        code=grid.stage_code_hash("measure.flops"),
    shell:
        "infbench flops --checkpoint {input:q} --size {wildcards.size} --out {output:q} > {log} 2>&1"


rule reference_logits:
    input:
        checkpoint=CHECKPOINT,
        dataset=DATASET,
    output:
        f"{STUDY}/reference/{{size}}.npz",
    log:
        f"{STUDY}/logs/reference/{{size}}.log",
    priority: BUILD_PRIORITY
    conda:
        CORE_ENV
    threads: 1
    resources:
        mem_mb=4000,
        runtime=10,
    params:
        # independent of the batch sizes: a cell's batch cycles through them (reference.cycled)
        images=config["bench"]["agreement_images"],
        code=grid.stage_code_hash("stages.reference"),
    shell:
        "infbench reference --checkpoint {input.checkpoint:q} --dataset {input.dataset:q} --size {wildcards.size}"
        " --images {params.images:q} --out {output:q} > {log} 2>&1"


rule probe:
    output:
        "results/probe/{device}.json",
    log:
        "results/logs/probe/{device}.log",
    priority: BUILD_PRIORITY
    conda:
        device_env
    # Like a cell: every core on the CPU, the whole GPU on CUDA, so nothing else disturbs it.
    threads: cell_threads
    resources:
        gpu=cell_gpus,
        mem_mb=4000,
        runtime=15,
    params:
        probe=config["probe"],
        cpu_threads=config["bench"]["cpu_threads"],
        code=grid.stage_code_hash("measure.probe"),
    shell:
        "infbench probe --device {wildcards.device} --threads {params.cpu_threads:q} --budget {params.probe[budget_s]:q}"
        " --matmul-n {params.probe[matmul_n]:q} --copy-mib {params.probe[copy_mib]:q} --out {output:q} > {log} 2>&1"
