"""Installed distributions' versions, read from their metadata (no import of the package itself: asking
for torch's version must not cost torch's import)."""

from __future__ import annotations

from importlib import metadata


def installed_version(distribution: str) -> str | None:
    """The installed version of `distribution`, None where it is not installed."""
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None
