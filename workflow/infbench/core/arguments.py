"""What the stages' command lines share (each stage module's `add_parser`, assembled by infbench.cli)."""

from __future__ import annotations

from pathlib import Path


def paths(s, *flags: str) -> None:
    """Required file or folder arguments of a stage (`--checkpoint`, `--out`, …)."""
    for flag in flags:
        s.add_argument(flag, type=Path, required=True)
