"""Atomic writes: a file under results/ is either complete or absent, never half-written.

Each file written here also gets its checksum sidecar (`infbench.core.integrity`), so that a later
plan can tell a damaged file from the one its rule wrote.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from infbench.core import integrity
from infbench.core.integrity import DamagedInput

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: Path | str, suffix: str = ""):
    """Yield a temporary path beside `path` (ending in `suffix`, for writers that want an extension);
    rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are as readable as any file
    integrity.forget(path)  # the old content's checksum no longer applies
    try:
        yield Path(tmp)
        digest = integrity.file_digest(Path(tmp))
        os.replace(tmp, path)
        integrity.record(path, digest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def write_json(path: Path | str, data) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: Path | str):
    return json.loads(Path(path).read_text())


def size_mib(path: Path | str) -> float | None:
    """Size of a file, or of every file under a folder, in MiB; None where nothing is there. An OpenVINO IR
    .xml counts the .bin beside it (the graph names its weights file)."""
    p = Path(path)
    if p.is_file():
        weights = p.with_suffix(".bin")
        return (p.stat().st_size + (weights.stat().st_size if p.suffix == ".xml" and weights.is_file() else 0)) / 2**20
    if p.is_dir():
        return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 2**20
    return None


def check_artifact(path: Path, rule: str) -> None:
    """Fail with a message naming the file and the rule that rebuilds it."""
    if not Path(path).exists():
        raise FileNotFoundError(f"artifact {path} is missing; rebuild it with the rule '{rule}'")
    if Path(path).stat().st_size == 0:
        raise DamagedInput(path, rule, "empty: truncated?")
