"""Checks of the config at parse time, before any job runs.

Two steps, both called from the Snakefile / common.smk:

* `check_schema`: the JSON schema (config/schema.yaml), with one short line per problem that
  names the key path (`grid.backends.torch[0]`), what is wrong and what is allowed (the allowed
  keys or values, the limit, the key's description). Snakemake's own `validate` prints the whole
  schema and the whole config instead, which buries the one line that matters.
* `check_config`: what a schema cannot say: a `data_dir` that does not exist for cifar10, a split
  that leaves no training images, a timeout shorter than the time budgets, a grid whose every
  combination is unsupported, a compared results folder that does not exist.
"""

from __future__ import annotations

import difflib
from pathlib import Path

import yaml

from infbench.backends.registry import BACKENDS
from infbench.stages import data, model_hf, model_onnx
from infbench.stages import model as model_lib
from infbench.study import grid

# Images in each dataset (the split must leave some for training).
DATASET_IMAGES = {"digits": 1797, "cifar10": 60000}


class ConfigError(ValueError):
    pass


def _key(path) -> str:
    """`grid.backends.torch[0]` from a jsonschema error path."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "the config's top level"


def _resolve(schema: dict, node: dict) -> dict:
    while isinstance(node, dict) and "$ref" in node:
        ref = node["$ref"]
        target = schema
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        node = {**target, **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _schema_at(schema: dict, path) -> dict:
    """The (resolved) schema of the value at `path` in the config."""
    node = _resolve(schema, schema)
    for part in path:
        if isinstance(part, int):
            node = _resolve(schema, node.get("items", {}))
        else:
            node = _resolve(schema, node.get("properties", {}).get(part, {}))
    return node


def _listing(values) -> str:
    return ", ".join(str(v) for v in values)


# How a message names a value of each type (bool first: a bool is an int too).
TYPE_NAMES = {
    bool: "a boolean",
    int: "an integer",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "a mapping",
}


def _type_name(value) -> str:
    return next((name for kind, name in TYPE_NAMES.items() if isinstance(value, kind)), type(value).__name__)


EXPECTED = {
    "integer": "an integer",
    "number": "a number",
    "string": "a string",
    "boolean": "true or false",
    "array": "a list",
    "object": "a mapping of keys to values",
}


def _shape(branch: dict) -> str:
    """'auto' / 'a list of cpu, cuda': one alternative of a oneOf, as a user writes it."""
    if "enum" in branch:
        return " or ".join(repr(v) for v in branch["enum"])
    if branch.get("type") == "array" and "enum" in branch.get("items", {}):
        return f"a list of {_listing(branch['items']['enum'])}"
    return EXPECTED.get(branch.get("type"), str(branch.get("type")))


def _message(error, schema: dict) -> str:
    """One line: the key path, what is wrong, what is allowed."""
    path = list(error.absolute_path)
    key = _key(path)
    here = _schema_at(schema, path)
    # The description of the key itself (for a list item, the description of the list).
    described = here.get("description") or _schema_at(schema, [p for p in path if not isinstance(p, int)]).get(
        "description"
    )
    about = f" ({described})" if described else ""
    value, kind = error.instance, error.validator
    if kind in ("oneOf", "anyOf"):
        # A problem inside the value (a device name in the list) is named where it is; a value of no
        # allowed shape gets the shapes that are allowed.
        inner = [
            e
            for e in error.context
            if len(e.absolute_path) > len(path) or e.validator not in ("type", "enum", "oneOf", "anyOf")
        ]
        if inner:
            return _message(max(inner, key=lambda e: len(e.absolute_path)), schema)
        return (
            f"{key}: {value!r} is not allowed; expected {' or '.join(_shape(b) for b in error.validator_value)}{about}"
        )
    if kind == "additionalProperties":
        allowed = list(error.schema.get("properties", {}))
        unknown = [k for k in value if k not in allowed]
        hints = []
        for k in unknown:
            close = difflib.get_close_matches(str(k), allowed, n=1)
            hints.append(f"'{k}'" + (f" (did you mean '{close[0]}'?)" if close else ""))
        what = "unknown backend" if path in (["grid", "backends"], ["backend_options"]) else "unknown key"
        return (
            f"{key}: {what}{'s' if len(unknown) > 1 else ''} {', '.join(hints)}; allowed: {_listing(allowed) or 'none'}"
        )
    if kind == "type":
        wanted = error.validator_value
        wanted = [wanted] if isinstance(wanted, str) else wanted
        got = "no value is given (null)" if value is None else f"{value!r} is {_type_name(value)}"
        return f"{key}: {got}, expected {' or '.join(EXPECTED.get(w, w) for w in wanted)}{about}"
    if kind == "enum":
        return f"{key}: {value!r} is not allowed; allowed: {_listing(error.validator_value)}{about}"
    if kind == "minItems":
        return f"{key}: the list is empty; give at least {error.validator_value} value{about}"
    if kind == "minProperties":
        allowed = list(error.schema.get("properties", {}))
        return f"{key}: empty; name at least one of: {_listing(allowed)}{about}"
    if kind == "uniqueItems":
        dupes = sorted({repr(v) for v in value if value.count(v) > 1})
        return f"{key}: {_listing(dupes)} listed more than once; each value may appear once{about}"
    if kind in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        rel = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}[kind]
        return f"{key}: {value!r} is out of range; it must be {rel} {error.validator_value}{about}"
    if kind == "required":
        return f"{key}: {error.message}{about}"
    return f"{key}: {error.message}{about}"


def with_backend_options(schema: dict) -> dict:
    """The schema with its `backend_options` section built from each backend's declared options
    (backends/registry.py), so that an option a backend does not have is an error naming it."""
    section = {
        **schema["properties"]["backend_options"],
        "additionalProperties": False,
        "properties": {name: backend.options_schema() for name, backend in BACKENDS.items()},
    }
    return {**schema, "properties": {**schema["properties"], "backend_options": section}}


def with_model_train(schema: dict) -> dict:
    """The schema with each `models:` entry's `train:` checked by `train:`'s own schema, so that an unknown key
    there is an error naming it. Here only, not in the schema file: Snakemake's validation fills in defaults,
    which in an entry's `train:` would override the study's `train:` for every key."""
    entry = schema["properties"]["models"]["items"]["oneOf"][1]
    train = {**schema["properties"]["train"], "default": None}
    entry = {**entry, "properties": {**entry["properties"], "train": train}}
    models = {
        **schema["properties"]["models"],
        "items": {"oneOf": [schema["properties"]["models"]["items"]["oneOf"][0], entry]},
    }
    return {**schema, "properties": {**schema["properties"], "models": models}}


def check_schema(config: dict, schema_path: str | Path) -> None:
    """Validate against the JSON schema; raise ConfigError listing every problem, one per line."""
    import jsonschema

    schema = with_model_train(with_backend_options(yaml.safe_load(Path(schema_path).read_text())))
    validator_cls = jsonschema.validators.validator_for(schema)
    errors = sorted(validator_cls(schema).iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines = [_message(e, schema) for e in errors]
        where = f"{Path(schema_path).parent.name}/{Path(schema_path).name}"
        raise ConfigError(
            f"the config has {len(lines)} problem{'s' if len(lines) > 1 else ''} "
            f"(keys, types and defaults: {where}):\n  " + "\n  ".join(lines)
        )


def repetition_seconds(bench: dict) -> float:
    """The least time one repetition's timed phases take (process start and loading not counted); on a
    GPU the throughput windows together last at least the energy window (bench.energy_policy)."""
    windows = max(bench["windows"] * bench["window_s"], bench["energy_window_s"])
    return bench["warmup_s"] + windows + bench["latency_s"]


def model_problems(config: dict, workdir: str | Path = ".") -> list[str]:
    """What keeps the configured model from running: its name, stem, weights, checkpoint and the
    image sizes it takes (probed on the meta device, see model.accepted_size)."""
    m, train = config["model"], config["train"]
    if m.get("onnx"):
        return model_onnx.problems(config, workdir)
    try:
        model_lib.check_name(m["name"])
        model_lib.check_stem(m["name"], m["stem"])
        if m.get("weights"):
            model_lib.torchvision_weights(m["name"], m["weights"])
    except model_lib.ModelError as exc:
        return [str(exc)]
    problems = []
    if m.get("weights") and m.get("checkpoint"):
        problems.append("model: give model.weights or model.checkpoint, not both (the checkpoint's weights would win)")
    if m.get("checkpoint") and not Path(workdir, m["checkpoint"]).is_file():
        problems.append(f"model.checkpoint: {m['checkpoint']} does not exist; give the path of your .pt/.pth file")
    has_weights = m.get("weights") or m.get("checkpoint") or m["name"].startswith("hf:")  # a folder holds its own
    if train["epochs"] == 0 and not has_weights:
        problems.append(
            f"train.epochs: 0 ({m['name']}) means evaluate only, which needs model.weights or model.checkpoint; "
            "give one, or train (epochs ≥ 1)"
        )
    trained = _trained_size(m, workdir)
    if trained and trained != train["image_size"]:
        problems.append(
            f"train.image_size: {train['image_size']}, but {m['name']} is built for the size of its "
            f"{'weights' if m.get('weights') else 'model.checkpoint'} ({trained}×{trained}, its position "
            f"embedding); set train.image_size: {trained}"
        )
        return problems
    problems += _normalisation_problems(m)
    refused = grid.size_problems(config, [train["image_size"]])
    if refused:
        hint = model_hf.size_hint(m["name"]) if model_hf.is_hf(m["name"]) else ""
        problems.append(f"train.image_size: {refused[train['image_size']]}; choose a size {m['name']} takes{hint}")
    sizes = config["grid"]["image_sizes"]
    refused = grid.size_problems(config, sizes)
    if len(refused) == len(sizes):
        problems.append(
            f"grid.image_sizes: {m['name']} takes none of {_listing(sizes)} ({next(iter(refused.values()))}); "
            f"give a size it takes (train.image_size, {train['image_size']}, is one)"
        )
    elif refused and not model_lib.fixed_size_family(m["name"]):  # a fixed-size model's others are dropped
        problems.append(f"grid.image_sizes: {'; '.join(refused.values())}; remove these sizes or raise them")
    return problems


def _trained_size(m: dict, workdir) -> int | None:
    """The one input size a fixed-size model's weights or checkpoint were trained at (None: any)."""
    if m.get("weights"):
        return model_lib.pretrained_facts(m["name"], m["weights"]).get("build_size")
    if m.get("checkpoint") and Path(workdir, m["checkpoint"]).is_file():
        try:
            return model_lib.checkpoint_size(m["name"], Path(workdir, m["checkpoint"]), m.get("trust_checkpoint"))
        except model_lib.ModelError:
            return None  # the train job names what is wrong with the file
    return None


