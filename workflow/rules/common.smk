import json
import os
import re
import shlex
import sys
import zlib

from infbench.study import devices, grid
from infbench.core import integrity, locks
from infbench.flow import plan
from infbench.backends.registry import BACKENDS, CHECKPOINT_PATH, ONNX_PATH
from infbench.bench.command import JUDGING
from infbench.study.config import check_config
from infbench.stages import model_hf
from snakemake.exceptions import WorkflowError
from snakemake.logging import logger

check_config(config, workflow.basedir)

# Reading this workflow does no work: `snakemake --lint`, --list, Snakemake's own --report and an
# outer workflow's `module infbench` only read the config and plan. What a run does as it starts is
# here, called by report_inputs, the input function of the `report` and `all` targets: Snakemake
# evaluates it when it makes the target's job, the first step of building the run's DAG, before it
# looks at any file or checks its own lock (snakemake/dag.py, DAG.init; workflow.py, execute). So:
# * one run at a time in this folder: a second one stops here, naming the first. The locks a run
#   killed with SIGKILL left behind are cleared before Snakemake would refuse to start, so that
#   `snakemake report` resumes without `--unlock` (infbench/core/locks.py says when a lock is left
#   alone). The lock is held until the process ends, however it ends. A dry run takes none.
# * the plan (cells per device and backend, what is done, the time left), for a run or a dry run.
# * damaged files (infbench/core/integrity.py): a run removes them here, so the DAG Snakemake is about
#   to build sees them missing and rebuilds them, with what uses them, in this run; onstart would
#   be too late (Snakemake runs it once the jobs are chosen). A dry run removes nothing: it names
#   them and forces their rules (as `--forcerun FILE` does), so its job table lists the rebuild.
#   The run forces them too, in case --trust-io-cache gave the DAG a listing from before.
# Any other target (a file, one rule) gets the lock and the plan in onstart, once its jobs are
# chosen: Snakemake has written its own lock files by then, so none is cleared as stale; its
# damaged inputs are met by the job that reads them (infbench/core/integrity.py).
STARTED = []  # start_run has run in this process


def start_run(planned=(), snakemake_locks=locks.SNAKEMAKE_LOCKS):
    if STARTED or not workflow.is_main_process or workflow.executor_plugin is None:
        return  # started, a job's own process, or no run (--report, --summary: a DAG only)
    STARTED.append(True)
    if not workflow.dryrun:
        try:
            for note in locks.acquire(snakemake_locks=snakemake_locks):
                print(note, file=sys.stderr)
        except locks.FolderBusy as busy:
            sys.exit(f"infbench: {busy}")
    for line in plan.lines(config):
        logger.info(line)
    # the DAG's --forcerun files (a set in Snakemake 8 and 9; without it a dry run only names them)
    forced = getattr(workflow.dag, "forcefiles", set())
    for path, note in integrity.check(planned, heal=not workflow.dryrun):
        print(note, file=sys.stderr)
        forced.add(str(path))


def report_inputs(wildcards):
    """The input of the `report` and `all` targets (PLANNED and the report, from report.smk); a run
    of them starts here, its planned files and the report's checked before Snakemake looks at any.
    """
    report_files = [*rules.aggregate.output, *rules.render_report.output[:2]]
    start_run(planned=[*PLANNED, *report_files])
    return [*PLANNED, *rules.aggregate.output, *rules.render_report.output]


# Snakemake's job-rate limiter (--max-jobs-per-timespan, on by default) wakes the scheduler from a
# 1-s timer after every scheduling round, and every finished job starts one more such chain: late in
# a grid the main process re-plans dozens of times a second, CPU time taken from the cell being
# measured (seen on 2 cores: 0.02 of a core early in the default run, 0.1 late, the cells measured
# late 10-20% slower). A local run starts a job every few seconds at most: it needs no limiter.
# (The scheduler exists only once the run starts, hence onstart; a Snakemake without the
# attribute keeps its limiter.)
def drop_local_rate_limiter():
    scheduler = getattr(workflow, "scheduler", None)
    if workflow.local_exec and hasattr(scheduler, "job_rate_limiter"):
        scheduler.job_rate_limiter = None


onstart:
    drop_local_rate_limiter()
    start_run(snakemake_locks=None)


CELLS, DROPPED = grid.expand(config)

