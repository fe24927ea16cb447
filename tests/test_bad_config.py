"""Every config error fails at parse time (`snakemake -n`), with the key and what is allowed.

Each case goes through the checks the Snakefile runs as it is parsed (workflow/Snakefile:
`check_schema`, Snakemake's `validate` filling in the defaults, then rules/common.smk's
`check_config`), called here in one process: the same functions, the same config, the same message.
A real dry run of the workflow on a bad config then shows, for one case of each check, that the
Snakefile runs them and that the user sees that message and nothing else (no schema dump, no plan);
those dry runs start together (a module fixture). Forty Snakemake processes for forty messages cost
two minutes of the suite's two cores and tested the same wiring forty times.
"""

from __future__ import annotations

import copy
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_CONFIG, copy_workflow, snakemake

from infbench.backends.registry import ALL_PRECISIONS, BACKENDS
from infbench.study.config import ConfigError, check_config, check_schema

SCHEMA = REPO / "config" / "schema.yaml"


def _unsupported_on_cpu() -> tuple[str, str]:
    """A backend/precision pair the registry cannot run on the CPU (stays true as backends grow)."""
    for precision in ALL_PRECISIONS:
        if precision not in BACKENDS["torch"].support.get("cpu", ()):
            return "torch", precision
    raise AssertionError("torch runs every precision on the CPU: pick another dropped combination")


DROPPED_BACKEND, DROPPED_PRECISION = _unsupported_on_cpu()


def set_key(cfg: dict, dotted: str, value) -> dict:
    *parents, last = dotted.split(".")
    node = cfg
    for p in parents:
        node = node.setdefault(p, {})
    node[last] = value
    return cfg


