# Accuracy of every variant the grid benchmarks: one job per (backend, precision, device), top-1 on
# the whole test split at the training resolution through the backend's own code path, compared
# with PyTorch fp32. A device this machine lacks gives a JSON with status 'unavailable'.

from infbench.accuracy import eval_artifact, eval_cell, planned

ACCURACY = planned(CELLS, config["dataset"])
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
            wc.model, wc.backend, wc.precision, wc.device, config
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
        image_size=config["train"]["image_size"],
        batch=lambda wc: eval_cell(
            wc.model, wc.backend, wc.precision, wc.device, config
        ).batch_size,
        cpu_threads=config["bench"]["cpu_threads"],
        options=cell_options,
        code=lambda wc: grid.code_hash(
            "accuracy.py",
            "data.py",
            "model.py",
            "backends/base.py",
            f"backends/{BACKENDS[wc.backend].module}.py",
        ),
        versions=lambda wc: grid.backend_versions(wc.backend),
    shell:
        "infbench accuracy --model {wildcards.model} --backend {wildcards.backend} --precision {wildcards.precision}"
        " --device {wildcards.device} --artifact {input.artifact:q} --checkpoint {input.checkpoint:q}"
        " --dataset {input.dataset:q} --image-size {params.image_size} --batch {params.batch}"
        " --threads {params.cpu_threads} --tolerance-points {params.tolerance} {params.options}"
        " --out {output:q} > {log} 2>&1"
