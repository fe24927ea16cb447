# Serving cells (README "Serving"; infbench/serving): LoadGen drives a variant with several requests in
# flight, one cached job per model × backend × precision × device × size × scenario, its repetitions
# each in a fresh process inside the job; LoadGen's logs kept beside the result (<scenario>.loadgen/).
# None unless serving.enabled (config/serving.yaml turns them on).

SERVING_CELLS = grid.serving_cells(config)
SERVING_RESULTS = [
    grid.serving_result_path(cell, scenario, config["dataset"])
    for cell, scenario in SERVING_CELLS
]
SERVE_PATH = "{backend}/{precision}/{device}/{size}/{scenario}"
# The scenario's options (serving.<key> → `infbench serve` flag); a change reruns every serving cell.
SERVE_FLAGS = {
    "requests_in_flight": "--requests",
    "max_batch": "--max-batch",
    "batch_timeout_ms": "--batch-timeout-ms",
    "duration_s": "--duration",
    "min_queries": "--min-queries",
    "warmup_s": "--warmup",
    "latency_bound_ms": "--bound-ms",
    "server_steps": "--server-steps",
    "repetitions": "--repetitions",
    "timeout_s": "--timeout",
}


def serving_artifact(wildcards):
    """What the serving cell loads: its backend's artifact at serving.max_batch (a shape-pinned one is
    built for that batch)."""
    cell = grid.Cell(
        wildcards.model,
        wildcards.backend,
        wildcards.precision,
        wildcards.device,
        int(wildcards.size),
        config["serving"]["max_batch"],
    )
    return grid.artifact_path(cell, config["dataset"])


def serving_args(wildcards):
    s = config["serving"]
    return " ".join(f"{flag} {s[key]}" for key, flag in SERVE_FLAGS.items())


rule serve:
    input:
        artifact=serving_artifact,
        reference=f"{STUDY}/reference/{{size}}.npz",
    output:
        result=f"{STUDY}/serving/{SERVE_PATH}.json",
        logs=directory(f"{STUDY}/serving/{SERVE_PATH}.loadgen"),
    log:
        f"{STUDY}/logs/serving/{SERVE_PATH}.log",
    wildcard_constraints:
        scenario="Offline|Server|SingleStream",
    conda:
        cell_env
    threads: cell_threads
    resources:
        gpu=cell_gpus,
        mem_mb=8000,
        runtime=lambda wc: int(
            config["serving"]["repetitions"] * config["serving"]["timeout_s"] / 60
        )
        + 5,
    params:
        options=cell_options,
        serving=serving_args,
        threads=config["bench"]["cpu_threads"],
        code=lambda wc: grid.stage_code_hash(
            "serving.command", "serving.repetition", grid.backend_module(wc.backend)
        ),
        versions=lambda wc: grid.backend_versions(wc.backend)
        + ","
        + grid.package_versions("mlcommons-loadgen"),
    shell:
        "infbench serve --model {wildcards.model:q} --backend {wildcards.backend} --precision {wildcards.precision}"
        " --device {wildcards.device} --size {wildcards.size} --scenario {wildcards.scenario}"
        " --artifact {input.artifact:q} --reference {input.reference:q} --threads {params.threads}"
        " {params.serving} {params.options} --logs {output.logs:q} --out {output.result:q} > {log} 2>&1"
