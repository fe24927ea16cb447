"""Snakemake logger plugin `infbench`: a short, informative terminal while infbench runs.

The default profile turns it on (`logger: [infbench]`). Instead of Snakemake's block per job and its shell
command, a run prints one line per finished job (a benchmark cell's line carries its result), the share of
the run done with the time left, and at the end the headline findings and where the report is (the lines
come from `infbench.flow.progress`). Warnings, errors and Snakemake's own summaries (the dry run's job table,
"Nothing to be done") pass through as Snakemake prints them.

`snakemake -p …` (print shell commands) or `--verbose` brings Snakemake's full output back unchanged.
Colour only on a terminal and without --nocolor: CI and SLURM logs get plain text.
"""

from __future__ import annotations

import logging
import sys
import time

from snakemake_interface_logger_plugins.base import LogHandlerBase
from snakemake_interface_logger_plugins.common import LogEvent

# Snakemake's messages that say nothing a user acts on during a normal run (kept with -p / --verbose).
NOISE = (
    "Building DAG of jobs",
    "Using shell:",
    "Provided cores",
    "Provided resources",
    "Rules claiming more threads",
    "Select jobs to execute",
    "Execute ",
    "Assuming unrestricted shared filesystem",
    "host:",
    "Complete log(s):",
    "Conda environments: ignored",
    "Singularity containers: ignored",
    "Elapsed time:",
    "Finished jobid:",
)
NOTHING_TO_DO = "Nothing to be done"


class LogHandler(LogHandlerBase):
    def __post_init__(self) -> None:
        from snakemake.logging import DefaultFilter, DefaultFormatter

        s = self.common_settings
        self.stream = sys.stdout if s.stdout else sys.stderr
        self.color = not s.nocolor and self.stream.isatty()
        # Snakemake's own filter and formatter: they decide what passes through, and how it looks.
        self.snakemake_filter = DefaultFilter(s.quiet, s.debug_dag, s.verbose, s.dryrun, s.printshellcmds)
        self.formatter_ = DefaultFormatter(s.quiet, s.show_failed_logs)
        self.full = bool(s.printshellcmds or s.verbose)
        self.silent = any(str(q).lower().endswith("all") for q in (s.quiet or ()))  # --quiet all
        self.progress = None
        self.outputs: dict[int, list[str]] = {}
        self.report_built = False
        self.closed = False
        self.last_table = None

    # What LogHandlerBase asks of a plugin (abstract properties there, plain answers here): it writes
    # to the terminal, filters and formats itself, and needs no rule graph.
    writes_to_stream = True
    writes_to_file = False
    has_filter = True
    has_formatter = True
    needs_rulegraph = False

    def write(self, text: str) -> None:
        if text:
            print(text, file=self.stream, flush=True)

    def snakemake_text(self, record: logging.LogRecord) -> str:
        if not self.snakemake_filter.filter(record):
            return ""
        return self.formatter_.format(record)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            if self.silent and record.levelno < logging.WARNING:
                return
            if self.full or self.common_settings.dryrun:
                self.emit_full(record)
            else:
                self.emit_short(record)
        except Exception:  # a line this handler cannot write must never stop the run
            self.handleError(record)

    def emit_full(self, record: logging.LogRecord) -> None:
        """Snakemake's output as it would be without this plugin; a dry run without -p leaves out the block
        of every job (its table of jobs per rule and the reasons stay)."""
        text = self.snakemake_text(record)
        if not self.full:
            event = getattr(record, "event", None)
            if event in (LogEvent.JOB_INFO, LogEvent.SHELLCMD, LogEvent.WORKFLOW_STARTED):
                return
            if event is None and text.lstrip().startswith(NOISE):
                return
            text = text.replace("(check individual jobs above for details)", "(-p lists every job with its reason)")
            if event == LogEvent.RUN_INFO:  # a dry run logs its table of jobs before and after planning: once
                if text == self.last_table:
                    return
                self.last_table = text
        self.write(text)

    def emit_short(self, record: logging.LogRecord) -> None:
        from infbench.flow import progress

        event = getattr(record, "event", None)
        if event == LogEvent.RUN_INFO:
            stats = getattr(record, "stats", {}) or {}
            self.progress = progress.Progress(stats)
            jobs = ", ".join(f"{n} {rule}" for rule, n in stats.items() if rule != "total")
            self.write(f"{stats.get('total', 0)} jobs to run: {jobs}")
        elif event == LogEvent.JOB_INFO:
            if self.progress is not None:
                self.progress.start(record.jobid, record.rule_name, time.monotonic())
                self.outputs[record.jobid] = list(getattr(record, "output", []) or [])
        elif event == LogEvent.JOB_FINISHED:
            self.job_finished(record.job_id)
        elif event == LogEvent.PROGRESS:
            if record.done >= record.total and self.report_built and not self.closed and self.progress:
                self.closed = True
                self.write("\n".join(progress.closing(elapsed=time.monotonic() - self.progress.started_at)))
        elif event in (LogEvent.JOB_ERROR, LogEvent.GROUP_ERROR, LogEvent.ERROR) or record.levelno >= logging.WARNING:
            self.write(self.snakemake_text(record))
        elif event is None and record.levelno >= logging.INFO:
            text = self.snakemake_text(record)
            if text and not text.lstrip().startswith(NOISE):
                self.write(text)
                if text.startswith(NOTHING_TO_DO):
                    self.write("\n".join(progress.closing()[1:]))

    def job_finished(self, jobid: int) -> None:
        from infbench.flow import progress

        if self.progress is None:
            return
        finished = self.progress.finish(jobid, time.monotonic())
        if finished is None:
            return
        rule, took = finished
        outputs = self.outputs.pop(jobid, [])
        if progress.is_rule(rule, progress.BENCH_RULE) and outputs:
            line = f"{self.progress.cell_counter()} {progress.cell_line(outputs[0], self.color)}"
        elif progress.is_rule(rule, progress.REPETITION_RULE) and outputs:
            line = f"{'':{len(self.progress.cell_counter())}} {progress.repetition_line(outputs[0])}"
        else:
            line = f"{'':{len(self.progress.cell_counter())}} {rule} done in {progress.duration(took)}"
        if progress.is_rule(rule, progress.REPORT_RULE):
            self.report_built = True
        self.write(f"{line}  · {self.progress.figure()}")
