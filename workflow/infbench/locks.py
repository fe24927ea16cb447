"""Resume after a killed run: Snakemake's directory lock is cleared once the run that took it is gone.

Snakemake locks the working directory while it runs and removes the lock when it ends. A run
killed with SIGKILL (a node failure, `kill -9`, the OOM killer) cannot remove it, and the next
`snakemake report` then refuses to start until `snakemake --unlock`. infbench records which
process took each lock (host, pid and the pid's start time, from the `onstart` hook, which runs
once Snakemake holds the lock) and, when the workflow is parsed again, removes the locks whose
process is no longer running on this host. A lock held by a live run, by another host (a shared
filesystem) or by a run that left no record is never touched: Snakemake's own check then applies.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable
from pathlib import Path

LOCKS = Path(".snakemake") / "locks"
OWNER_GLOB = "infbench-owner-*.json"


def _start_time(pid: int) -> str | None:
    """The process's start time in clock ticks since boot (Linux), to tell a reused pid apart."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return None


def _running(pid: int, start: str | None) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    now = _start_time(pid)
    return start is None or now is None or now == start


def record_owner(lockfiles: Iterable[str | Path], locks: Path = LOCKS) -> None:
    """Note that this process holds `lockfiles` (called from the `onstart` hook)."""
    names = sorted(Path(f).name for f in lockfiles)
    if not names:
        return
    pid = os.getpid()
    locks.mkdir(parents=True, exist_ok=True)
    owner = {"host": socket.gethostname(), "pid": pid, "start": _start_time(pid), "locks": names}
    tmp = locks / f".infbench-owner-{pid}.tmp"
    tmp.write_text(json.dumps(owner))
    os.replace(tmp, locks / f"infbench-owner-{pid}.json")


def clear_stale(locks: Path = LOCKS) -> list[str]:
    """Remove the locks of recorded runs on this host that are gone; one line per run cleared."""
    cleared = []
    host = socket.gethostname()
    for record in sorted(locks.glob(OWNER_GLOB)):
        try:
            owner = json.loads(record.read_text())
            pid = int(owner["pid"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if owner.get("host") != host or _running(pid, owner.get("start")):
            continue
        for name in owner.get("locks", []):
            if name.endswith(".lock") and "/" not in name:
                (locks / name).unlink(missing_ok=True)
        record.unlink(missing_ok=True)
        cleared.append(
            f"infbench: removed the lock of an earlier Snakemake run that is gone (pid {pid} on {host}, "
            f"killed?); its unfinished jobs run again"
        )
    return cleared
