"""Results always match their inputs: nothing stale, nothing overwritten, every error actionable.

Each case is done as a user would do it, on a copy of a workflow folder that a real Snakemake run
took through `report` (the tiny grid: torch and onnxruntime fp32 on the CPU), followed by the
real `snakemake report` (or its dry run). In every case the finished results that the change does
not concern keep their inode and mtime: they were neither rebuilt nor rewritten.
"""

from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import pickle
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import yaml
from conftest import (
    MEASURED,
    TINY_CONFIG,
    measuring_processes,
    planned_jobs,
    protocol_args,
    snakemake,
    start_snakemake,
    write_config,
)

STUDY = "results/digits/resnet18"
ONNX = f"{STUDY}/onnx/fp32.onnx"
TORCH_CELL = f"{STUDY}/bench/torch/fp32/cpu/32x4.json"
ORT_CELL = f"{STUDY}/bench/onnxruntime/fp32/cpu/32x4.json"


def finished(workdir: Path, under: str = "results") -> dict[str, tuple[int, int]]:
    """Every result file under `under` (logs, checksum sidecars and the run's adaptive-repetition ledger aside:
    a run's bookkeeping, not a result) → (inode, mtime)."""
    return {
        str(p.relative_to(workdir)): (p.stat().st_ino, p.stat().st_mtime_ns)
        for p in (workdir / under).rglob("*")
        if p.is_file() and "logs" not in p.parts and not p.name.startswith(".") and "extra_budget" not in p.name
    }


def kept(before: dict, after: dict, changed: set[str]) -> None:
    """Every file of `before` but those in `changed` is still there, same inode, same mtime."""
    lost = {p: v for p, v in before.items() if p not in changed and after.get(p) != v}
    assert not lost, f"finished results rewritten or lost: {sorted(lost)}"


def status(workdir: Path, rel: str) -> str:
    return json.loads((workdir / rel).read_text())["status"]


