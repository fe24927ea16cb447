"""Answers the workflow needs as it is parsed that would otherwise import torch and torchvision: about
3 of the 4 seconds of every `snakemake` call (a dry run, `--lint`, each cluster job's own parse).

Kept in the user's cache folder ($XDG_CACHE_HOME/infbench, else ~/.cache/infbench), never in the
workflow's folder: parsing writes nothing there. One file per set of library versions (torch,
torchvision, timm) and per content of the module that computes the answers, so an upgrade or an
edit of that module starts a new file. A damaged or unwritable cache costs only the import.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

from infbench.core.packages import installed_version

LIBRARIES = ("torch", "torchvision", "timm")


@functools.cache
def cache_file(code_file: str) -> Path:
    """The cache of answers computed by `code_file` with the libraries installed now."""
    code = hashlib.sha256(Path(code_file).read_bytes()).hexdigest()
    key = json.dumps([*(installed_version(d) for d in LIBRARIES), code])
    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "infbench"
    return root / f"parse-{hashlib.sha256(key.encode()).hexdigest()[:16]}.json"


def _entries(path: Path) -> dict:
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return entries if isinstance(entries, dict) else {}


def cached(code_file: str, key: str, compute: Callable[[], object]) -> object:
    """`compute()`'s answer (JSON-able) under `key`, from the cache where it is there, else computed and
    added (a whole new file renamed into place: concurrent parses never see half of one)."""
    path = cache_file(code_file)
    entries = _entries(path)
    if key in entries:
        return entries[key]
    value = compute()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "w") as f:
            json.dump({**_entries(path), key: value}, f)  # read again: another parse may have added
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: the answer is computed again next time
    return value
