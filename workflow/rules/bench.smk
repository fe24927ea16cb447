# A cell is measured in repetitions separated in time (DESIGN.md, "Measuring honestly"): each of
# its first `bench.repetitions` is a job of its own, and a job of round r outranks every job of a
# later round, so all cells' first repetitions run before any second one. The cell's job then
# combines them (measuring more only where they disagree or were disturbed).

# The run's budget for adaptive repetitions, shared by its cell jobs (infbench/measure/budget.py).
BUDGET_LEDGER = "results/extra_budget.json"
# The command of both rules; a repetition's job leaves out the settings that judge repetitions (JUDGE).
MEASURE = (
    "infbench bench --model {wildcards.model:q} --backend {wildcards.backend} --precision {wildcards.precision}"
    " --device {wildcards.device} --size {wildcards.size} --batch {wildcards.batch}"
    " --artifact {input.artifact:q} --reference {input.reference:q}"
    " --flops {input.flops:q} --probe {input.probe:q} --threads {params.bench[cpu_threads]:q}"
    " --timeout {params.bench[timeout_s]:q} --mode {params.bench[mode]:q} --warmup {params.bench[warmup_s]:q}"
    " --window {params.bench[window_s]:q} --window-iterations {params.bench[window_iterations]:q}"
    " --windows {params.bench[windows]:q} --latency {params.bench[latency_s]:q}"
    " --latency-iterations {params.bench[latency_iterations]:q} --energy-window {params.bench[energy_window_s]:q}"
    " {params.options}"
)
JUDGE = "".join(f" {flag} {{params.bench[{key}]:q}}" for key, flag in JUDGING.items())
JUDGE += f" --budget-ledger {BUDGET_LEDGER}"
CELL_INPUT = {
    "artifact": cell_artifact,
    "reference": f"{STUDY}/reference/{{size}}.npz",
    "flops": f"{STUDY}/flops/{{size}}.json",
    "probe": "results/probe/{device}.json",
}
CELL_PATH = "{backend}/{precision}/{device}/{size}x{batch}"
# Both rules' params besides the bench settings and their code (a repetition's: what measures; a cell's: that and
# the judging): a backend's options (defaults included) or installed version
# changing reruns that backend's cells only.
CELL_PARAMS = {
    "options": cell_options,
    "versions": lambda wc: grid.backend_versions(wc.backend, wc.precision),
    # every option acting on the cell's device, defaults included: a changed default reruns its cells
    "effective_options": cell_effective_options,
    # the threads Snakemake gives the job (--cores): with bench.cpu_threads 0 a CPU cell runs that many
    "job_threads": cell_threads,
}


rule bench_repetition:
    input:
        **CELL_INPUT,
    output:
        f"{STUDY}/repetitions/{CELL_PATH}/{{rep}}.json",
    log:
        f"{STUDY}/logs/repetitions/{CELL_PATH}/{{rep}}.log",
    wildcard_constraints:
        rep=r"\d+",
    priority: repetition_priority
    conda:
        cell_env
    threads: cell_threads
    resources:
        gpu=cell_gpus,
        mem_mb=8000,
        runtime=lambda wc: int(config["bench"]["timeout_s"] / 60) + 5,
    params:
        **CELL_PARAMS,
        code=lambda wc: grid.repetition_code_hash(wc.backend),
        bench=repetition_params,
    shell:
        f"{MEASURE} --repetition {{wildcards.rep}} --out {{output:q}} > {{log}} 2>&1"


rule bench_cell:
    input:
        **CELL_INPUT,
        repetitions=cell_repetitions,
    output:
        f"{STUDY}/bench/{CELL_PATH}.json",
    log:
        f"{STUDY}/logs/bench/{CELL_PATH}.log",
    priority: cell_priority
    conda:
        cell_env
    threads: cell_threads
    resources:
        gpu=cell_gpus,
        mem_mb=8000,
        runtime=lambda wc: int(
            (
                config["bench"]["max_extra_repetitions"] * config["bench"]["timeout_s"]
                + config["bench"]["extra_budget_s"]
            )
            / 60
        )
        + 5,
    params:
        **CELL_PARAMS,
        code=lambda wc: grid.backend_code_hash(wc.backend),
        bench=config["bench"],
    shell:
        f"{MEASURE}{JUDGE} --repetition-results {{input.repetitions:q}} --out {{output:q}} > {{log}} 2>&1"
