"""An artifact that cannot be built here: a small JSON stub naming why, read by the backend's cells.

Where a builder's runtime cannot be imported or its artifact cannot be loaded (TensorRT is not
installable everywhere; AOTInductor's loader crashed on the H100), the builder writes this stub instead
of failing the workflow: the cells that load it report `unavailable` with that message, and the rule
reruns once the cause is gone (the runtime's version is in the rule's params)."""

from __future__ import annotations

import json
from pathlib import Path

from infbench.core.io import atomic_path

UNAVAILABLE_KIND = "infbench-unavailable-artifact"


def write_unavailable(out: Path, backend: str, error: str) -> dict:
    stub = {"kind": UNAVAILABLE_KIND, "backend": backend, "error": error}
    with atomic_path(out) as tmp:
        tmp.write_text(json.dumps(stub, indent=1))
    print(f"{backend} is unavailable here ({error}); wrote a stub to {out}")
    return stub


def read_unavailable(path: Path) -> dict | None:
    """The stub's content when `path` is an 'unavailable' stub, else None."""
    try:
        with open(path, "rb") as f:
            head = f.read(4096)
        stub = json.loads(head)
    except (OSError, ValueError, UnicodeDecodeError):
        return None
    return stub if isinstance(stub, dict) and stub.get("kind") == UNAVAILABLE_KIND else None