# The study's models, each with the config of its own study (model:, or each entry of models:),
# named as folders and wildcards name them (a safe form of the name: timm:<name> holds a colon).
MODEL_CONFIGS = grid.model_configs(config)
MODELS = list(MODEL_CONFIGS)
# A user's ONNX file is imported (rules/import_onnx.smk), every other model trained and exported.
ONNX_MODELS = [m for m, one in MODEL_CONFIGS.items() if one["model"]["onnx"]]
TORCH_MODELS = [m for m in MODELS if m not in ONNX_MODELS]


def models_pattern(models):
    """A wildcard constraint matching exactly `models` (none: a pattern nothing matches)."""
    return "|".join(re.escape(m) for m in models) or "(?!)"


def model_config(wildcards):
    """The config of the job's model (its model: and train: sections; the rest is the run's)."""
    return MODEL_CONFIGS[wildcards.model]


def train_source(wildcards):
    """The user's checkpoint file, or a Hugging Face folder's files, when the model starts from them
    (an input: a new file retrains)."""
    m = model_config(wildcards)["model"]
    if m["name"].startswith("hf:") and not m["checkpoint"]:
        return model_hf.files(m["name"])
    return m["checkpoint"] or []


def train_args(wildcards):
    """Where the model starts from: torchvision weights, the user's checkpoint, or nothing (scratch)."""
    m = model_config(wildcards)["model"]
    if m["weights"]:
        return f"--weights {shlex.quote(m['weights'])}"
    if m["checkpoint"]:
        trust = " --trust-checkpoint" if m["trust_checkpoint"] else ""
        return f"--from-checkpoint {shlex.quote(m['checkpoint'])}{trust}"
    return ""


def train_norm_args(wildcards):
    """--mean/--std where the config gives the model's input normalisation (else the model's own)."""
    m = model_config(wildcards)["model"]
    return " ".join(
        f"--{key} {' '.join(str(float(v)) for v in m[key])}"
        for key in ("mean", "std")
        if m.get(key)
    )


# Everything a model makes lives in its own folder, beside other studies' (STUDY: the rules' pattern,
# the model a wildcard); the report in REPORT_DIR (the model's folder, or several models' common one).
# results/<dataset>: an image folder's names which folder (grid.results_name)
RESULTS = grid.results_name(config)
STUDY = grid.study_dir(RESULTS, "{model}")
DATASET = f"results/{RESULTS}/data.npz"
CHECKPOINT = f"{STUDY}/{CHECKPOINT_PATH}"
TRAIN_METRICS = f"{STUDY}/train_metrics.json"
ONNX_FP32 = f"{STUDY}/{ONNX_PATH.format(variant='fp32')}"
REPORT_DIR = grid.report_dir(config)
REPORT_LOGS = f"{os.path.dirname(REPORT_DIR)}/logs"


wildcard_constraints:
    model="|".join(re.escape(m) for m in MODELS),
    backend="|".join(BACKENDS),
    precision="[a-z0-9_]+",
    device="cpu|cuda",
    size=r"\d+",
    batch=r"\d+",


CORE_ENV = "../../envs/core.yaml"


def cell_env(wildcards):
    """Conda environment (for --sdm conda) of a cell: GPU cells need onnxruntime-gpu, TensorRT ones TensorRT."""
    if (
        wildcards.backend == "onnxruntime_trt"
    ):  # TensorRT 10 (its EP's), not Torch-TensorRT's 11
        return "../../envs/ort_tensorrt.yaml"
    if wildcards.backend == "torch_tensorrt":
        return "../../envs/tensorrt.yaml"
    return device_env(wildcards)


def device_env(wildcards):
    """Conda environment of a build or probe: the GPU one on CUDA (the same PyTorch as its cells);
    rules without a device wildcard (Torch-TensorRT builds) are CUDA-only."""
    return (
        "../../envs/gpu.yaml" if wildcards.get("device", "cuda") == "cuda" else CORE_ENV
    )


def cell_artifact(wildcards):
    return grid.artifact_path(grid.cell_from_wildcards(wildcards), RESULTS)


def all_cores(wildcards=None):
    """Every core given to Snakemake (--cores): the threads of rules that keep the machine to themselves.
    1 where no --cores is given and no job runs (`snakemake --report`)."""
    try:
        return workflow.cores
    except WorkflowError:
        return 1


def cell_threads(wildcards):
    # A CPU cell takes every core so that no two CPU cells run (and disturb each other) at once.
    return all_cores() if wildcards.device == "cpu" else 1


