"""What a user sees in the terminal: the default profile's short output (the infbench logger plugin), through
real Snakemake runs on the tiny config. Output is captured (not a terminal), so it must be plain text."""

from __future__ import annotations

import re

from conftest import snakemake

# A stable cell's ± or, where its repetitions disagreed by more than a ± says (a busy machine), their range.
SPREAD = r"(±[\d.]+%|\(range [\d,.]+–[\d,.]+\))"
CELL_LINE = re.compile(r"^\[[ \d]+/2\] resnet18 (torch|onnxruntime) fp32 cpu 32×4 +[\d,.]+ img/s " + SPREAD)


def test_a_run_prints_one_line_per_job_then_the_findings_and_the_report(reported_run, report_again):
    """What the default study's `snakemake report` (conftest's `reported_run`) printed, then a second run's."""
    workdir, out = reported_run
    lines = out.splitlines()
    text = "\n".join(lines)
    assert "\033[" not in text, "colour codes in captured output"
    assert "Shell command" not in text and "rule bench_cell" not in text and "infbench bench" not in text
    cells = [line for line in lines if CELL_LINE.match(line)]
    assert len(cells) == 2, text
    baseline = next(line for line in cells if "] resnet18 torch" in line)
    assert "  baseline" in baseline.split("·")[0]  # (then "unstable" where its repetitions disagreed)
    # jobs of this run: one line each, with the share done
    jobs = int(re.search(r"^(\d+) jobs to run: ", text, re.MULTILINE).group(1))
    job_line = re.compile(r"^ +\S+ done in |^ +repetition \d+ of resnet18 (torch|onnxruntime) fp32 cpu 32×4: ")
    assert len([line for line in lines if " · " in line and (job_line.match(line) or CELL_LINE.match(line))]) == jobs
    assert lines[-1] == f"Report: {(workdir / 'results/digits/resnet18/report/index.html').resolve()}", text
    assert any(line.startswith("  - Highest throughput: ") for line in lines), text
    # about one line per job: the plan, the job lines, the closing summary and Snakemake's profile notice
    assert len(lines) <= jobs + 12, text

    again, text = report_again
    assert "Nothing to be done" in text and "Plan: 2 cells on cpu; 2 done, 0 to measure" in text
    assert f"Report: {(again / 'results/digits/resnet18/report/index.html').resolve()}" in text


def test_dry_run_keeps_the_plan_and_the_job_table_and_p_brings_every_job_back(workflow_copy):
    dry = snakemake(workflow_copy, "-n", "report")
    text = dry.stdout + dry.stderr
    assert "Plan: 2 cells on cpu; 0 done, 2 to measure, about" in text
    assert re.search(r"^bench_cell +2$", text, re.MULTILINE), text
    assert "This was a dry-run" in text and "rule bench_cell:" not in text

    full = snakemake(workflow_copy, "-n", "-p", "report")
    text = full.stdout + full.stderr
    assert text.count("rule bench_cell:") == 2 and "infbench bench --model resnet18" in text
