"""Config → cells; the combinations dropped at expansion with their reasons; invalidation hashes.

The Snakefile plans with these functions, and so do the report and the tests: one place decides
which cells exist.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import itertools
from dataclasses import dataclass
from pathlib import Path

from infbench.backends.registry import BACKENDS, spec
from infbench.core.cell import Cell
from infbench.core.packages import installed_version
from infbench.measure import early_stop
from infbench.serving import batching
from infbench.stages import model as model_lib
from infbench.stages import model_onnx
from infbench.stages.recipe import recipe
from infbench.study import devices

PACKAGE_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Dropped:
    backend: str
    precision: str
    device: str
    reason: str


def model_id(config: dict) -> str:
    """A model's config's model as cells, folders and wildcards name it (a safe form of `model.name`)."""
    return model_lib.slug(config["model"]["name"])


# A `models:` entry's settings it does not give (the schema's defaults of `model:`); never the
# `model:` section's own, which belong to that one model (its checkpoint is no other model's).
MODEL_DEFAULTS = {
    "stem": "imagenet",
    "weights": None,
    "checkpoint": None,
    "trust_checkpoint": False,
    "onnx": None,
    "layout": None,
    "preprocessing": "normalise",
    "mean": None,
    "std": None,
}


def _facts(one: dict) -> dict:
    """A model's config with what its file decides (a user's ONNX file: its name and size)."""
    return model_onnx.with_facts(one) if one["model"].get("onnx") else one


def model_configs(config: dict) -> dict[str, dict]:
    """{model id: the config of that model's study}. One model (`model:`), or each entry of `models:`
    (a name, or a mapping like `model:` with an optional `train:` of its own merged over `train:`)."""
    entries = config.get("models") or []
    if not entries:
        one = _facts(config)
        return {model_id(one): with_recipe(one)}
    out = {}
    for entry in entries:
        entry = {"name": entry} if isinstance(entry, str) else dict(entry)
        train = {**config["train"], **entry.pop("train", {})}
        one = _facts({**config, "model": {**MODEL_DEFAULTS, **entry}, "train": train, "models": []})
        out[model_id(one)] = with_recipe(one)
    return out


def with_recipe(config: dict) -> dict:
    """`config` with its train: optimizer, lr and weight_decay resolved for its model (stages/recipe.py):
    what the train job is given and hashed by."""
    train = config["train"]
    optimizer, lr, weight_decay = recipe(
        config["model"]["name"], train.get("optimizer"), train.get("lr"), train.get("weight_decay")
    )
    return {**config, "train": {**train, "optimizer": optimizer, "lr": lr, "weight_decay": weight_decay}}


def several_models(config: dict) -> bool:
    return bool(config.get("models"))


def report_dir(config: dict) -> str:
    """Where the study's report goes: its model's folder, or for several models their common one."""
    if several_models(config):
        return f"results/{results_name(config)}/models/report"
    return f"{study_dir(results_name(config), config['model']['name'])}/report"


def size_problems(config: dict, sizes) -> dict[int, str]:
    """{size: why the configured model cannot take it} for the image sizes it does not accept."""
    m = {**MODEL_DEFAULTS, **config["model"]}
    build = model_lib.build_size_for(m["name"], config["train"]["image_size"], m.get("weights"))
    problems = {int(s): model_lib.accepted_size(m["name"], m["stem"], int(s), build) for s in sizes}
    return {s: why for s, why in problems.items() if why}


def image_sizes(config: dict) -> tuple[list[int], list[Dropped]]:
    """The grid's image sizes the model takes; a fixed-size model's other sizes are dropped with the
    reason (any other size a model refuses is a config error, see config.check_model)."""
    if config["model"].get("onnx"):
        return model_onnx.image_sizes(config, Dropped)
    sizes = [int(s) for s in config["grid"]["image_sizes"]]
    refused = size_problems(config, sizes)
    if not refused or not model_lib.fixed_size_family(config["model"]["name"]):
        return sizes, []
    return [s for s in sizes if s not in refused], [Dropped("all", "all", "all", why) for why in refused.values()]


def expand(config: dict) -> tuple[list[Cell], list[Dropped]]:
    """Every cell of the grid for each of the study's models, and the combinations it cannot have
    (backend/precision/device, or an image size a fixed-size model does not take)."""
    cells: list[Cell] = []
    dropped: list[Dropped] = []
    for one in model_configs(config).values():
        more, gone = expand_model(one)
        cells += more
        dropped += [d for d in gone if d not in dropped]
    return cells, dropped


def expand_model(config: dict) -> tuple[list[Cell], list[Dropped]]:
    """`expand` for the one model of `config`."""
    grid = config["grid"]
    model = model_id(config)
    sizes, dropped = image_sizes(config)
    cells: list[Cell] = []
    auto = grid["devices"] == devices.AUTO
    for backend, precisions in grid["backends"].items():
        for precision, device in itertools.product(precisions, devices.resolve(grid["devices"])):
            reason = spec(backend).unsupported_reason(device, precision) or source_reason(config, backend, precision)
            if not reason and auto and device == "cuda":  # `auto` leaves out what is not installed
                reason = devices.missing_on_cuda(backend)
            if reason:
                dropped.append(Dropped(backend, precision, device, reason))
                continue
            for size, batch in itertools.product(sizes, grid["batch_sizes"]):
                why = config["model"].get("onnx") and model_onnx.batch_reason(config, backend, int(batch))
                if why:
                    dropped.append(Dropped(backend, precision, device, why))
                    continue
                cells.append(Cell(model, backend, precision, device, int(size), int(batch)))
    return cells, dropped


def source_reason(config: dict, backend: str, precision: str) -> str | None:
    """Why the model's source cannot feed `backend` (a user's ONNX file has no PyTorch model), or None."""
    if not config["model"].get("onnx"):
        return None
    rule = spec(backend).artifact(Cell("m", backend, precision, "cpu", 32, 1)).rule
    return model_onnx.backend_reason(config["model"]["name"], rule)


def serving_cells(config: dict) -> list[tuple[Cell, str]]:
    """The serving cells (config `serving`; none unless enabled), each a cell (its batch: serving.max_batch) and a
    LoadGen scenario: serving.backends (else grid.backends) at serving.image_sizes (else the grid's first size), on
    the grid's devices; what the grid drops is dropped here too, with the same reasons."""
    serving = config.get("serving") or {}
    if not serving.get("enabled"):
        return []
    unknown = sorted(set(serving["backends"]) - set(BACKENDS))
    if unknown:
        raise ValueError(f"serving.backends: unknown backend(s) {', '.join(unknown)}; known: {', '.join(BACKENDS)}")
    sizes = serving["image_sizes"] or config["grid"]["image_sizes"][:1]
    grid = {**config["grid"], "backends": serving["backends"] or config["grid"]["backends"], "image_sizes": sizes}
    cells, _ = expand({**config, "grid": {**grid, "batch_sizes": [serving["max_batch"]]}})
    return [(cell, scenario) for cell in cells for scenario in serving["scenarios"]]


def serving_artifact_path(wc, config: dict) -> str:
    """What a serving cell loads (rule serve's wildcards): its backend's artifact at serving.max_batch (a
    shape-pinned one is built for that batch); SingleStream's at batch 1 (serving/batching.py `max_batch`)."""
    size, batch = int(wc.size), batching.max_batch(wc.scenario, config["serving"]["max_batch"])
    return artifact_path(Cell(wc.model, wc.backend, wc.precision, wc.device, size, batch), results_name(config))


def serving_result_path(cell: Cell, scenario: str, dataset: str) -> str:
    """A serving cell's result; its LoadGen logs lie beside it, in <scenario>.loadgen/."""
    where = f"{cell.backend}/{cell.precision}/{cell.device}/{cell.image_size}"
    return f"{study_dir(dataset, cell.model)}/serving/{where}/{scenario}.json"


def results_name(config: dict) -> str:
    """The dataset's folder under results/: its name; an image folder's also says which folder (its name and
    a digest of its absolute path), so that two folders never share results/<dataset>/<model>."""
    if config["dataset"] != "imagefolder":
        return config["dataset"]
    folder = Path(config["data_dir"]).resolve()
    return f"imagefolder-{model_lib.slug(folder.name)}-{hashlib.sha256(str(folder).encode()).hexdigest()[:8]}"


def study_dir(dataset: str, model: str) -> str:
    """The folder of one study: everything its runs write, beside (never over) other studies'.

    The one place that decides the layout; the rules call it with the pattern "{model}". A model
    name becomes its safe form (`model.slug`): a name from the config never makes a path as it stands.
    """
    return f"results/{dataset}/{model if model == '{model}' else model_lib.slug(model)}"


def bench_result_path(cell: Cell, dataset: str) -> str:
    size = f"{cell.image_size}x{cell.batch_size}"
    return f"{study_dir(dataset, cell.model)}/bench/{cell.backend}/{cell.precision}/{cell.device}/{size}.json"


def repetition_paths(cell: Cell, dataset: str, repetitions: int) -> list[str]:
    """The files of a cell's first repetitions, each measured by a job of its own (rules/bench.smk): of
    `repetitions`, those planned on the cell's device (a GPU cell's cell job adds the rest where its first
    two disagree: measure/early_stop.py)."""
    repetitions = early_stop.planned_jobs(cell.device, repetitions)
    size = f"{cell.image_size}x{cell.batch_size}"
    folder = f"{study_dir(dataset, cell.model)}/repetitions/{cell.backend}/{cell.precision}/{cell.device}/{size}"
    return [f"{folder}/{rep}.json" for rep in range(1, repetitions + 1)]


def artifact_path(cell: Cell, dataset: str) -> str:
    """The file a cell loads (the registry names it within the study's folder)."""
    return f"{study_dir(dataset, cell.model)}/{spec(cell.backend).artifact(cell).path}"


def cell_from_wildcards(wc) -> Cell:
    return Cell(wc.model, wc.backend, wc.precision, wc.device, int(wc.size), int(wc.batch))


# Cached: Snakemake re-evaluates the params of every waiting job each second while jobs run,
# and that work is CPU time taken from the cell being measured.
@functools.cache
def code_hash(*relative_paths: str) -> str:
    """Hash of package source files/folders (relative to the package), for a rule's `params`.

    A changed module then reruns exactly the rules whose params name it. What is hashed is the
    module's syntax tree without docstrings and the text of the messages it raises: comments,
    docstrings, layout and a reworded error message rerun nothing.
    """
    digest = hashlib.sha256()
    for rel in relative_paths:
        path = PACKAGE_ROOT / rel
        files = sorted(path.rglob("*.py")) if path.is_dir() else [path]
        for f in files:
            digest.update(str(f.relative_to(PACKAGE_ROOT)).encode())
            digest.update(_file_code(f))
    return digest.hexdigest()[:16]


@functools.cache
def _file_code(path: Path) -> bytes:
    """`code_of` a package file, once per process (the rules' hashes share most of their files)."""
    return code_of(path.read_text()).encode()


def _is_text(node: ast.AST) -> bool:
    """A string literal, an f-string, or a concatenation of them: a message's text."""
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return _is_text(node.left) and _is_text(node.right)
    return isinstance(node, ast.JoinedStr) or (isinstance(node, ast.Constant) and isinstance(node.value, str))


def code_of(source: str) -> str:
    """What a module does: its syntax tree (no line numbers) with the docstrings and the text of raised
    messages left out (which exception, and when, stays: a job that fails still fails)."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call):
            node.exc.args = [ast.Constant("") if _is_text(a) else a for a in node.exc.args]
        body = getattr(node, "body", None)
        if (
            isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
            and body
            and isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        ):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


@functools.cache
def package_versions(*names: str) -> str:
    """Installed versions of distributions ('name==version' or 'name absent'), for `params`."""
    versions = {name: installed_version(name) for name in names}
    return ",".join(f"{name}=={v}" if v else f"{name} absent" for name, v in versions.items())


# Not code of any job: the workflow's wiring (the registry, the study's cells and paths) reaches a job
# through its inputs, outputs and params, so editing it (a backend added, say) reruns nothing by itself.
NOT_CODE = ("backends.registry", "study")


@functools.cache
def imports_of(module: str) -> frozenset[str]:
    """The infbench modules `module` ("stages.train") imports, wherever in it (inside functions too)."""
    found = set()
    for node in ast.walk(ast.parse(module_path(module).read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name.removeprefix("infbench.") for a in node.names if a.name.startswith("infbench.")}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("infbench."):
            parent = node.module.removeprefix("infbench.")
            found |= {f"{parent}.{a.name}" if module_path(f"{parent}.{a.name}") else parent for a in node.names}
    return frozenset(m for m in found if module_path(m))


def module_path(module: str) -> Path | None:
    """The file of package module `module` ("bench.cell" or the package "bench"), None if there is none."""
    base = PACKAGE_ROOT.joinpath(*module.split("."))
    return next((p for p in (base.with_suffix(".py"), base / "__init__.py") if p.is_file()), None)


@functools.cache
def module_files(*modules: str) -> tuple[str, ...]:
    """The package files that `modules` run: each one and every module it imports, at any depth, but
    the NOT_CODE ones (paths relative to the package, for `code_hash`)."""
    found, todo = set(), list(modules)
    while todo:
        name = todo.pop()
        if name in found or any(name == n or name.startswith(n + ".") for n in NOT_CODE):
            continue
        found.add(name)
        todo += imports_of(name)
    return tuple(sorted(str(module_path(m).relative_to(PACKAGE_ROOT)) for m in found))


def stage_code_hash(*modules: str) -> str:
    """The code of a rule whose command runs `modules` ("stages.train"): an edit of any module they
    import, at any depth, reruns it."""
    return code_hash(*module_files(*modules))


def backend_module(backend: str) -> str:
    return f"backends.{BACKENDS[backend].module}"


def backend_modules(module: str) -> list[str]:
    """A backend module and the backend modules it runs (torchscript builds on torch_eager…)."""
    files = module_files(f"backends.{module}")
    return sorted(
        f.removeprefix("backends/").removesuffix(".py").replace("/", ".") for f in files if f.startswith("backends/")
    )


# What a benchmark cell's jobs run besides its backend: the cell's command and its measuring process
# (started as `python -m infbench.bench.process`, not imported).
BENCH = ("bench.command", "bench.process")


def backend_code_hash(backend: str) -> str:
    """The code of a cell's job: its repetitions' measuring and the combining and judging of them."""
    return stage_code_hash(*BENCH, backend_module(backend))


# What a repetition's job runs: its command line, the launch of the measuring process and that process, not
# the combining and judging (bench.cell and what it imports) that only the cell's job runs: an edit there
# judges the repetitions again without measuring them again.
MEASURING = ("bench.launch", "bench.process")


def repetition_code_hash(backend: str) -> str:
    return code_hash("bench/command.py", *module_files(*MEASURING, backend_module(backend)))


def accuracy_code_files(backend: str) -> tuple[str, ...]:
    return module_files("stages.accuracy", backend_module(backend))


def accuracy_code_hash(backend: str) -> str:
    """The accuracy rule's code: an edit of any module its backend's code runs reruns its accuracy jobs."""
    return code_hash(*accuracy_code_files(backend))


def backend_versions(backend: str, precision: str) -> str:
    """The installed versions of what a cell of `backend` and `precision` imports (and no other package)."""
    return package_versions(*BACKENDS[backend].packages_for(precision))
