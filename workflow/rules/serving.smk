# Serving cells (README "Serving"; infbench/serving): LoadGen drives a variant with several requests in
# flight, one cached job per model × backend × precision × device × size × scenario, its repetitions
# each in a fresh process inside the job; LoadGen's logs kept beside the result (<scenario>.loadgen/).
# None unless serving.enabled (config/serving.yaml turns them on).

from infbench.serving import command as serve_command

SERVING_CELLS = grid.serving_cells(config)
SERVING_RESULTS = [
    grid.serving_result_path(cell, scenario, RESULTS)
    for cell, scenario in SERVING_CELLS
]
SERVE_PATH = "{backend}/{precision}/{device}/{size}/{scenario}"


rule serve:
    input:
        artifact=lambda wc: grid.serving_artifact_path(wc, config),
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
        serving=serve_command.rule_args(config["serving"]),
        threads=config["bench"]["cpu_threads"],
        code=lambda wc: grid.stage_code_hash(
            "serving.command", "serving.repetition", grid.backend_module(wc.backend)
        ),
        effective_options=cell_effective_options,
        job_threads=cell_threads,
        versions=lambda wc: grid.backend_versions(wc.backend, wc.precision)
        + ","
        + grid.package_versions("mlcommons-loadgen"),
    shell:
        "infbench serve --model {wildcards.model:q} --backend {wildcards.backend} --precision {wildcards.precision}"
        " --device {wildcards.device} --size {wildcards.size} --scenario {wildcards.scenario}"
        " --artifact {input.artifact:q} --reference {input.reference:q} --threads {params.threads}"
        " {params.serving} {params.options} --logs {output.logs:q} --out {output.result:q} > {log} 2>&1"
