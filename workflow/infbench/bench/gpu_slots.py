"""One GPU per job: a slot taken under a lock and exported as CUDA_VISIBLE_DEVICES.

Snakemake counts GPUs (`--resources gpu=K` runs at most K GPU jobs at once) but does not tell a
job which GPU is its own, so every job would use device 0. Each GPU job (benchmark cell, probe,
accuracy or compile on `cuda`) therefore takes a free GPU here for its whole run:

* The GPUs come from NVML (nvidia-ml-py), else `nvidia-smi`; only those listed in a
  CUDA_VISIBLE_DEVICES set before the job (by SLURM or the user; indices or UUIDs) are used.
  `INFBENCH_FAKE_GPUS="0:GPU-aaaa:Fake A,1:GPU-bbbb:Fake B"` (index:uuid:name, comma separated;
  empty = no GPU) replaces the discovery, for tests on machines without a GPU.
* A slot is an exclusive `flock` on `<uuid>.lock` in INFBENCH_GPU_SLOTS_DIR (default
  `/tmp/infbench-gpu-slots-<uid>`, host-local, so every infbench run of this user on the host
  shares the GPUs' slots). The kernel drops the lock when its holder's file is closed, however the
  process ends (exception, timeout, `kill -9`): a slot is never left taken by a dead job.
* The holder exports CUDA_VISIBLE_DEVICES=<uuid> (a UUID, so that CUDA's device order does not
  matter) before any CUDA context exists, and the measuring child inherits it.
* When every GPU is held (more GPU jobs than GPUs: `--resources gpu=K` above the GPU count), the
  job waits, at most INFBENCH_GPU_SLOT_TIMEOUT_S seconds (default 3600), then fails naming the holders.
* A benchmark repetition takes its slot in the measuring process itself, after what needs no GPU
  (imports, the artifact and reference images read into host memory) and before CUDA starts, and keeps
  it until that process ends: with `--resources gpu=K` above the GPU count, the next repetitions start
  Python, import torch and read their inputs while one measures.
* The holder also exports INFBENCH_GPU_SLOT_HELD=<uuid>: a process it starts (a measuring child
  under `infbench gpu-slot -- infbench bench …`) uses that slot instead of waiting for it.

Each job's log gets a line when it takes its slot and one when it releases it (with times).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import fcntl
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

FAKE_ENV = "INFBENCH_FAKE_GPUS"
DIR_ENV = "INFBENCH_GPU_SLOTS_DIR"
TIMEOUT_ENV = "INFBENCH_GPU_SLOT_TIMEOUT_S"
HELD_ENV = "INFBENCH_GPU_SLOT_HELD"
DEFAULT_TIMEOUT_S = 3600.0
POLL_S = 0.2


def parse_fake(text: str) -> list[dict]:
    """`index:uuid:name,…` → [{index, uuid, name}]; a malformed entry is a ValueError naming it."""
    gpus = []
    for entry in filter(None, (e.strip() for e in text.split(","))):
        parts = entry.split(":", 2)
        if len(parts) != 3 or not parts[0].isdigit() or not parts[1]:
            raise ValueError(
                f"{FAKE_ENV} entry {entry!r} is not index:uuid:name "
                f"(e.g. {FAKE_ENV}='0:GPU-aaaa:Fake A,1:GPU-bbbb:Fake B')"
            )
        gpus.append({"index": int(parts[0]), "uuid": parts[1], "name": parts[2]})
    return gpus


def _nvml_gpus() -> list[dict] | None:
    """The GPUs NVML lists, or None where NVML cannot be used."""
    try:
        import pynvml

        pynvml.nvmlInit()
    except Exception:
        return None
    gpus = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            try:  # a GPU this process may not open (cgroups) is not one of its GPUs
                handle = pynvml.nvmlDeviceGetHandleByIndex(i)
                uuid, name = pynvml.nvmlDeviceGetUUID(handle), pynvml.nvmlDeviceGetName(handle)
            except Exception:
                continue
            decode = lambda v: v.decode() if isinstance(v, bytes) else v  # noqa: E731  (older nvidia-ml-py: bytes)
            gpus.append({"index": i, "uuid": decode(uuid), "name": decode(name)})
    finally:
        pynvml.nvmlShutdown()
    return gpus


def _smi_gpus() -> list[dict]:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=index,uuid,name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    if out.returncode != 0:
        return []
    rows = [[v.strip() for v in line.split(",", 2)] for line in out.stdout.splitlines() if line.strip()]
    return [{"index": int(r[0]), "uuid": r[1], "name": r[2]} for r in rows if len(r) == 3 and r[0].isdigit()]


def discover() -> list[dict]:
    """Every GPU of this host: [{index, uuid, name}] in NVML's (PCI bus) order."""
    if FAKE_ENV in os.environ:
        return parse_fake(os.environ[FAKE_ENV])
    gpus = _nvml_gpus()
    return _smi_gpus() if gpus is None else gpus


