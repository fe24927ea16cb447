rule aggregate:
    input:
        cells=[grid.result_path(c) for c in CELLS],
        metrics=TRAIN_METRICS,
        accuracy=ACCURACY,
        probes=expand("results/probe/{device}.json", device=PROBED_DEVICES),
    output:
        parquet="results/report/summary.parquet",
        csv=report(
            "results/report/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
        meta="results/report/meta.json",
    log:
        "results/logs/aggregate.log",
    conda:
        CORE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        meta=ACCURACY_REPORT_META,
        compare=" ".join(
            f"--compare {c['label']}={c['path']}" for c in config["report"]["compare"]
        ),
        code=grid.code_hash("report/aggregate.py"),
    shell:
        "infbench aggregate --results {input.cells:q} --train-metrics {input.metrics:q} --meta {params.meta:q}"
        " --probes {input.probes:q}"
        " --accuracy {input.accuracy:q}"
        " {params.compare} --out-dir results/report > {log} 2>&1"


rule report:
    input:
        summary=rules.aggregate.output.parquet,
        meta=rules.aggregate.output.meta,
    output:
        html=report(
            "results/report/index.html",
            caption="../report/index.rst",
            category="Report",
        ),
        md="results/report/summary.md",
        plots=report(
            directory("results/report/plots"),
            patterns=["{name}.svg"],
            caption="../report/plots.rst",
            category="Plots",
        ),
    log:
        "results/logs/report.log",
    conda:
        CORE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=grid.code_hash("report"),
    shell:
        "infbench report --summary {input.summary:q} --meta {input.meta:q} --out-dir results/report > {log} 2>&1"
