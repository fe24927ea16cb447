"""Checks of the config beyond its JSON schema (config/schema.yaml), run at parse time.

Each failure names the key, what is wrong and what is allowed, before any job runs.
"""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    pass


def check_config(config: dict, workdir: str | Path = ".") -> None:
    from infbench import grid

    if config["dataset"] == "cifar10":
        data_dir = Path(workdir, config["data_dir"])
        if not data_dir.is_dir():
            raise ConfigError(
                f"data_dir: '{config['data_dir']}' does not exist; create it and put cifar-10-python.tar.gz "
                "there (or let infbench download it there when the network allows)"
            )
    cells, dropped = grid.expand(config)
    if not cells:
        reasons = "; ".join(d.reason for d in dropped)
        raise ConfigError(f"grid: no cell is left after dropping unsupported combinations ({reasons})")