def usable(gpus: list[dict], visible: str | None) -> list[dict]:
    """The GPUs a CUDA_VISIBLE_DEVICES value set before the job allows (all of them when unset)."""
    if visible is None:
        return gpus
    wanted = [v.strip() for v in visible.split(",") if v.strip()]
    # CUDA accepts an index or a UUID (or a unique prefix of one); so do we.
    return [
        g
        for g in gpus
        if any(w == str(g["index"]) or (w.startswith("GPU-") and g["uuid"].startswith(w)) for w in wanted)
    ]


def slots_dir() -> Path:
    # /tmp, not $TMPDIR: Snakemake and SLURM may give each job a TMPDIR of its own, and all jobs must meet here.
    return Path(os.environ.get(DIR_ENV) or f"/tmp/infbench-gpu-slots-{os.getuid()}")


def _lock_path(folder: Path, gpu: dict) -> Path:
    return folder / (re.sub(r"[^A-Za-z0-9_.-]", "_", gpu["uuid"]) + ".lock")


def _try_lock(path: Path, label: str) -> int | None:
    """An open descriptor holding `path`'s exclusive flock, or None when another process holds it."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EAGAIN, errno.EACCES):
            return None
        raise
    # Who holds it, for the message of a job that waits in vain (stale after release: read only while locked).
    holder = {"pid": os.getpid(), "host": socket.gethostname(), "job": label, "since": time.time()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(holder).encode(), 0)
    return fd


def _holders(folder: Path, gpus: list[dict]) -> str:
    parts = []
    for g in gpus:
        try:
            h = json.loads(_lock_path(folder, g).read_text())
            parts.append(f"GPU {g['index']} by pid {h['pid']} ({h['job']})")
        except (OSError, ValueError, KeyError):
            parts.append(f"GPU {g['index']}")
    return ", ".join(parts)


def describe(gpu: dict) -> str:
    return f"GPU {gpu['index']} ({gpu['name']}, {gpu['uuid']})"


def take(label: str = "", timeout_s: float | None = None) -> tuple[dict | None, int | None]:
    """(the GPU taken, the descriptor holding its lock), CUDA_VISIBLE_DEVICES set to it; (None, None)
    where no GPU is found. Waits while every GPU is held; RuntimeError after `timeout_s`."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    found = discover()
    gpus = usable(found, visible)
    if not gpus:
        why = f"CUDA_VISIBLE_DEVICES={visible!r} names none of them" if found else "none found"
        print(f"gpu slot: no GPU slot taken: GPUs {why}", flush=True)
        return None, None
    inherited = [g for g in gpus if g["uuid"] == os.environ.get(HELD_ENV)]
    if inherited:  # started by the slot's holder: its GPU, its lock
        print(f"gpu slot: uses {describe(inherited[0])}, held by the process that started this one", flush=True)
        return dict(inherited[0]), None
    if timeout_s is None:
        try:
            timeout_s = float(os.environ.get(TIMEOUT_ENV) or DEFAULT_TIMEOUT_S)
        except ValueError:
            raise ValueError(f"{TIMEOUT_ENV}={os.environ[TIMEOUT_ENV]!r} is not a number of seconds") from None
    folder = slots_dir()
    folder.mkdir(parents=True, exist_ok=True)
    label = label or f"pid {os.getpid()}"
    deadline, waited = time.monotonic() + timeout_s, False
    while True:
        for gpu in gpus:  # lowest index first: with one job at a time, always the same GPU
            fd = _try_lock(_lock_path(folder, gpu), label)
            if fd is not None:
                os.environ["CUDA_VISIBLE_DEVICES"] = os.environ[HELD_ENV] = gpu["uuid"]
                taken = f"took {describe(gpu)}, CUDA_VISIBLE_DEVICES={gpu['uuid']}, at t={time.time():.6f}"
                print(f"gpu slot: {taken}", flush=True)
                return dict(gpu), fd
        if time.monotonic() >= deadline:
            raise RuntimeError(
                f"no free GPU within {timeout_s:g} s: all {len(gpus)} are held ({_holders(folder, gpus)}); "
                f"run Snakemake with --resources gpu=N where N is at most the number of GPUs, or raise {TIMEOUT_ENV}"
            )
        if not waited:
            print(f"gpu slot: all {len(gpus)} GPUs are held ({_holders(folder, gpus)}); waiting", flush=True)
            waited = True
        time.sleep(POLL_S)


