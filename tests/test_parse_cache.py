"""Parsing the workflow imports no torch once the answers it needs are cached (core/parse_cache.py).

Every `snakemake` call parses the workflow, and the config checks ask which models torchvision lists
and which image sizes the model takes; answering by importing torch and torchvision took 3 of the 4
seconds of a dry run. The answers are kept in the user's cache folder, keyed by library versions and
by the code that computes them; a damaged cache is recomputed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import TINY_CONFIG, copy_workflow

from infbench.core import parse_cache
from infbench.stages import model

# A dry run in this process's interpreter that says whether torch was imported while it ran.
DRY_RUN = """
import sys
from snakemake.cli import main
sys.argv = ["snakemake", "-n", "report"]
try:
    main()
except SystemExit as exc:
    code = exc.code
print("TORCH IMPORTED" if "torch" in sys.modules else "NO TORCH", "exit", code)
"""


def dry_run(workdir, cache_home) -> str:
    env = {**os.environ, "XDG_CACHE_HOME": str(cache_home), "PYTHONPATH": str(workdir / "workflow")}
    proc = subprocess.run([sys.executable, "-c", DRY_RUN], cwd=workdir, env=env, capture_output=True, text=True)
    return proc.stdout + proc.stderr


@pytest.mark.skipif(os.path.exists("/proc/driver/nvidia"), reason="with an NVIDIA driver, PyTorch is asked for GPUs")
def test_a_dry_run_imports_no_torch_once_the_answers_are_cached(tmp_path):
    workdir = copy_workflow(tmp_path / "wf", TINY_CONFIG)
    first = dry_run(workdir, tmp_path / "cache")
    assert "exit 0" in first, first
    assert list((tmp_path / "cache" / "infbench").glob("parse-*.json")), "nothing was cached"
    second = dry_run(workdir, tmp_path / "cache")
    assert "exit 0" in second and "NO TORCH" in second, second
    # The same plan either way.
    assert first.split("Plan:")[1].splitlines()[0] == second.split("Plan:")[1].splitlines()[0]


def test_answers_are_cached_per_code_and_a_damaged_cache_is_recomputed(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    parse_cache.cache_file.cache_clear()
    path = parse_cache.cache_file(model.__file__)
    path.parent.mkdir(parents=True)
    path.write_text("{not json")  # damaged
    assert parse_cache.cached(model.__file__, "size", lambda: "why not") == "why not"
    assert json.loads(path.read_text()) == {"size": "why not"}

    def not_again():
        raise AssertionError("computed again although cached")

    assert parse_cache.cached(model.__file__, "size", not_again) == "why not"
    # Another module's answers (or this one's after an edit) live in another file.
    other = tmp_path / "other.py"
    other.write_text("# another version of the code\n")
    assert parse_cache.cache_file(str(other)) != path
    # A refusal is an answer too: kept, and read back as the same message.
    why = parse_cache.cached(model.__file__, "probe", lambda: model._probe_size("alexnet", "imagenet", 32, None))
    assert "does not take 32×32" in why
    assert parse_cache.cached(model.__file__, "probe", not_again) == why
    parse_cache.cache_file.cache_clear()
