"""The import contract of the package: layers, lowest first, and no import circle.

Every module of workflow/infbench is parsed with `ast`, its imports of infbench modules collected
wherever they are written (inside functions too: an import deferred to a function is still a
dependency, and hiding a circle there is what this test forbids). A module may import modules of its
own layer or of a lower one, never of a higher one, and no chain of imports may lead back to where it
started. Imports by name at run time (the registry's backend classes, cli.py's stage modules) are
not seen: they go from the top down by construction.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "workflow" / "infbench"

# Lowest first. A module belongs to the layer of the longest prefix that names it.
LAYERS = [
    ("core",),  # the cell, precisions, files written atomically, damaged inputs, the run's lock
    # the dataset, the classifier (the zoo, a user's ONNX file, a Hugging Face folder), its training recipe,
    # its ONNX variants
    (
        "stages.data",
        "stages.model",
        "stages.model_error",
        "stages.model_onnx",
        "stages.model_hf",
        "stages.recipe",
        "stages.quantize",
    ),
    ("measure",),  # what is measured: timing, repetitions' statistics, memory, NVML, FLOPs, the probe
    ("serving.batching", "serving.runners"),  # the serving queue and runners a backend serves through
    ("backends",),  # one module per runtime, with its artifact builder and options; the registry
    ("study",),  # the config, its cells (paths, code hashes), the devices
    ("stages",),  # the other stages: train, export, reference, accuracy, expected accuracy
    ("bench",),  # one benchmark cell: measuring processes, repetitions, the result
    ("serving",),  # one serving cell: LoadGen's scenarios over a backend's runner, the result
    ("report",),  # aggregate, findings, charts, the report, compare
    ("flow",),  # a run's machinery: the plan, the progress lines
    ("cli",),  # `infbench <stage>`: the entry the rules call
]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path) -> set[str]:
    """The infbench modules `path` imports, anywhere in it (`from infbench.x import y`: the module
    infbench.x.y where there is one, else infbench.x)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "infbench"}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] == "infbench":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in MODULES else node.module)
    return {m for m in found if m in MODULES} - {"infbench"}


GRAPH = {name: imports(path) - {name} for name, path in MODULES.items()}


def layer(module: str) -> int:
    rel = module.removeprefix("infbench.")
    best = max(
        (
            (len(prefix), i)
            for i, names in enumerate(LAYERS)
            for prefix in names
            if rel == prefix or rel.startswith(prefix + ".")
        ),
        default=None,
    )
    assert best is not None or module == "infbench", f"{module} is in no layer: add it to LAYERS"
    return -1 if best is None else best[1]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles: strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_the_graph_sees_imports_inside_functions():
    # bench/cell.py imports nothing of report; flow/progress.py imports report.findings inside a function only
    assert "infbench.report.findings" in GRAPH["infbench.flow.progress"]
    assert len(GRAPH) > 50 and sum(map(len, GRAPH.values())) > 100


def test_every_module_has_a_layer():
    assert all(layer(m) >= 0 for m in MODULES if m != "infbench")


def test_no_import_circle():
    assert cycles(GRAPH) == []


def test_the_circle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("module", sorted(GRAPH))
def test_no_upward_import(module):
    upward = sorted(m for m in GRAPH[module] if layer(m) > layer(module))
    assert upward == [], f"{module} (layer {LAYERS[layer(module)]}) imports a higher layer: {upward}"


def test_a_rules_code_is_every_module_its_command_runs_but_the_wiring():
    """The code hashes follow the same graph: a stage's code is the closure of its imports (inside
    functions too), without the registry and the study's wiring, whose facts reach rules as params."""
    from infbench.study import grid

    files = grid.module_files("backends.torchscript")
    assert {"backends/torchscript.py", "backends/torch_eager.py", "stages/model.py", "core/io.py"} <= set(files)
    assert "backends/registry.py" not in files and not any(f.startswith("study/") for f in files)
    # the measuring process is started, not imported: the bench rules name it
    assert "bench/process.py" in grid.module_files(*grid.BENCH)
    assert grid.stage_code_hash("stages.data") != grid.stage_code_hash("stages.train")
