"""What the stages' command lines share (each stage module's `add_parser`, assembled by infbench.cli)."""

from __future__ import annotations

import functools
from pathlib import Path

# The config's schema: every setting's one default (the rules pass the config's values; a stage run by
# hand without a flag takes the same default).
SCHEMA = Path(__file__).resolve().parents[3] / "config" / "schema.yaml"


def paths(s, *flags: str) -> None:
    """Required file or folder arguments of a stage (`--checkpoint`, `--out`, …)."""
    for flag in flags:
        s.add_argument(flag, type=Path, required=True)


@functools.cache
def _schema() -> dict:
    import yaml

    return yaml.safe_load(SCHEMA.read_text())


def schema_default(key: str, type=None):
    """The default of config `key` ("train.epochs") in config/schema.yaml, as `type` where given."""
    node = _schema()
    for part in key.split("."):
        node = node["properties"][part]
    return node["default"] if type is None else type(node["default"])