def release(gpu: dict, fd: int) -> None:
    """Give back a slot `take` returned (its log line, the flock dropped, HELD_ENV no longer ours)."""
    print(f"gpu slot: released {describe(gpu)} at t={time.time():.6f}", flush=True)
    os.close(fd)  # drops the flock
    os.environ.pop(HELD_ENV, None)


@contextlib.contextmanager
def slot(label: str = "", timeout_s: float | None = None) -> Iterator[dict | None]:
    """Hold a free GPU for the block (see `take`): yields {index, uuid, name}, or None where no GPU
    is found (the job then runs as before, and a CUDA cell reports 'unavailable'). Released, and
    CUDA_VISIBLE_DEVICES restored, when the block ends however it ends."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    gpu, fd = take(label, timeout_s)
    try:
        yield gpu
    finally:
        if fd is not None:
            release(gpu, fd)
            if visible is None:
                os.environ.pop("CUDA_VISIBLE_DEVICES", None)
            else:
                os.environ["CUDA_VISIBLE_DEVICES"] = visible


def probe_mismatch(probe: dict | None, gpu: dict | None) -> str | None:
    """Why a cell's utilisation cannot use `probe`: it measured another GPU model (None if it fits).

    The probe runs once per device, on whichever GPU its job got: on a host of one GPU model (the
    usual case) that is every cell's GPU model. Where models differ, a cell on another model than
    the probe's gets no utilisation (a peak of another GPU would be wrong), and says so.
    """
    probed = (probe or {}).get("gpu")
    if not probed or not gpu or probed.get("name") == gpu.get("name"):
        return None
    return (
        f"the hardware probe ran on {probed.get('name')} ({probed.get('uuid')}), this cell on "
        f"{gpu['name']} ({gpu['uuid']}): no utilisation against another GPU model's peak"
    )


def add_parser(sub) -> None:
    """`infbench gpu-slot`."""
    s = sub.add_parser("gpu-slot", help="run a command on a free GPU of its own (CUDA_VISIBLE_DEVICES), or --list")
    s.add_argument("--list", action="store_true", help="print the GPUs that slots are taken from, and exit")
    s.add_argument("--timeout", type=float, default=None, help="seconds to wait for a free GPU (default 3600)")
    s.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    s.set_defaults(func=_command)


def _command(a) -> None:
    if a.list:
        for gpu in usable(discover(), os.environ.get("CUDA_VISIBLE_DEVICES")):
            print(describe(gpu))
        return
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    if not command:
        raise ValueError("gpu-slot needs a command to run: infbench gpu-slot -- COMMAND [ARGS...]")
    # The command itself holds the slot's lock (inherited across exec): released when it ends, even by kill -9.
    gpu, fd = take(shlex.join(command), a.timeout)
    if fd is not None:
        os.set_inheritable(fd, True)
    sys.stdout.flush()
    os.execvp(command[0], command)
