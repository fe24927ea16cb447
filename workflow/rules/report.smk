rule aggregate:
    input:
        cells=[grid.bench_result_path(c, RESULTS) for c in CELLS],
        metrics=expand(TRAIN_METRICS, model=MODELS),
        accuracy=ACCURACY,
        probes=expand("results/probe/{device}.json", device=PROBED_DEVICES),
        compared=compared_results,
    output:
        parquet=f"{REPORT_DIR}/summary.parquet",
        csv=report(
            f"{REPORT_DIR}/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
        meta=f"{REPORT_DIR}/meta.json",
    log:
        f"{REPORT_LOGS}/aggregate.log",
    conda:
        CORE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        meta=ACCURACY_REPORT_META,
        compare=" ".join(
            f"--compare {shlex.quote(c['label'] + '=' + c['path'])}"
            for c in config["report"]["compare"]
        ),
        code=grid.code_hash("report/aggregate.py"),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "infbench aggregate --results {input.cells:q} --train-metrics {input.metrics:q} --meta {params.meta:q}"
        " --probes {input.probes:q}"
        " --accuracy {input.accuracy:q}"
        " {params.compare} --out-dir {params.out_dir:q} > {log} 2>&1"


# The HTML report, the charts and summary.md (the `report` target in the Snakefile asks for them).
rule render_report:
    input:
        summary=rules.aggregate.output.parquet,
        meta=rules.aggregate.output.meta,
        serving=SERVING_RESULTS,
    output:
        html=report(
            f"{REPORT_DIR}/index.html",
            caption="../report/index.rst",
            category="Report",
        ),
        md=f"{REPORT_DIR}/summary.md",
        plots=report(
            directory(f"{REPORT_DIR}/plots"),
            patterns=["{name}.svg"],
            caption="../report/plots.rst",
            category="Plots",
        ),
    log:
        f"{REPORT_LOGS}/report.log",
    conda:
        CORE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=grid.code_hash("report"),
        out_dir=lambda wc, output: os.path.dirname(output[0]),
    shell:
        "infbench report --summary {input.summary:q} --meta {input.meta:q} --serving {input.serving:q}"
        " --out-dir {params.out_dir:q} > {log} 2>&1"


# Every file this run plans (planned_files in common.smk), asked for by the `report` target
# (report_inputs in common.smk).
PLANNED = planned_files()