def truncate_keeping_mtime(path: Path) -> None:
    st = path.stat()
    path.write_bytes(path.read_bytes()[: st.st_size // 2])
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


# -- 1. a deleted result is rebuilt, with what depends on it -----------------------------------


REPS = TINY_CONFIG["bench"]["repetitions"]  # per cell, a job each (rule bench_repetition)
DELETED = {
    TORCH_CELL: {"bench_cell": 1},  # its repetitions are kept: the cell's job combines them again
    f"{STUDY}/repetitions/torch/fp32/cpu/32x4/1.json": {"bench_repetition": 1, "bench_cell": 1},
    f"{STUDY}/accuracy/onnxruntime/fp32/cpu.json": {"accuracy": 1},
    "results/probe/cpu.json": {"probe": 1, "bench_repetition": 2 * REPS, "bench_cell": 2},
    f"{STUDY}/flops/32.json": {"flops": 1, "bench_repetition": 2 * REPS, "bench_cell": 2},
    ONNX: {"export_onnx": 1, "bench_repetition": REPS, "bench_cell": 1, "accuracy": 1},
}


def test_a_deleted_result_or_artifact_is_rebuilt_with_what_depends_on_it(reported_copy):
    wd = reported_copy
    for rel, jobs in DELETED.items():  # what the next run plans, for each file deleted alone
        saved, st = (wd / rel).read_bytes(), (wd / rel).stat()
        (wd / rel).unlink()
        assert planned_jobs(wd, "report") == {**jobs, "aggregate": 1, "render_report": 1, "report": 1}, rel
        (wd / rel).write_bytes(saved)  # put back as it was, for the next file's case
        os.utime(wd / rel, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert planned_jobs(wd, "report") == {}

    before = finished(wd)
    (wd / TORCH_CELL).unlink()
    snakemake(wd, "report")  # the cores of the first run: another --cores reruns every CPU cell
    assert status(wd, TORCH_CELL) in MEASURED
    kept(before, finished(wd), {TORCH_CELL, *(p for p in before if "/report/" in p)})
    summary = pl.read_parquet(wd / STUDY / "report/summary.parquet")
    assert sorted(summary["backend"].to_list()) == ["onnxruntime", "torch"]
    assert planned_jobs(wd, "report") == {}


def test_ctrl_c_mid_cell_then_the_rerun_finishes_it_and_a_second_run_is_refused_meanwhile(reported_copy):
    """Ctrl-C (SIGINT to the run's process group) while the first cell measures: Snakemake removes
    that cell's output; the next `snakemake report` rebuilds it. A second run started while the
    first holds the folder stops at once, with one line naming it."""
    wd = reported_copy
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg["bench"].update(latency_s=3)  # each repetition measures latency for 3 s
    write_config(wd, cfg)
    before = finished(wd)
    run = start_snakemake(wd, "report")  # bench settings changed: both cells rerun, one at a time
    deadline = time.monotonic() + 600
    while not measuring_processes(wd):
        assert run.poll() is None, (wd / "snakemake.out").read_text()
        assert time.monotonic() < deadline, "no cell started"
        time.sleep(0.05)

    second = snakemake(wd, "report", check=False)
    assert second.returncode == 1
    lines = [line for line in second.stderr.splitlines() if line.startswith("infbench:")]
    assert len(lines) == 1, second.stderr
    assert f"another Snakemake run holds this folder: pid {run.pid} on " in lines[0], lines[0]
    assert "started 20" in lines[0] and f"kill {run.pid}" in lines[0], lines[0]

    # The repetition measuring now, looked up right before the interrupt: the one looked up before the
    # second run may have finished meanwhile (on a busy machine that run takes seconds).
    while not (now := measuring_processes(wd)):
        assert run.poll() is None, (wd / "snakemake.out").read_text()
        time.sleep(0.01)
    measured = next(iter(now.values()))
    os.killpg(run.pid, signal.SIGINT)
    run.wait(timeout=120)
    # Snakemake removed the interrupted repetition's output: the next run measures it, then its cell.
    reps = sorted((wd / STUDY / "repetitions" / measured["backend"] / "fp32/cpu/32x4").glob("*.json"))
    assert len(reps) < TINY_CONFIG["bench"]["repetitions"], "the interrupted repetition's old result was kept"
    assert planned_jobs(wd, "report").get("bench_cell") == 2

    resumed = snakemake(wd, "-p", "report")  # -p: every job's block, to count the cells
    log = resumed.stdout + resumed.stderr
    assert status(wd, TORCH_CELL) in MEASURED and status(wd, ORT_CELL) in MEASURED
    assert log.count("rule bench_cell:") >= 1
    remeasured = {p for p in before if "/report/" in p or "/repetitions/" in p}
    kept(before, finished(wd), {TORCH_CELL, ORT_CELL, *remeasured})
    assert planned_jobs(wd, "report") == {}


# -- 2. a damaged artifact is rebuilt; no ok result becomes an error ---------------------------


def test_a_damaged_artifact_is_removed_and_rebuilt_and_no_ok_result_becomes_an_error(reported_copy):
    wd = reported_copy
    before = finished(wd)
    truncate_keeping_mtime(wd / ONNX)  # size changed, mtime kept: Snakemake alone sees nothing
    run = snakemake(wd, "report")
    notes = [line for line in run.stderr.splitlines() if line.startswith("infbench:")]
    assert len(notes) == 1 and f"{ONNX} is damaged" in notes[0] and "infbench export-onnx" in notes[0], notes
    assert "export_onnx" in run.stdout + run.stderr  # the job ran (one line per job)
    assert status(wd, ORT_CELL) in MEASURED and status(wd, f"{STUDY}/accuracy/onnxruntime/fp32/cpu.json") == "ok"
    rebuilt = {ONNX, ORT_CELL, f"{STUDY}/accuracy/onnxruntime/fp32/cpu.json"}
    rebuilt |= {p for p in before if "/repetitions/onnxruntime/" in p}
    kept(before, finished(wd), rebuilt | {p for p in before if "/report/" in p})
    summary = pl.read_parquet(wd / STUDY / "report/summary.parquet")
    assert summary["status"].is_in(MEASURED).all(), summary.select("backend", "status", "error")
    assert planned_jobs(wd, "report") == {}


def test_lint_and_dry_runs_read_the_workflow_only_no_lock_no_removal(reported_copy, tmp_path):
    """Reading the workflow does no work: while a run holds the folder, `snakemake --lint` and `-n` (also
    from another folder, --directory) neither are refused nor take its lock, and a damaged file stays as
    it is; the dry run names it and lists its rebuild. A real run is still refused, before it heals."""
    wd = reported_copy
    truncate_keeping_mtime(wd / ONNX)
    damaged = {rel: (wd / rel).read_bytes() for rel in (ONNX, f"{STUDY}/onnx/.fp32.onnx.sha256")}
    holder = subprocess.Popen(  # a run holding the folder (its lock, as a run takes it)
        [sys.executable, "-c", "from infbench.core import locks; locks.acquire(); print('held', flush=True); input()"],
        cwd=wd, env={**os.environ, "PYTHONPATH": str(wd / "workflow")},
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        record = (wd / ".snakemake/infbench-run.lock").read_bytes()

        lint = snakemake(wd, "--lint")
        assert "Plan:" not in lint.stdout + lint.stderr and "damaged" not in lint.stderr
        elsewhere = tmp_path / "elsewhere"
        elsewhere.mkdir()
        cmd = [sys.executable, "-m", "snakemake", "--cores", "2", "-n", "report"]
        dry = subprocess.run(
            [*cmd, "--snakefile", str(wd / "Snakefile"), "--directory", str(wd)],
            cwd=elsewhere, capture_output=True, text=True, timeout=300,
            env={**os.environ, "PYTHONPATH": str(wd / "workflow")},
        )  # fmt: skip
        assert dry.returncode == 0, dry.stdout + dry.stderr
        assert "Plan: 2 cells on cpu; 2 done, 0 to measure" in dry.stdout + dry.stderr
        assert f"infbench: {ONNX} is damaged: " in dry.stderr and "a run removes it" in dry.stderr, dry.stderr
        assert planned_jobs(wd, "report") == {
            **DELETED[ONNX], "aggregate": 1, "render_report": 1, "report": 1,
        }  # fmt: skip
        assert {rel: (wd / rel).read_bytes() for rel in damaged} == damaged  # not removed, not rewritten
        assert (wd / ".snakemake/infbench-run.lock").read_bytes() == record  # the holder's, untouched

        refused = snakemake(wd, "report", check=False)
        assert refused.returncode == 1
        assert f"another Snakemake run holds this folder: pid {holder.pid} on " in refused.stderr, refused.stderr
        assert {rel: (wd / rel).read_bytes() for rel in damaged} == damaged
    finally:
        holder.kill()
        holder.wait()


def infbench(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(workdir / "workflow")}
    cmd = [sys.executable, "-m", "infbench.cli", *args]
    return subprocess.run(cmd, cwd=workdir, capture_output=True, text=True, timeout=300, env=env)


def test_a_damage_the_checksum_cannot_see_fails_the_job_and_keeps_the_result(reported_copy):
    """No sidecar (a file from an older version): the cell meets the damage. It writes no error
    result over the ok one; it fails with one line, and removes the file so the next run rebuilds it."""
    wd = reported_copy
    result = wd / ORT_CELL
    old = (result.stat().st_ino, result.stat().st_mtime_ns)
    (wd / STUDY / "onnx/.fp32.onnx.sha256").unlink()
    truncate_keeping_mtime(wd / ONNX)
    assert planned_jobs(wd, "report") == {}  # nothing to compare with: the plan cannot see it

    cell = infbench(
        wd, "bench", "--backend", "onnxruntime", "--precision", "fp32", "--device", "cpu", "--size", "32",
        "--batch", "4", "--artifact", ONNX, "--reference", f"{STUDY}/reference/32.npz", "--out", ORT_CELL,
        *protocol_args(),
    )  # fmt: skip
    assert cell.returncode == 1
    last = cell.stderr.strip().splitlines()[-1]
    assert last.startswith("infbench bench: error: ") and ONNX in last and "'export_onnx'" in last, cell.stderr
    assert (result.stat().st_ino, result.stat().st_mtime_ns) == old and status(wd, ORT_CELL) in MEASURED
    assert not (wd / ONNX).exists()

    # The INT8 stage on a damaged fp32 model: the same one line, not protobuf's DecodeError.
    (wd / "elsewhere.onnx").write_bytes(b"\x08\x07garbage")
    quant = infbench(wd, "quantize-int8", "--onnx", "elsewhere.onnx", "--out", "int8.onnx", "--mode", "dynamic")
    assert quant.returncode == 1 and not (wd / "int8.onnx").exists()
    last = quant.stderr.strip().splitlines()[-1]
    assert "elsewhere.onnx is damaged" in last and "'export_onnx'" in last, quant.stderr

    # The removed ONNX is rebuilt by the next run, with exactly what depends on it.
    assert planned_jobs(wd, "report") == {
        "export_onnx": 1, "bench_repetition": REPS, "bench_cell": 1, "accuracy": 1,
        "aggregate": 1, "render_report": 1, "report": 1,
    }  # fmt: skip


# -- 3. studies live side by side --------------------------------------------------------------


def tiny_cifar10(path: Path, per_batch: int = 100) -> str:
    """A real CIFAR-10 python archive (the same members and pickles), of 600 images; its md5."""
    rng = np.random.default_rng(0)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            batch = {
                b"data": rng.integers(0, 256, (per_batch, 3 * 32 * 32), dtype=np.uint8),
                b"labels": [int(v) for v in rng.integers(0, 10, per_batch)],
            }
            blob = pickle.dumps(batch)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_a_second_dataset_builds_beside_the_first_and_the_report_compares_them(reported_copy):
    wd = reported_copy
    before = finished(wd)
    md5 = tiny_cifar10(wd / "data" / "cifar-10-python.tar.gz")
    cfg = copy.deepcopy(TINY_CONFIG)
    cfg.update(dataset="cifar10", data_dir="data")
    cfg["grid"]["backends"] = {"torch": ["fp32"]}

    # An archive whose md5 is not the official one: the error names both and never tells the user to set
    # cifar10_md5 to the file's own md5 (which would disable the only check; issue 35 item 8).
    write_config(wd, cfg)
    failed = snakemake(wd, "report", check=False)
    assert failed.returncode != 0
    out = failed.stdout + failed.stderr
    assert f"has md5 {md5}, expected" in out and "damaged or not the CIFAR-10 archive" in out, failed.stderr[-3000:]
    assert f"set cifar10_md5: {md5}" not in out

    cfg.update(cifar10_md5=md5)
    cfg["report"] = {"compare": [{"label": "digits", "path": f"{STUDY}/bench"}]}
    write_config(wd, cfg)
    snakemake(wd, "report")
    kept(before, finished(wd), set())  # the digits study: every file as it was
    cifar = wd / "results/cifar10/resnet18"
    assert status(wd, "results/cifar10/resnet18/bench/torch/fp32/cpu/32x4.json") in MEASURED
    assert (cifar / "checkpoint.pt").exists() and (wd / "results/cifar10/data.npz").exists()
    meta = json.loads((cifar / "report/meta.json").read_text())
    assert meta["dataset"] == "cifar10"
    summary = pl.read_parquet(cifar / "report/summary.parquet")
    assert summary.height == 3, summary  # this study's torch cell and the digits study's two
    assert "digits" in (cifar / "report/index.html").read_text()
    # Switching back: the digits study is still complete and up to date.
    write_config(wd, TINY_CONFIG)
    assert planned_jobs(wd, "report") == {}


# -- 4. an overlay gives the whole backend map -------------------------------------------------


def planned_cells(workdir: Path, *args: str) -> list[str]:
    out = snakemake(workdir, "-n", "-p", "report", *args).stdout  # -p: every job's block, outputs included
    return sorted(line.split("output:", 1)[1].strip() for line in out.splitlines() if f"output: {STUDY}/bench/" in line)


def test_an_overlay_that_gives_backends_gives_all_of_them(reported_copy):
    wd = reported_copy
    (wd / "mine.yaml").write_text(yaml.safe_dump({"grid": {"backends": {"torch": ["fp32"], "torchscript": ["fp32"]}}}))
    cells = planned_cells(wd, "--configfile", "config/config.yaml", "mine.yaml")
    # torchscript's cell is new; onnxruntime (in the default config only) is not in this run.
    assert cells == [f"{STUDY}/bench/torchscript/fp32/cpu/32x4.json"], cells
    out = snakemake(wd, "-n", "-p", "report", "--configfile", "config/config.yaml", "mine.yaml").stdout
    assert f"{ORT_CELL}" not in out.split("rule aggregate:", 1)[1].split("output:", 1)[0]

    empty = snakemake(wd, "-n", "report", "--config", 'grid={"backends": {}}', check=False)
    assert empty.returncode != 0
    message = empty.stdout + empty.stderr
    expected = "grid.backends: empty; name at least one of: torch, torch_cudagraphs, onnxruntime"
    assert expected in message, message[-2000:]


# -- 5. errors: one line, with the file, the line, the fix ---------------------------------------


def test_config_file_errors_are_one_line_with_file_and_line(reported_copy):
    wd = reported_copy
    (wd / "mine.yaml").write_text("grid:\n  backends: {torch: [fp32]\n  devices: [cpu]\n")
    bad = snakemake(wd, "-n", "report", "--configfile", "config/config.yaml", "mine.yaml", check=False)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("infbench: mine.yaml, line 3, column 3: YAML syntax error"), (
        bad.stderr
    )
    assert "Traceback" not in bad.stderr

    missing = snakemake(wd, "-n", "report", "--configfile", "config/config.yaml", "nope.yaml", check=False)
    assert missing.returncode == 1
    assert missing.stderr.strip().splitlines()[-1].startswith("infbench: config file nope.yaml does not exist"), (
        missing.stderr
    )
    assert "Traceback" not in missing.stderr

    (wd / "config/config.yaml").write_text("dataset: digits\ngrid:\n\timage_sizes: [32]\n")
    tab = snakemake(wd, "-n", "report", check=False)
    assert tab.returncode == 1
    assert tab.stderr.strip().splitlines()[-1].startswith("infbench: config/config.yaml, line 3, column 1"), tab.stderr


# -- 6. a comment or docstring edit reruns nothing; a code edit reruns exactly its cells -----------


def test_a_comment_or_docstring_edit_reruns_nothing_and_a_code_edit_reruns_its_cells(reported_copy):
    wd = reported_copy
    timing = wd / "workflow/infbench/measure/timing.py"
    source = timing.read_text()
    first_line = source.splitlines()[0]
    assert first_line.startswith('"""'), first_line
    timing.write_text(source.replace(first_line, first_line.replace('"""', '"""Reworded. ', 1), 1) + "\n# a comment\n")
    assert planned_jobs(wd, "report") == {}

    ort = wd / "workflow/infbench/backends/onnxruntime.py"
    ort.write_text(ort.read_text() + "\nEDITED = 1\n")
    assert planned_jobs(wd, "report") == {
        "bench_repetition": REPS,
        "bench_cell": 1,
        "accuracy": 1,
        "aggregate": 1,
        "render_report": 1,
        "report": 1,
    }
    timing.write_text(timing.read_text() + "\nEDITED = 1\n")
    assert planned_jobs(wd, "report")["bench_cell"] == 2
