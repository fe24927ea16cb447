# Accuracy of every variant the grid benchmarks: one job per (backend, precision, device), top-1 on
# the whole test split at the training resolution through the backend's own code path, compared
# with PyTorch fp32. A device this machine lacks gives a JSON with status 'unavailable'.

from infbench.backends.base import Cell

ACCURACY_SIZE = int(config["train"]["image_size"])
# The largest batch of the grid: shape-pinned artifacts (AOTInductor, TensorRT) at the training
# size are then shared with the bench cells where that size is in the grid.
ACCURACY_BATCH = max(int(b) for b in config["grid"]["batch_sizes"])
ACCURACY = sorted(
    {f"results/accuracy/{c.model}/{c.backend}/{c.precision}/{c.device}.json" for c in CELLS}
)


def accuracy_cell(wildcards):
    return Cell(
        wildcards.model,
        wildcards.backend,
        wildcards.precision,
        wildcards.device,
        ACCURACY_SIZE,
        ACCURACY_BATCH,
    )


def accuracy_artifact(wildcards):
    return BACKENDS[wildcards.backend].artifact(accuracy_cell(wildcards)).path


def accuracy_code(wildcards):
    backend_module = BACKENDS[wildcards.backend].module
    return grid.code_hash(
        "accuracy.py", "data.py", "model.py", "backends/base.py", f"backends/{backend_module}.py"
    )


def report_meta_with_accuracy():
    """report_meta() plus the accuracy tolerance the report marks variants against."""
    meta = json.loads(report_meta())
    meta["tolerance_points"] = config["accuracy"]["tolerance_points"]
    return json.dumps(meta, sort_keys=True)


rule accuracy:
    input:
        artifact=accuracy_artifact,
        checkpoint=CHECKPOINT,
        dataset=DATASET,
    output:
        "results/accuracy/{model}/{backend}/{precision}/{device}.json",
    log:
        "results/logs/accuracy/{model}/{backend}/{precision}/{device}.log",
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
        image_size=ACCURACY_SIZE,
        batch=ACCURACY_BATCH,
        cpu_threads=config["bench"]["cpu_threads"],
        options=cell_options,
        code=accuracy_code,
        versions=lambda wc: grid.backend_versions(wc.backend),
    shell:
        "infbench accuracy --model {wildcards.model} --backend {wildcards.backend} --precision {wildcards.precision}"
        " --device {wildcards.device} --artifact {input.artifact:q} --checkpoint {input.checkpoint:q}"
        " --dataset {input.dataset:q} --image-size {params.image_size} --batch {params.batch}"
        " --threads {params.cpu_threads} --tolerance-points {params.tolerance} {params.options}"
        " --out {output:q} > {log} 2>&1"
