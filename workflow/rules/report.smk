rule aggregate:
    input:
        cells=[grid.result_path(c, config["dataset"]) for c in CELLS],
        metrics=TRAIN_METRICS,
        accuracy=ACCURACY,
        probes=expand("results/probe/{device}.json", device=PROBED_DEVICES),
    output:
        parquet=f"{REPORT_DIR}/summary.parquet",
        csv=report(
            f"{REPORT_DIR}/summary.csv",
            caption="../report/summary.rst",
            category="Summary",
        ),
        meta=f"{REPORT_DIR}/meta.json",
    log:
        f"{STUDY_DIR}/logs/aggregate.log",
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
        " {params.compare} --out-dir {REPORT_DIR} > {log} 2>&1"


# The HTML report, the charts and summary.md (the `report` target in the Snakefile asks for them).
rule render_report:
    input:
        summary=rules.aggregate.output.parquet,
        meta=rules.aggregate.output.meta,
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
        f"{STUDY_DIR}/logs/report.log",
    conda:
        CORE_ENV
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    params:
        code=grid.code_hash("report"),
    shell:
        "infbench report --summary {input.summary:q} --meta {input.meta:q} --out-dir {REPORT_DIR} > {log} 2>&1"


# Every file this run plans, from the dataset to the report: the `report` target asks for all of
# them, so that one deleted (or removed as damaged below) is rebuilt with what depends on it.
# (Snakemake rebuilds a missing file only when a target asks for it: a report built from it is
# otherwise "up to date".)
def planned_files():
    files = {
        DATASET,
        CHECKPOINT,
        TRAIN_METRICS,
        *ACCURACY,
        *rules.aggregate.input.probes,
    }
    for cell in CELLS:
        files |= {
            grid.result_path(cell, config["dataset"]),
            grid.artifact_path(cell, config["dataset"]),
        }
        files.add(f"{STUDY_DIR}/flops/{cell.image_size}.json")
    for c in {(c.model, c.backend, c.precision, c.device) for c in CELLS}:
        files.add(eval_artifact(*c, config))
    if any(
        "/onnx/" in f for f in files
    ):  # every ONNX variant is made from the fp32 one
        files.add(ONNX_FP32)
    return sorted(files)


PLANNED = planned_files()

# A planned file whose content is no longer what its rule wrote is removed before any job starts,
# so that this run rebuilds it (infbench/integrity.py): no job reads it, no result is made of it.
if workflow.is_main_process:
    for note in integrity.check(PLANNED):
        print(note, file=sys.stderr)
