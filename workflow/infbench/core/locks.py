"""One run at a time in a workflow folder; resume after a killed run without `--unlock`.

Snakemake's own directory lock is a set of files it checks and then writes: two runs started
together can both pass the check (or one reads a lock file the other just removed and dies with a
raw FileNotFoundError), and a run killed with SIGKILL leaves its files behind. So a run takes
infbench's own lock first, as it starts and before Snakemake checks its own (workflow/rules/common.smk,
`start_run`; a dry run, `--lint` and a `module` import take none): an exclusive `flock` on
`.snakemake/infbench-run.lock`, held by the Snakemake process until it ends. The kernel releases it
however the process ends (`kill -9`, the OOM killer), so:

* a second run finds it held and stops at once, naming the run that holds it, since when, and
  what to do;
* a run that gets it knows that the run recorded in the file before it is gone. Snakemake's lock
  files that such a run left on this host are then stale and removed (one line), and the run
  resumes. Locks recorded by another host (a shared filesystem), or with no record, are left to
  Snakemake's own check.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import socket
import sys
from pathlib import Path

SNAKEMAKE_LOCKS = Path(".snakemake") / "locks"
RUN_LOCK = Path(".snakemake") / "infbench-run.lock"

_held: dict[Path, int] = {}  # lock file → open descriptor, for this process's lifetime


class FolderBusy(RuntimeError):
    pass


def _command() -> str:
    return " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else "snakemake"


def acquire(run_lock: Path = RUN_LOCK, snakemake_locks: Path | None = SNAKEMAKE_LOCKS) -> list[str]:
    """Hold the folder for this process, or raise FolderBusy; returns notes on stale locks cleared
    (`snakemake_locks` None: none are, for a run whose Snakemake has already written its own)."""
    run_lock = Path(run_lock)
    if run_lock in _held:
        return []
    run_lock.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_lock, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = _read(fd)
        os.close(fd)
        who = (
            f"pid {holder['pid']} on {holder['host']}, started {holder['since']} ({holder['command']})"
            if holder
            else "a run that is just starting"
        )
        kill = f"`kill {holder['pid']}`" if holder else "Ctrl-C in its terminal"
        raise FolderBusy(
            f"another Snakemake run holds this folder: {who}; wait for it to finish, or stop it with {kill}, "
            "then run again (it keeps every finished result)"
        ) from None
    _held[run_lock] = fd
    notes = _clear_stale(_read(fd), Path(snakemake_locks)) if snakemake_locks is not None else []
    me = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": _command(),
    }
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    return notes


def release(run_lock: Path = RUN_LOCK) -> None:
    fd = _held.pop(Path(run_lock), None)
    if fd is not None:
        os.close(fd)


def _read(fd: int) -> dict | None:
    try:
        record = json.loads(os.pread(fd, 65536, 0) or b"null")
        return record if isinstance(record, dict) and {"pid", "host"} <= record.keys() else None
    except ValueError:
        return None


def _clear_stale(previous: dict | None, snakemake_locks: Path) -> list[str]:
    """Snakemake's lock files, left by the recorded run (gone, since we hold its flock) on this host."""
    stale = sorted(snakemake_locks.glob("*.lock"))
    if not stale or previous is None or previous.get("host") != socket.gethostname():
        return []
    for lock in stale:
        lock.unlink(missing_ok=True)
    return [
        f"infbench: removed the lock of an earlier Snakemake run that is gone (pid {previous['pid']} on "
        f"{previous['host']}, started {previous.get('since')}, killed?); its unfinished jobs run again"
    ]
