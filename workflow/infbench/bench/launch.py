"""Start one repetition's measuring process (bench/process.py) and read back its result, or say why it
wrote none (a timeout, a signal, an exit code)."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from infbench.core.cell import Cell
from infbench.core.integrity import DamagedInput
from infbench.core.io import write_json
from infbench.measure.memory import host_peak_mib


def _error_lines(stderr: str) -> list[str]:
    """The lines of the child's stderr worth putting in the result: the last five, or where the
    child crashed (faulthandler's 'Fatal Python error' and the innermost frames below it)."""
    lines = stderr.strip().splitlines()
    fatal = [i for i, line in enumerate(lines) if line.startswith("Fatal Python error")]
    if fatal:
        return [line.strip() for line in lines[fatal[-1] : fatal[-1] + 8] if line.strip()]
    return lines[-5:]


def _signal_name(code: int) -> str:
    try:
        return signal.Signals(-code).name
    except ValueError:
        return f"signal {-code}"


def _no_result(code: int | None, tail: list[str], timeout_s: float) -> dict:
    """Why a measuring process wrote no result: timed out (code None), killed by a signal, or exited."""
    if code is None:
        return {"status": "timeout", "error": f"no result within the cell timeout of {timeout_s} s"}
    if code >= 0:
        return {"status": "error", "error": f"the measuring process exited with code {code}: {' | '.join(tail)}"}
    oom = code == -signal.SIGKILL
    return {
        "status": "oom" if oom else "error",
        "error": f"the measuring process was killed by {_signal_name(code)}"
        + (" (most likely the host ran out of memory)" if oom else "")
        + (f": {' | '.join(tail)}" if tail else ""),
    }


def run_repetition(cell: Cell, args: dict, timeout_s: float) -> dict:
    """One repetition in a fresh process: its result, or a failure (status, error) that says why."""
    started = time.time()
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="infbench-rep-") as tmp:
        args_path, out_path, err_path = Path(tmp, "args.json"), Path(tmp, "result.json"), Path(tmp, "stderr.txt")
        args_path.write_text(json.dumps({**args, "cell": asdict(cell), "parent_pid": os.getpid()}))
        cmd = [sys.executable, "-m", "infbench.bench.process", str(args_path), str(out_path)]
        with open(err_path, "w") as err:
            proc = subprocess.Popen(cmd, stderr=err, start_new_session=True)
            try:
                code = proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                code = None
        stderr = err_path.read_text()
        sys.stderr.write(stderr)
        tail = _error_lines(stderr)
        if code is not None and out_path.exists():
            rep = json.loads(out_path.read_text())
        else:
            rep = _no_result(code, tail, timeout_s)
    rep["process_s"] = round(time.perf_counter() - t0, 3)
    rep["started"], rep["ended"] = started, time.time()
    # Peak resident memory of the measuring processes this one waited for (so far).
    rep["host_peak_mib"] = host_peak_mib(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    return rep


def record_repetition(cell: Cell, args: dict, number: int, out: Path, timeout_s: float) -> dict:
    """Repetition `number` of `cell` as a job of its own: its whole result (or failure) → `out`.

    The first repetition also checks agreement with the fp32 reference. A damaged input raises
    (no file is written: `infbench.core.integrity`); every other failure is written, for the cell's
    job to report.
    """
    rep = run_repetition(cell, {**args, "check_agreement": number == 1}, timeout_s)
    if rep["status"] == "damaged_input":
        raise DamagedInput(*rep["damaged"])
    rep.update(repetition=number, cell=asdict(cell))
    write_json(out, rep)
    return rep