# name → (changes as {dotted key: value}, substrings the message must contain)
CASES: dict[str, tuple[dict, list[str]]] = {
    "unknown top-level key": (
        {"epochs": 3},
        ["the config's top level: unknown key 'epochs'", "allowed: dataset, data_dir", "grid", "bench"],
    ),
    "unknown nested key (a typo)": (
        {"bench.latency": 1},
        ["bench: unknown key 'latency' (did you mean 'latency_s'?)", "allowed: mode, repetitions"],
    ),
    "unknown key in split": (
        {"split.holdout": 10},
        ["split: unknown key 'holdout'", "allowed: calibration, test, validation, seed"],
    ),
    "unknown backend": (
        {"grid.backends": {"tvm": ["fp32"]}},
        ["grid.backends: unknown backend 'tvm'", "allowed: torch, torch_cudagraphs, onnxruntime"],
    ),
    "unknown precision": (
        {"grid.backends": {"torch": ["fp8"]}},
        ["grid.backends.torch[0]: 'fp8' is not allowed; allowed: fp32", "bf16", "int8"],
    ),
    "unknown device": ({"grid.devices": ["tpu"]}, ["grid.devices[0]: 'tpu' is not allowed; allowed: cpu, cuda"]),
    "unknown dataset": (
        {"dataset": "imagenet"},
        ["dataset: 'imagenet' is not allowed; allowed: digits, cifar10, imagefolder"],
    ),
    "unknown model": ({"model.name": "resnet19"}, ["model.name: unknown model 'resnet19'; closest: resnet18"]),
    "model name with a path in it": ({"model.name": "../x"}, ["model.name: unknown model '../x'"]),
    "grid size below a model's minimum": (
        {"model.name": "alexnet", "grid.image_sizes": [32, 64], "train.image_size": 64},
        ["grid.image_sizes: alexnet does not take 32×32 inputs"],
    ),
    "no grid size a fixed-size model takes": (
        {"model.name": "vit_b_16", "grid.image_sizes": [64], "train.image_size": 32},
        ["grid.image_sizes: vit_b_16 takes none of 64"],
    ),
    "evaluate only without weights": (
        {"train.epochs": 0},
        ["train.epochs: 0 (resnet18) means evaluate only, which needs model.weights or model.checkpoint"],
    ),
    "missing checkpoint": (
        {"model.checkpoint": "nowhere/mine.pt"},
        ["model.checkpoint: nowhere/mine.pt does not exist"],
    ),
    "stem a family has not": (
        {"model.name": "convnext_tiny", "model.stem": "cifar"},
        ["model.stem: cifar: convnext_tiny has no small-image stem adaptation"],
    ),
    "weights a model has not": (
        {"model.name": "resnet18", "model.weights": "IMAGENET9K"},
        ["model.weights: resnet18 has no weights 'IMAGENET9K'"],
    ),
    "string for an integer": (
        {"train.epochs": "many"},
        ["train.epochs: 'many' is a string, expected an integer (Training epochs"],
    ),
    "scalar for a list": ({"grid.image_sizes": 32}, ["grid.image_sizes: 32 is an integer, expected a list"]),
    "device not in a list": (
        {"grid.devices": "cpu"},
        ["grid.devices: 'cpu' is not allowed; expected 'auto' or a list of cpu, cuda"],
    ),
    "boolean for a number": (
        {"bench.window_s": True},
        ["bench.window_s: True is a boolean, expected a number"],
    ),
    "list for a mapping": ({"grid": [32, 64]}, ["grid: [32, 64] is a list, expected a mapping"]),
    "null section": ({"train": None}, ["train: no value is given (null), expected a mapping"]),
    "empty image sizes": ({"grid.image_sizes": []}, ["grid.image_sizes: the list is empty; give at least 1 value"]),
    "empty batch sizes": ({"grid.batch_sizes": []}, ["grid.batch_sizes: the list is empty"]),
    "empty backends map": (
        {"grid.backends": {}},
        ["grid.backends: empty; name at least one of: torch, torch_cudagraphs, onnxruntime"],
    ),
    "empty precision list": ({"grid.backends": {"torch": []}}, ["grid.backends.torch: the list is empty"]),
    "batch size 0": ({"grid.batch_sizes": [0, 4]}, ["grid.batch_sizes[0]: 0 is out of range; it must be >= 1"]),
    "negative image size": ({"grid.image_sizes": [-32]}, ["grid.image_sizes[0]: -32 is out of range; it must be >= 8"]),
    "duplicate batch sizes": ({"grid.batch_sizes": [4, 4]}, ["grid.batch_sizes: 4 listed more than once"]),
    "zero learning rate": ({"train.lr": 0}, ["train.lr: 0 is out of range; it must be > 0"]),
    "tolerance above 1": ({"bench.tolerance": 5}, ["bench.tolerance: 5 is out of range; it must be <= 1"]),
    "zero repetitions": ({"bench.repetitions": 0}, ["bench.repetitions: 0 is out of range; it must be >= 2"]),
    "negative window": ({"bench.window_s": -0.1}, ["bench.window_s: -0.1 is out of range; it must be > 0"]),
    "negative extra repetitions": (
        {"bench.max_extra_repetitions": -1},
        ["bench.max_extra_repetitions: -1 is out of range; it must be >= 0"],
    ),
    "an option the backend does not read": (
        {"backend_options.torch_compile": {"cuda_graphs": True}},
        [
            "backend_options.torch_compile: unknown key 'cuda_graphs' (did you mean 'cudagraphs'?)",
            "allowed: channels_last, freezing, cudagraphs",
        ],
    ),
    "an option of a backend that has none": (
        {"backend_options.aotinductor": {"channels_last": True}},
        ["backend_options.aotinductor: unknown key 'channels_last'; allowed: none"],
    ),
    "options of an unknown backend": (
        {"backend_options.tensorflow": {}},
        ["backend_options: unknown backend 'tensorflow'", "allowed: torch, torch_cudagraphs, onnxruntime"],
    ),
    "an option of the wrong type": (
        {"backend_options.torch": {"channels_last": "yes"}},
        ["backend_options.torch.channels_last: 'yes' is a string, expected true or false (NHWC"],
    ),
    "cifar10 without its data_dir": (
        {"dataset": "cifar10", "data_dir": "no/such/folder"},
        ["data_dir: 'no/such/folder' does not exist (dataset is cifar10)", "cifar-10-python.tar.gz"],
    ),
    "every combination dropped": (
        {"grid.backends": {DROPPED_BACKEND: [DROPPED_PRECISION]}, "grid.devices": ["cpu"]},
        ["grid: every backend/precision/device combination is unsupported", f"has no {DROPPED_PRECISION}"],
    ),
    "timeout shorter than the budgets": (
        {"bench.timeout_s": 0.5},
        [
            "bench.timeout_s: 0.5 s would stop every repetition",
            "max(windows × window_s, energy_window_s) + latency_s = 0.5 s",
        ],
    ),
    "split leaves nothing to train on": (
        {"split.test": 1700, "split.calibration": 200, "split.validation": 200},
        ["split: calibration (200) + test (1700) + validation (200) leave no training images of the 1797 of digits"],
    ),
    "compared folder missing": (
        {"report": {"compare": [{"label": "laptop", "path": "elsewhere/results/bench"}]}},
        ["report.compare[0].path: folder 'elsewhere/results/bench' (label 'laptop') does not exist"],
    ),
    "several problems at once": (
        {"grid.batch_sizes": [0], "train.epochs": "x", "colour": "red"},
        ["3 problems", "grid.batch_sizes[0]", "train.epochs", "unknown key 'colour'"],
    ),
    # issue 35 item 13: a models: entry's train: is checked by train:'s own schema
    "unknown key in a models entry's train": (
        {"models": [{"name": "resnet18", "train": {"weightdecay": 0.05}}]},
        ["models[0].train: unknown key 'weightdecay' (did you mean 'weight_decay'?)", "allowed: epochs"],
    ),
    # issue 35 item 9: a value that reaches a shell command must look like what it is
    "cifar10_md5 that is not an md5": (
        {"cifar10_md5": "0; touch /tmp/x"},
        ["cifar10_md5: '0; touch /tmp/x'", "32 hexadecimal digits"],
    ),
}