def cell_options(wildcards):
    """The backend's settings from config `backend_options` that act on the cell's device, as --option KEY=VALUE
    arguments."""
    given = config["backend_options"].get(wildcards.backend, {})
    return BACKENDS[wildcards.backend].option_args(given, wildcards.device)


def cell_effective_options(wildcards):
    """Every option of the cell's backend acting on its device, defaults included (for `params`: the command
    line carries only those that differ from the defaults)."""
    given = config["backend_options"].get(wildcards.backend, {})
    values = BACKENDS[wildcards.backend].effective_options(given, wildcards.device)
    return json.dumps(values, sort_keys=True)


def compared_results(wildcards):
    """The files of the compared runs (`report.compare`) the report reads: a changed one rebuilds it."""
    if not config["report"]["compare"]:
        return []
    from infbench.report import compare  # polars: imported only where a run compares

    return [
        str(f)
        for c in config["report"]["compare"]
        for f in compare.result_files(c["path"])
    ]


# Settings that only judge repetitions already measured: changing them reruns the cells' jobs,
# not their repetitions.
CELL_ONLY = set(JUDGING)


def repetition_params(wildcards):
    """What a repetition's measurement depends on: the bench settings but those in CELL_ONLY."""
    return {k: v for k, v in config["bench"].items() if k not in CELL_ONLY}


# Scheduling order: every job that makes a cell's input first, then the cells' repetitions in rounds
# (all first repetitions, then all second ones, ...), so that a cell's repetitions lie far apart and a
# slow minute of the machine lands on every cell of a comparison, not on one. Within a round the order
# is shuffled, differently each round (a fixed hash of the cell and round: reproducible, no state), as
# randomised interleaved trials do (Abedi & Brecht, ICPE 2017): no cell is always measured first.
ROUND = 1000  # priority span of one round; the shuffle takes a value below it
BUILD_PRIORITY = ROUND * (config["bench"]["repetitions"] + 1)


def repetition_priority(wildcards):
    rep = int(wildcards.rep)
    key = "/".join(str(v) for v in dict(wildcards).values())
    return (
        ROUND * (config["bench"]["repetitions"] + 1 - rep)
        + zlib.crc32(key.encode()) % ROUND
    )


def cell_priority(wildcards):
    """The baseline's cell jobs before the others of their round: they may take extra repetitions from
    the run's budget (bench.extra_budget_s) before any other cell has spent it."""
    return 1 if (wildcards.backend, wildcards.precision) == ("torch", "fp32") else 0


def cell_repetitions(wildcards):
    cell = grid.cell_from_wildcards(wildcards)
    return grid.repetition_paths(cell, RESULTS, config["bench"]["repetitions"])


def cell_gpus(wildcards):
    return 1 if wildcards.device == "cuda" else 0


def report_meta():
    dropped = [vars(d) for d in DROPPED]
    return json.dumps(
        {
            "dataset": config["dataset"],
            "model": ", ".join(m["model"]["name"] for m in MODEL_CONFIGS.values()),
            "models": MODELS,
            "dropped": dropped,
            "memory_cap_mib": config["report"]["memory_cap_mib"],
            "devices": devices.summary(
                config["grid"]["devices"], config["grid"]["backends"]
            ),
        },
        sort_keys=True,
    )


# Every file this run plans, from the dataset to the cells: the `report` target asks for all of
# them, so that one deleted (or removed as damaged, see report.smk) is rebuilt with what depends
# on it. Snakemake rebuilds a missing file only when a target asks for it: a report made from it
# is otherwise "up to date".
def planned_files():
    files = {
        DATASET,
        *expand(CHECKPOINT, model=MODELS),
        *expand(TRAIN_METRICS, model=MODELS),
        *ACCURACY,
        *expand("results/probe/{device}.json", device=PROBED_DEVICES),
    }
    for cell in CELLS:
        files |= {
            grid.bench_result_path(cell, RESULTS),
            grid.artifact_path(cell, RESULTS),
            *grid.repetition_paths(cell, RESULTS, config["bench"]["repetitions"]),
        }
        files.add(f"{grid.study_dir(RESULTS, cell.model)}/flops/{cell.image_size}.json")
    for c in {(c.model, c.backend, c.precision, c.device) for c in CELLS}:
        files.add(eval_artifact(*c, MODEL_CONFIGS[c[0]]))
    # every ONNX variant is made from the fp32 one
    for m in MODELS:
        if any(f"/{m}/onnx/" in f for f in files):
            files.add(ONNX_FP32.format(model=m))
    return sorted(files)
