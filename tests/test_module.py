"""infbench as other workflows use it: as a Snakemake `module` from a tiny outer workflow, and Snakemake's own
report (`snakemake --report`, no other flag)."""

from __future__ import annotations

import copy
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import polars as pl
import yaml
from conftest import TINY_CONFIG

OUTER_SNAKEFILE = """
configfile: "config.yaml"


module infbench:
    snakefile:
        "infbench/workflow/Snakefile"
    config:
        config


use rule * from infbench as infbench_*


rule everything:
    default_target: True
    input:
        "results/digits/resnet18/report/index.html",
"""


def run(workdir: Path, *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    """The real Snakemake CLI in `workdir`, exactly the arguments given (no --cores added)."""
    package = workdir / "infbench" / "workflow" if (workdir / "infbench").is_dir() else workdir / "workflow"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(package)}
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *args],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def test_infbench_runs_as_a_module_of_another_workflow(trained_workflow, tmp_path):
    outer = tmp_path / "outer"
    # the outer workflow's own folder: its Snakefile and config, infbench beside them (as a git submodule would be)
    shutil.copytree(
        trained_workflow / "workflow", outer / "infbench" / "workflow", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copytree(trained_workflow / "config", outer / "infbench" / "config")
    shutil.copytree(trained_workflow / "envs", outer / "infbench" / "envs")
    # the model trained once per test session: this test measures and reports, it does not train again
    shutil.copytree(trained_workflow / "results", outer / "results", symlinks=True)
    config = copy.deepcopy(TINY_CONFIG)
    config["grid"]["backends"] = {"torch": ["fp32"]}  # one cell
    (outer / "config.yaml").write_text(yaml.safe_dump(config))
    (outer / "Snakefile").write_text(OUTER_SNAKEFILE)

    # the outer workflow has no profile: it asks for infbench's short output itself
    proc = run(outer, "--cores", "2", "--logger", "infbench")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    df = pl.read_parquet(outer / "results/digits/resnet18/report/summary.parquet")
    assert df.select("backend", "precision", "status").rows() == [("torch", "fp32", "ok")]
    assert (outer / "results/digits/resnet18/report/index.html").stat().st_size > 0
    # the module's rules, under the outer workflow's prefix; the cell's line all the same
    text = proc.stdout + proc.stderr
    assert "infbench_bench_cell" in text
    assert re.search(r"^\[1/1\] resnet18 torch fp32 cpu 32×4 +[\d,.]+ img/s", text, re.MULTILINE), text
    assert f"Report: {(outer / 'results/digits/resnet18/report/index.html').resolve()}" in text
    # reading infbench as a module does no work: no plan printed, no run lock taken (its report target does that)
    assert "Plan:" not in text and not (outer / ".snakemake/infbench-run.lock").exists(), text

    again = run(outer, "--cores", "2")
    assert "Nothing to be done" in again.stdout + again.stderr


def test_snakemakes_own_report_needs_no_other_flag(reported_copy):
    proc = run(reported_copy, "--report", "results/report.zip")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with zipfile.ZipFile(reported_copy / "results/report.zip") as z:
        names = z.namelist()
        page = z.read(next(n for n in names if n.endswith("report/report.html"))).decode()
    files = {Path(n).name for n in names}
    assert {"index.html", "summary.csv", "speedup.svg", "throughput_vs_size.svg"} <= files, sorted(files)
    # each under its caption (workflow/report/*.rst) and category
    for words in ("self-contained HTML page", "standalone files, each in SVG", "one row per cell"):
        assert words in page, words
    for category in ("Report", "Plots", "Summary"):
        assert category in page
