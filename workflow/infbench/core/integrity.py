"""Damaged results are found before they are used, and rebuilt instead.

Every file infbench writes under results/ (through `infbench.core.io.atomic_path`) gets a sidecar,
`.<name>.sha256` beside it, recording the file's sha256, size and mtime as its rule wrote it.

* When a run starts (`check`, called by the workflow as Snakemake begins to build the run's jobs,
  before it looks at any file: workflow/rules/common.smk, `start_run`) a planned file whose
  content no longer matches its sidecar is removed, with one line naming it and the stage that
  writes it: Snakemake then sees it missing and rebuilds it with what depends on it. The old
  results of those jobs are replaced by new ones, never by errors about the damaged file.
  A dry run only names it (`heal=False`: nothing is removed or rewritten) and forces its rule.
  Size and mtime unchanged means unchanged (so a plan does not read every artifact each time).
* At read time a loader that cannot parse its input raises `DamagedInput` (file and rule named);
  `infbench.cli` then removes that file and fails the job without writing its output, so the
  next run rebuilds the file. This catches what the sidecar cannot: a file written by an older
  version (no sidecar), or damage that kept size and mtime.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path

# The stage writing files in this process (`infbench <stage>`), recorded in its sidecars.
WRITER = {"stage": None}


class DamagedInput(ValueError):
    """An input file is missing, truncated or corrupt: the job must not turn it into a result."""

    def __init__(self, path: Path | str, rule: str, detail: str):
        self.path, self.rule, self.detail = Path(path), rule, detail
        super().__init__(f"{path} is damaged ({detail}); it is rebuilt by the rule '{rule}'")


def sidecar(path: Path | str) -> Path:
    path = Path(path)
    return path.with_name(f".{path.name}.sha256")


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file, read in 1 MiB chunks (`algorithm`: any hashlib name, e.g. md5)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _write(path: Path, digest: str, stage: str | None) -> None:
    st = path.stat()
    record = {"sha256": digest, "size": st.st_size, "mtime_ns": st.st_mtime_ns, "stage": stage}
    tmp = sidecar(path).with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, sidecar(path))


def record(path: Path | str, digest: str | None = None) -> None:
    """Note the content of `path` (of sha256 `digest`) as just written by this process."""
    _write(Path(path), digest or file_digest(Path(path)), WRITER["stage"])


def forget(path: Path | str) -> None:
    sidecar(path).unlink(missing_ok=True)


def remove(path: Path | str) -> None:
    """Remove a damaged file and its sidecar (the next run rebuilds it)."""
    Path(path).unlink(missing_ok=True)
    forget(path)


def damaged(path: Path, refresh: bool = True) -> str | None:
    """Why `path` differs from what its writer recorded, or None (no sidecar: nothing to compare).
    `refresh`: a file touched or copied but not changed gets its sidecar's new mtime."""
    try:
        rec = json.loads(sidecar(path).read_text())
        st = path.stat()
    except (OSError, ValueError):
        return None
    if st.st_size == rec.get("size") and st.st_mtime_ns == rec.get("mtime_ns"):
        return None
    if file_digest(path) == rec.get("sha256"):
        if refresh:  # touched or copied, not changed: note the new mtime
            _write(path, rec["sha256"], rec.get("stage"))
        return None
    writer = f"`infbench {rec['stage']}`" if rec.get("stage") else "its rule"
    sizes = f"{rec.get('size')} bytes then, {st.st_size} now"
    return f"its sha256 differs from the one {writer} recorded when it wrote it ({sizes})"


def check(paths: Iterable[str | Path], heal: bool = True) -> list[tuple[Path, str]]:
    """The planned files whose content changed since they were written, each with one line. `heal`
    (a run) removes them; without it (a dry run) they are only named and nothing is written."""
    found = []
    for path in map(Path, paths):
        if not path.is_file():
            continue
        why = damaged(path, refresh=heal)
        if why and heal:
            remove(path)
        if why:
            then = "removed it, this run rebuilds it" if heal else "a run removes it and rebuilds it"
            found.append((path, f"infbench: {path} is damaged: {why}; {then} and what uses it"))
    return found
