rule bench_cell:
    input:
        artifact=cell_artifact,
        reference=f"{STUDY}/reference/{{size}}.npz",
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
        runtime=lambda wc: int(CELL_RUNS * config["bench"]["timeout_s"] / 60) + 5,
    params:
        bench=config["bench"],
        options=cell_options,
        # A backend's code or installed version changing reruns that backend's cells only.
        code=lambda wc: grid.backend_code_hash(wc.backend),
        versions=lambda wc: grid.backend_versions(wc.backend),
    shell:
        "infbench bench --model {wildcards.model} --backend {wildcards.backend} --precision {wildcards.precision}"
        " --device {wildcards.device} --size {wildcards.size} --batch {wildcards.batch}"
        " --artifact {input.artifact:q} --reference {input.reference:q}"
        " --out {output:q} --flops {input.flops:q} --probe {input.probe:q} --threads {params.bench[cpu_threads]}"
        " --timeout {params.bench[timeout_s]} --mode {params.bench[mode]}"
        " --repetitions {params.bench[repetitions]} --max-extra-repetitions {params.bench[max_extra_repetitions]}"
        " --tolerance {params.bench[tolerance]} --warmup {params.bench[warmup_s]}"
        " --window {params.bench[window_s]} --window-iterations {params.bench[window_iterations]}"
        " --windows {params.bench[windows]} --latency {params.bench[latency_s]}"
        " --latency-iterations {params.bench[latency_iterations]} --energy-window {params.bench[energy_window_s]}"
        " --canary-slowdown {params.bench[canary_slowdown]} --foreign-cores {params.bench[foreign_cores]}"
        " {params.options} > {log} 2>&1"