def bad_config(changes: dict) -> dict:
    cfg = copy.deepcopy(TINY_CONFIG)
    for dotted, value in changes.items():
        set_key(cfg, dotted, value)
    return cfg


def parse_time_error(config: dict, workdir: Path) -> str | None:
    """The message the Snakefile's parse-time checks give for `config` (None: it passes them)."""
    from snakemake.utils import validate

    config = copy.deepcopy(config)
    try:
        check_schema(config, SCHEMA)
        validate(config, str(SCHEMA), set_default=True)
        check_config(config, workdir)
    except ConfigError as exc:
        return str(exc)
    return None


@pytest.mark.parametrize("name", list(CASES))
def test_bad_config_fails_at_parse_time_naming_key_and_allowed(name, tmp_path):
    message = parse_time_error(bad_config(CASES[name][0]), tmp_path)
    assert message is not None, f"{name}: the config passed the parse-time checks"
    for expected in CASES[name][1]:
        assert expected in message, f"{name}: {expected!r} not in:\n{message}"
    assert len(message) < 4000, message  # the message is the point, not a dump of the schema


# One case of each check the Snakefile runs, through a real `snakemake -n`.
IN_A_DRY_RUN = ("unknown top-level key", "several problems at once", "missing checkpoint", "compared folder missing")


@pytest.fixture(scope="module")
def dry_runs(tmp_path_factory) -> dict[str, tuple[int, str]]:
    """(exit code, output) of `snakemake -n` for the cases of IN_A_DRY_RUN, run together."""

    def run(item):
        workdir, name = item
        copy_workflow(workdir, bad_config(CASES[name][0]))
        proc = snakemake(workdir, "-n", check=False, timeout=120)
        return name, (proc.returncode, proc.stdout + proc.stderr)

    # Folders made here, one thread: pytest's tmp_path_factory is not safe to call from several.
    folders = [tmp_path_factory.mktemp(f"bad{i}") for i in range(len(IN_A_DRY_RUN))]
    with ThreadPoolExecutor(max_workers=len(IN_A_DRY_RUN)) as pool:
        return dict(pool.map(run, zip(folders, IN_A_DRY_RUN, strict=True)))


@pytest.mark.parametrize("name", IN_A_DRY_RUN)
def test_a_dry_run_on_a_bad_config_stops_with_that_message_alone(name, dry_runs):
    code, output = dry_runs[name]
    assert code != 0, f"{name}: the dry run passed:\n{output[-2000:]}"
    for expected in CASES[name][1]:
        assert expected in output, f"{name}: {expected!r} not in:\n{output[-3000:]}"
    # The message is the point, not a dump of the schema and the whole config.
    assert "On instance" not in output and len(output) < 4000, output
    assert "Job stats" not in output, "jobs were planned despite the bad config"


def test_the_good_config_still_plans(tmp_path):
    workdir = copy_workflow(tmp_path / "wf", TINY_CONFIG)
    proc = snakemake(workdir, "-n", check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _keys(node: dict, schema: dict, path: str = ""):
    """(key path, resolved schema) of every configurable key of the schema."""
    for name, sub in node.get("properties", {}).items():
        resolved = sub
        if "$ref" in sub:
            target = schema
            for part in sub["$ref"].removeprefix("#/").split("/"):
                target = target[part]
            resolved = {**target, **{k: v for k, v in sub.items() if k != "$ref"}}
        key = f"{path}.{name}" if path else name
        yield key, resolved, name in node.get("required", [])
        if resolved.get("type") == "object":
            yield from _keys(resolved, schema, key)
        if resolved.get("type") == "array" and resolved.get("items", {}).get("type") == "object":
            yield from _keys(resolved["items"], schema, f"{key}[]")


# Keys whose absence has a meaning of its own, said in their description: the model's own normalisation.
NO_DEFAULT = {"model.mean", "model.std"}


def test_every_schema_key_has_a_description_and_a_default():
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    missing = []
    for key, sub, required in _keys(schema, schema):
        if not sub.get("description"):
            missing.append(f"{key}: no description")
        if "default" not in sub and not required and not key.startswith("grid.backends.") and key not in NO_DEFAULT:
            missing.append(f"{key}: no default")
    assert not missing, "\n".join(missing)


def test_schema_backends_match_the_registry():
    """Adding a backend = one registry entry + one schema entry: the two lists agree."""
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    in_schema = set(schema["properties"]["grid"]["properties"]["backends"]["properties"])
    assert in_schema == set(BACKENDS), in_schema ^ set(BACKENDS)