def _normalisation_problems(m: dict) -> list[str]:
    """model.mean / model.std: one value per colour channel (or one for all), a std above 0."""
    problems = []
    for key in ("mean", "std"):
        values = m.get(key)
        if values and len(values) not in (1, 3):
            problems.append(
                f"model.{key}: {values} has {len(values)} values; the images are RGB: give 3 (or 1 for all)"
            )
    if m.get("std") and min(m["std"]) <= 0:
        problems.append(f"model.std: {m['std']} holds a value ≤ 0; the input is divided by it: give values above 0")
    return problems


def check_config(config: dict, workdir: str | Path = ".") -> None:
    """Checks beyond the schema, on the config with its defaults filled in."""
    problems = []
    if config["dataset"] in ("cifar10", "imagefolder"):
        data_dir = Path(workdir, config["data_dir"])
        if not data_dir.is_dir():
            what = (
                "put cifar-10-python.tar.gz there (or let infbench download it there when the network allows)"
                if config["dataset"] == "cifar10"
                else "put one subfolder of images per class there"
            )
            problems.append(
                f"data_dir: '{config['data_dir']}' does not exist (dataset is {config['dataset']}); create it and "
                f"{what}, or set data_dir to the folder that holds them"
            )
    if config["dataset"] == "imagefolder" and data.is_unlabelled_folder(Path(workdir, config["data_dir"])):
        trained = [name for name, one in grid.model_configs(config).items() if not one["model"].get("onnx")]
        if trained:
            problems.append(
                f"data_dir: '{config['data_dir']}' holds images without class subfolders (unlabelled): they can "
                f"score only an ONNX file (model.onnx), not {', '.join(trained)}, which is trained here: put each "
                "class's images in a subfolder of its own"
            )
    if config["dataset"] == "imagefolder":
        used = max(
            [*config["grid"]["image_sizes"], *(m["train"]["image_size"] for m in grid.model_configs(config).values())]
        )
        if config["data_image_size"] < used:
            problems.append(
                f"data_image_size: {config['data_image_size']} is below the largest size the study uses ({used}, "
                f"grid.image_sizes / train.image_size): images would be upscaled from {config['data_image_size']} px; "
                f"set data_image_size: {used} (or more)"
            )
    model_issues = [p for one in grid.model_configs(config).values() for p in model_problems(one, workdir)]
    if len(grid.model_configs(config)) < len(config.get("models") or []):
        model_issues.append("models: a model is listed twice; list each once")
    problems += model_issues
    split = config["split"]
    total = DATASET_IMAGES.get(config["dataset"])
    held = split["calibration"] + split["test"] + split.get("validation", 0)
    if total is not None and held >= total:
        problems.append(
            f"split: calibration ({split['calibration']}) + test ({split['test']}) + validation "
            f"({split.get('validation', 0)}) leave no training images of the {total} of {config['dataset']}; "
            f"their sum must be below {total}"
        )
    bench = config["bench"]
    budgets = repetition_seconds(bench)
    if bench["timeout_s"] <= budgets:
        problems.append(
            f"bench.timeout_s: {bench['timeout_s']} s would stop every repetition before it finishes measuring; it "
            f"must exceed warmup_s + max(windows × window_s, energy_window_s) + latency_s = {budgets:g} s"
        )
    unknown = [b for b in config["grid"]["backends"] if b not in BACKENDS]
    if unknown:  # the schema lists the backends too; this catches a schema out of step with the registry
        problems.append(f"grid.backends: unknown backend(s) {_listing(unknown)}; known: {_listing(BACKENDS)}")
    for i, other in enumerate(config.get("report", {}).get("compare", [])):
        if not Path(workdir, other["path"]).is_dir():
            problems.append(
                f"report.compare[{i}].path: folder '{other['path']}' (label '{other['label']}') does not exist"
            )
    if not unknown and not model_issues:
        cells, dropped = grid.expand(config)
        if not cells:
            reasons = "; ".join(d.reason for d in dropped)
            problems.append(
                "grid: every backend/precision/device combination is unsupported, no cell is left "
                f"({reasons}); change grid.backends or grid.devices"
            )
    if problems:
        raise ConfigError(
            f"the config has {len(problems)} problem{'s' if len(problems) > 1 else ''}:\n  " + "\n  ".join(problems)
        )


