"""The run's budget for adaptive repetitions (`bench.extra_budget_s`), shared by its cell jobs.

After its planned repetitions, a cell in a comparison that is still undecided (bench/repeat.py
`undecided`: against the fastest cell, at batch 1 the quickest, or its baseline) may measure more, each
drawing its process time from one budget per run; a cell whose own interval is wide but whose
comparisons are decided measures no more. The ledger is a small JSON file
under results/, read and written under an exclusive `flock` of a file beside it, so concurrent cell
jobs see one balance. It belongs to the Snakemake run that holds the folder's run lock
(infbench/core/locks.py): a ledger written by an earlier run is started afresh. Run by hand, without a
workflow run, a cell has a budget of its own.

Undecided headline comparisons come first: their cells may spend all of it, a cell undecided only
against its baseline the part above RESERVED (so headline cells, which may come last, still find some).
A draw is the cell's own median repetition time, so a cheap cell pays little for each repetition.

The ledger also remembers when the run last waited in vain for a quiet machine (`busy_recently`).
"""

from __future__ import annotations

import fcntl
import json
import os
import time
from contextlib import contextmanager
from pathlib import Path

from infbench.core.locks import RUN_LOCK

RESERVED = 0.5  # share of the budget only the cells the findings need may spend


def run_id(run_lock: Path = RUN_LOCK) -> str:
    """The workflow run holding the folder (host, pid, start), or this process when run by hand."""
    try:
        held = json.loads(Path(run_lock).read_text() or "null")
    except (OSError, ValueError):
        held = None
    if isinstance(held, dict) and {"host", "pid", "since"} <= held.keys():
        return f"{held['host']}:{held['pid']}:{held['since']}"
    return f"by hand:{os.getpid()}"


class Ledger:
    """`budget_s` seconds of extra repetitions for run `run`, kept in `path` (JSON)."""

    def __init__(self, path: Path, budget_s: float, run: str | None = None):
        self.path, self.budget_s, self.run = Path(path), float(budget_s), run or run_id()

    @contextmanager
    def _state(self):
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_name(self.path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, however the job ends
            try:
                state = json.loads(self.path.read_text())
            except (OSError, ValueError):
                state = None
            if not isinstance(state, dict) or state.get("run") != self.run:
                state = {"run": self.run, "budget_s": self.budget_s, "spent_s": 0.0, "cells": {}}
            yield state
            tmp = self.path.with_name(self.path.name + ".tmp")
            tmp.write_text(json.dumps(state, indent=1))
            tmp.replace(self.path)

    def draw(self, cell: str, cost_s: float, priority: bool) -> bool:
        """Take `cost_s` for one more repetition of `cell` if the budget allows (its part of it)."""
        with self._state() as state:
            floor = 0.0 if priority else RESERVED * self.budget_s
            if self.budget_s - state["spent_s"] - cost_s < floor:
                return False
            state["spent_s"] += cost_s
            state["cells"][cell] = state["cells"].get(cell, 0.0) + cost_s
            return True

    def settle(self, cell: str, drawn_s: float, used_s: float) -> None:
        """Replace a draw by what the repetition really took."""
        with self._state() as state:
            state["spent_s"] += used_s - drawn_s
            state["cells"][cell] = state["cells"].get(cell, 0.0) + used_s - drawn_s

    def busy_recently(self, within_s: float) -> bool:
        """Whether a wait for a quiet machine (interference.wait_until_quiet) found none within the last
        `within_s` seconds of this run: then the next repetitions start at once, so that a machine busy
        for good costs one wait per `within_s`, not one per repetition."""
        with self._state() as state:
            return time.time() - state.get("busy_at", float("-inf")) < within_s

    def note_busy(self) -> None:
        with self._state() as state:
            state["busy_at"] = time.time()

    def spent_s(self) -> float:
        with self._state() as state:
            return state["spent_s"]