def read_yaml(path: str | Path) -> dict:
    """A config file's mapping; a missing file or a YAML syntax error is one line with file and line."""
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"config file {path} does not exist (looked in {path.resolve().parent}); give the path of a YAML "
            "file, e.g. --configfile config/config.yaml mine.yaml"
        ) from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}, line {mark.line + 1}, column {mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{where}: YAML syntax error: {problem}; fix it there (indentation, ':', brackets)") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: a config file is a mapping of keys (dataset:, grid:, …), not {_type_name(loaded)}")
    return loaded


def command_line_configfiles(argv: list[str]) -> list[str]:
    """The files given to --configfile/--configfiles on a Snakemake command line."""
    files, taking = [], False
    for arg in argv[1:]:
        if arg in ("--configfile", "--configfiles"):
            taking = True
        elif arg.startswith(("--configfile=", "--configfiles=")):
            files.append(arg.split("=", 1)[1])
            taking = True
        elif arg.startswith("-"):
            taking = False
        elif taking:
            files.append(arg)
    return files


def check_command_line(argv: list[str] | None = None) -> None:
    """Stop with one line when a --configfile is missing or not valid YAML.

    Called from the workflow profile (profiles/default/config.yaml), which Snakemake reads before
    it loads the config files itself: its own messages give no file or line (bad YAML) or a long
    traceback (a missing file).
    """
    import sys

    for path in command_line_configfiles(sys.argv if argv is None else argv):
        try:
            read_yaml(path)
        except ConfigError as exc:
            sys.exit(f"infbench: {exc}")


def overlay_backends(configfiles, cli_config) -> dict | None:
    """`grid.backends` as the last --configfile or --config that gives it has it, else None.

    Snakemake merges nested maps, so an overlay's backends would be added to the default ones;
    the Snakefile puts this map in their place: an overlay that lists backends lists all of them.
    """
    found = None
    for layer in [*(read_yaml(f) for f in configfiles), dict(cli_config or {})]:
        grid = layer.get("grid")
        if isinstance(grid, dict) and "backends" in grid:
            found = grid["backends"]
    return found
