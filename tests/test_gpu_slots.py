"""GPU slots (infbench/bench/gpu_slots.py) on fake devices: one job per GPU, never a slot left taken.

The slot logic runs for real (real processes, real flock, real Snakemake); only the list of GPUs is
fake (INFBENCH_FAKE_GPUS), since this machine has none. CUDA cells then report 'unavailable', but
they take and hold their slot exactly as on a GPU host.
"""

from __future__ import annotations

import copy
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import REPO, TINY_CONFIG, protocol_args, snakemake, write_config

from infbench.bench import gpu_slots

TWO = "0:GPU-aaaa:Fake A,1:GPU-bbbb:Fake B"
ONE = "0:GPU-aaaa:Fake A"

# A job holding a slot for `hold` seconds, appending (slot, its CUDA_VISIBLE_DEVICES, start, end) to `log`.
HOLDER = """
import json, os, sys, time
from infbench.bench.gpu_slots import slot
log, hold = sys.argv[1], float(sys.argv[2])
with slot("holder") as gpu:
    start = time.time()
    time.sleep(hold)
    end = time.time()
    line = {"uuid": gpu["uuid"], "env": os.environ["CUDA_VISIBLE_DEVICES"], "start": start, "end": end}
    with open(log, "a") as f:
        f.write(json.dumps(line) + "\\n")
"""

# Takes a slot, says so in `ready`, then crashes (exception) or sleeps until killed.
CRASHER = """
import sys, time
from pathlib import Path
from infbench.bench.gpu_slots import slot
with slot("crasher") as gpu:
    Path(sys.argv[1]).write_text(gpu["uuid"])
    if sys.argv[2] == "raise":
        raise SystemError("a crash in the middle of a job")
    time.sleep(600)
"""


@pytest.fixture
def fake(monkeypatch, tmp_path):
    """Fake GPUs and a slots folder of this test's own; returns the env for child processes."""

    def use(gpus: str) -> dict:
        monkeypatch.setenv("INFBENCH_FAKE_GPUS", gpus)
        monkeypatch.setenv("INFBENCH_GPU_SLOTS_DIR", str(tmp_path / "slots"))
        monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        monkeypatch.delenv(gpu_slots.HELD_ENV, raising=False)  # take() sets it in this process
        return {**os.environ, "PYTHONPATH": str(REPO / "workflow"), "PYTHONUNBUFFERED": "1"}

    return use


def overlaps(intervals: list[tuple[float, float]]) -> bool:
    intervals = sorted(intervals)
    return any(b[0] < a[1] for a, b in zip(intervals, intervals[1:], strict=False))


def test_fake_list_parses_and_a_bad_one_says_how(monkeypatch):
    assert gpu_slots.parse_fake(TWO) == [
        {"index": 0, "uuid": "GPU-aaaa", "name": "Fake A"},
        {"index": 1, "uuid": "GPU-bbbb", "name": "Fake B"},
    ]
    assert gpu_slots.parse_fake("") == []
    with pytest.raises(ValueError, match=r"'GPU-aaaa' is not index:uuid:name \(e\.g\. INFBENCH_FAKE_GPUS="):
        gpu_slots.parse_fake("GPU-aaaa")


def test_slot_exports_its_gpu_and_restores_the_environment(fake):
    fake(TWO)
    with gpu_slots.slot("t") as first:
        assert first == {"index": 0, "uuid": "GPU-aaaa", "name": "Fake A"}
        assert os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-aaaa"
        # What the job starts uses the job's slot (no lock of its own) ...
        assert gpu_slots.take("nested", timeout_s=0) == (first, None)
        # ... while another process, which sees only this GPU, finds it taken.
        os.environ.pop(gpu_slots.HELD_ENV)
        with pytest.raises(RuntimeError, match=r"all 1 are held \(GPU 0 by pid \d+ \(t\)\)"):
            gpu_slots.take("nested", timeout_s=0)
        os.environ.pop("CUDA_VISIBLE_DEVICES")  # with every GPU in view, the other one is free
        second, fd = gpu_slots.take("t", timeout_s=0)
        assert second["uuid"] == "GPU-bbbb" and os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-bbbb"
        os.close(fd)
    assert "CUDA_VISIBLE_DEVICES" not in os.environ
    with gpu_slots.slot("t") as again:  # released: the first GPU is free again
        assert again["uuid"] == "GPU-aaaa"


def test_cuda_visible_devices_set_before_limits_the_pool(fake, monkeypatch):
    fake(TWO)
    for visible in ("1", "GPU-bb"):  # an index, or a UUID prefix as CUDA takes it
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", visible)
        with gpu_slots.slot("t") as gpu:
            assert gpu["index"] == 1 and os.environ["CUDA_VISIBLE_DEVICES"] == "GPU-bbbb"
        assert os.environ["CUDA_VISIBLE_DEVICES"] == visible
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # no GPU visible: no slot, nothing changed
    with gpu_slots.slot("t") as gpu:
        assert gpu is None and os.environ["CUDA_VISIBLE_DEVICES"] == ""


def test_a_bad_timeout_setting_says_which(fake, monkeypatch):
    fake(ONE)
    monkeypatch.setenv("INFBENCH_GPU_SLOT_TIMEOUT_S", "1h")
    with pytest.raises(ValueError, match=r"^INFBENCH_GPU_SLOT_TIMEOUT_S='1h' is not a number of seconds$"):
        gpu_slots.take("t")


def test_no_gpu_means_no_slot_and_an_untouched_environment(fake):
    fake("")
    with gpu_slots.slot("t") as gpu:
        assert gpu is None and "CUDA_VISIBLE_DEVICES" not in os.environ


def test_concurrent_jobs_never_share_a_gpu_and_wait_for_one(fake, tmp_path):
    env = fake(TWO)
    log = tmp_path / "holds.jsonl"
    procs = [
        subprocess.Popen([sys.executable, "-c", HOLDER, str(log), "0.5"], env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(6)
    ]
    outputs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0] * 6, outputs
    holds = [json.loads(line) for line in log.read_text().splitlines()]
    assert len(holds) == 6
    assert all(h["env"] == h["uuid"] for h in holds), holds
    assert {h["uuid"] for h in holds} == {"GPU-aaaa", "GPU-bbbb"}
    for uuid in ("GPU-aaaa", "GPU-bbbb"):
        assert not overlaps([(h["start"], h["end"]) for h in holds if h["uuid"] == uuid]), holds
    # Six jobs, two GPUs: some had to wait, and said so.
    assert any("GPUs are held" in out and "waiting" in out for out in outputs), outputs


def test_a_crashed_holder_frees_its_slot(fake, tmp_path):
    env = fake(ONE)
    proc = subprocess.run(
        [sys.executable, "-c", CRASHER, str(tmp_path / "ready"), "raise"], env=env, capture_output=True, text=True
    )
    assert proc.returncode != 0 and "a crash in the middle" in proc.stderr
    assert (tmp_path / "ready").read_text() == "GPU-aaaa"  # it did hold the slot
    gpu, fd = gpu_slots.take("t", timeout_s=0)
    assert gpu["uuid"] == "GPU-aaaa"
    os.close(fd)


def test_kill_9_of_a_holder_leaves_no_stale_slot(fake, tmp_path):
    env = fake(ONE)
    ready = tmp_path / "ready"
    proc = subprocess.Popen([sys.executable, "-c", CRASHER, str(ready), "sleep"], env=env)
    deadline = time.monotonic() + 60
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert ready.exists()
    # Held: another job waits, then fails with a message naming the holder and the fix.
    with pytest.raises(RuntimeError, match=rf"no free GPU within 0.5 s: .*GPU 0 by pid {proc.pid} .*--resources gpu=N"):
        gpu_slots.take("t", timeout_s=0.5)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    # The lock file is still there, with the dead holder's pid in it, yet the slot is free at once.
    lock = tmp_path / "slots" / "GPU-aaaa.lock"
    assert json.loads(lock.read_text())["pid"] == proc.pid
    gpu, fd = gpu_slots.take("t", timeout_s=0)
    assert gpu["uuid"] == "GPU-aaaa"
    os.close(fd)


def test_gpu_slot_command_runs_on_its_gpu_and_holds_it_while_it_runs(fake):
    env = fake(ONE)
    # Inside the wrapped command the slot is taken (by the command itself): the command (and what it
    # starts) uses it without waiting; a process that was not started by the holder cannot take it.
    inner = (
        "import os, sys; from infbench.bench.gpu_slots import take\n"
        "print('visible', os.environ['CUDA_VISIBLE_DEVICES'], 'pid', os.getpid())\n"
        "gpu, fd = take('child of the holder', timeout_s=0)\n"
        "print('inherited', gpu['uuid'], fd)\n"
        "del os.environ['INFBENCH_GPU_SLOT_HELD']\n"
        "try:\n    take('inner', timeout_s=0)\nexcept RuntimeError as e:\n    print('held:', e)\n"
        "sys.exit(7)"
    )
    cmd = [sys.executable, "-m", "infbench.cli", "gpu-slot", "--", sys.executable, "-c", inner]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 7, proc.stderr  # the command's own exit status
    assert "gpu slot: took GPU 0 (Fake A, GPU-aaaa)" in proc.stdout
    pid = re.search(r"visible GPU-aaaa pid (\d+)", proc.stdout).group(1)
    assert "inherited GPU-aaaa None" in proc.stdout, proc.stdout  # no lock of its own: the holder's
    assert f"held: no free GPU within 0 s: all 1 are held (GPU 0 by pid {pid} (" in proc.stdout, proc.stdout
    # ... and free again once it has ended.
    gpu, fd = gpu_slots.take("t", timeout_s=0)
    os.close(fd)


def test_probe_of_another_gpu_model_gives_no_utilisation():
    probe = {"status": "ok", "gpu": {"index": 0, "uuid": "GPU-aaaa", "name": "Fake A"}}
    same_model = {"index": 1, "uuid": "GPU-cccc", "name": "Fake A"}
    other_model = {"index": 1, "uuid": "GPU-bbbb", "name": "Fake B"}
    assert gpu_slots.probe_mismatch(probe, same_model) is None
    assert gpu_slots.probe_mismatch({"status": "ok"}, other_model) is None  # a probe from before slots
    note = gpu_slots.probe_mismatch(probe, other_model)
    assert "ran on Fake A (GPU-aaaa), this cell on Fake B (GPU-bbbb)" in note


def test_every_gpu_stage_on_cuda_takes_a_slot_and_nothing_else_does():
    """A stage holds a GPU for its whole run; `bench` only in its measuring processes (tested below)."""
    from infbench.cli import _uses_gpu, parser

    common = ["--checkpoint", "c", "--out", "o", "--precision", "fp16", "--size", "32", "--batch", "1"]
    cell = ["--backend", "torch", "--artifact", "a", "--reference", "r", *common[2:], *protocol_args()]
    takes = {
        ("compile-torch-tensorrt", *common): True,
        ("compile-aoti", "--device", "cuda", *common): True,
        ("compile-aoti", "--device", "cpu", *common): False,
        ("bench", "--device", "cuda", *cell): False,  # its measuring processes take the slot (bench.hold_gpu)
        ("bench", "--device", "cpu", *cell): False,
        ("probe", "--device", "cuda", "--out", "o"): True,
        ("probe", "--device", "cpu", "--out", "o"): False,
        ("accuracy", "--device", "cuda", "--image-size", "32", *cell[:4], "--dataset", "d", *common[:6]): True,
        ("flops", "--checkpoint", "c", "--size", "32", "--out", "o"): False,
    }
    for argv, expected in takes.items():
        assert _uses_gpu(parser().parse_args(argv)) is expected, argv


# -- through the CLI and Snakemake -----------------------------------------------------------------------
CHECKPOINT = "results/digits/resnet18/checkpoint.pt"
REFERENCE = "results/digits/resnet18/reference/32.npz"  # up to date in the default study (conftest's reported_copy)


def test_cuda_cell_records_its_gpu_and_ignores_another_models_probe(fake, reported_copy):
    env = fake(TWO)
    probe = reported_copy / "probe_other.json"
    probe.write_text(json.dumps({"status": "ok", "peak_tflops": {"fp32": 50.0}, "gpu": {"name": "Other", "uuid": "x"}}))
    out = reported_copy / "cell.json"
    # fmt: off
    cmd = [
        sys.executable, "-m", "infbench.cli", "bench", "--backend", "torch", "--precision", "fp32",
        "--device", "cuda", "--size", "32", "--batch", "4", "--artifact", CHECKPOINT,
        "--reference", REFERENCE, "--out", str(out), "--probe", str(probe), *protocol_args(),
    ]
    # fmt: on
    env["PYTHONPATH"] = str(reported_copy / "workflow")
    proc = subprocess.run(cmd, cwd=reported_copy, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    result = json.loads(out.read_text())
    gpu = result["gpu"]
    assert (gpu["index"], gpu["uuid"], gpu["name"]) == (0, "GPU-aaaa", "Fake A")
    assert "the hardware probe ran on Other (x), this cell on Fake A (GPU-aaaa)" in gpu["probe_mismatch"]
    assert result["flops"]["utilization_pct"] is None and result["flops"]["peak_tflops"] is None
    # A CPU cell takes no slot and says it ran on no GPU.
    cpu = reported_copy / "cpu.json"
    cmd[cmd.index("cuda")] = "cpu"
    cmd[cmd.index(str(out))] = str(cpu)
    proc = subprocess.run(cmd, cwd=reported_copy, env=env, capture_output=True, text=True)
    assert proc.returncode == 0 and "gpu slot" not in proc.stdout, proc.stdout + proc.stderr
    assert json.loads(cpu.read_text())["gpu"] is None


SLOT_LINE = re.compile(r"gpu slot: (took|released) GPU (\d+) \(([^,]+), (\S+?)\)(?:,.*)? at t=([\d.]+)")


def slot_holds(logs: Path) -> dict[Path, tuple[str, float, float]]:
    """log → (uuid, taken at, released at) of every job log that took a GPU slot."""
    holds = {}
    for log in logs.rglob("*.log"):
        found = {m.group(1): (m.group(4), float(m.group(5))) for m in SLOT_LINE.finditer(log.read_text())}
        if found:
            assert set(found) == {"took", "released"} and found["took"][0] == found["released"][0], log
            holds[log] = (found["took"][0], found["took"][1], found["released"][1])
    return holds


def test_snakemake_with_two_gpus_never_runs_two_jobs_on_one_gpu(fake, workflow_copy):
    fake(TWO)
    config = copy.deepcopy(TINY_CONFIG)
    config["grid"]["devices"] = ["cuda"]
    config["grid"]["batch_sizes"] = [1, 2, 4]
    write_config(workflow_copy, config)
    snakemake(workflow_copy, "report", "--resources", "gpu=2")

    results = workflow_copy / "results"
    study = results / "digits" / "resnet18"
    holds = slot_holds(results)
    bench_logs = [log for log in holds if log.is_relative_to(study / "logs" / "bench")]
    rep_logs = [log for log in holds if log.is_relative_to(study / "logs" / "repetitions")]
    reps = config["bench"]["repetitions"]
    # 6 cells' repetitions, the CUDA probe and the 2 variants' accuracy jobs: every GPU job held a slot.
    # The cells' own jobs measured nothing more (on fake GPUs the cells are unavailable): they took none.
    assert len(bench_logs) == 0 and len(rep_logs) == 6 * reps, sorted(map(str, holds))
    assert len(holds) == 6 * reps + 3, sorted(map(str, holds))
    # Never two holders of one GPU at once. (Whether the second GPU was needed depends on timing: a
    # repetition holds its GPU only from CUDA's start to its end, a fraction of a second on fake GPUs.)
    for uuid in ("GPU-aaaa", "GPU-bbbb"):
        assert not overlaps([(t0, t1) for u, t0, t1 in holds.values() if u == uuid]), holds
    # Snakemake never started more GPU jobs than GPUs: no job had to wait for a slot.
    assert not any("waiting" in log.read_text() for log in holds)

    # Each result names the GPU its job held; the fake GPUs are two models, so the cells on the other
    # model than the probe's say that its peak is not theirs.
    probe = json.loads((workflow_copy / "results" / "probe" / "cuda.json").read_text())
    assert probe["gpu"]["uuid"] == holds[results / "logs" / "probe" / "cuda.log"][0]
    for log in rep_logs:
        rep = study / "repetitions" / log.relative_to(study / "logs" / "repetitions").with_suffix(".json")
        assert json.loads(rep.read_text())["gpu"]["uuid"] == holds[log][0]
    cells = list((study / "bench").rglob("*.json"))
    assert len(cells) == 6
    for cell in cells:  # a cell names the GPU of its repetitions (the first, if they differ)
        result = json.loads(cell.read_text())
        first = min(result["repetition_runs"], key=lambda r: r["started"])
        gpu = result["gpu"]
        assert gpu["uuid"] == first["gpu_uuid"]
        assert (gpu["probe_mismatch"] is None) == (gpu["name"] == probe["gpu"]["name"]), gpu
    assert (workflow_copy / "results/digits/resnet18/report/index.html").exists()


def test_a_repetition_imports_first_and_waits_for_the_gpu_only_to_measure(fake, reported_copy, tmp_path):
    """The measuring process takes its slot itself, after its imports: while another job holds the
    GPU it waits (and says so), takes the GPU once free, and gives it back when it ends. Started
    under `infbench gpu-slot`, it uses the slot it was started with instead of waiting for itself."""
    env = fake(ONE)
    env["PYTHONPATH"] = str(reported_copy / "workflow")
    # fmt: off
    cmd = [
        sys.executable, "-m", "infbench.cli", "bench", "--backend", "torch", "--precision", "fp32",
        "--device", "cuda", "--size", "32", "--batch", "4", "--artifact", CHECKPOINT,
        "--reference", REFERENCE, "--repetition", "2", *protocol_args(),
    ]
    # fmt: on
    holds = tmp_path / "holds.jsonl"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(holds), "15"], env=env, stdout=subprocess.PIPE)
    lock = tmp_path / "slots" / "GPU-aaaa.lock"  # the holder has it (its flock follows at once)
    deadline = time.monotonic() + 60
    while not lock.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    out = reported_copy / "rep.json"
    proc = subprocess.run([*cmd, "--out", str(out)], cwd=reported_copy, env=env, capture_output=True, text=True)
    holder.communicate(timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    held = json.loads(holds.read_text())
    rep = json.loads(out.read_text())
    assert rep["status"] == "unavailable" and rep["gpu"]["uuid"] == "GPU-aaaa"  # no CUDA here: after the slot
    took = float(re.search(r"gpu slot: took GPU 0 .* at t=([\d.]+)", proc.stdout).group(1))
    released = float(re.search(r"gpu slot: released GPU 0 .* at t=([\d.]+)", proc.stdout).group(1))
    assert "waiting" in proc.stdout and held["end"] <= took <= released, proc.stdout
    assert rep["gpu_wait_s"] > 0
    # the checkpoint and the reference images were read before the wait, not while holding the GPU
    assert proc.stdout.index("read the artifact (") < proc.stdout.index("gpu slot: all"), proc.stdout
    # Under `infbench gpu-slot`, the measuring process uses its starter's slot: no wait, no deadlock.
    wrapped = [sys.executable, "-m", "infbench.cli", "gpu-slot", "--", *cmd, "--out", str(out)]
    proc = subprocess.run(wrapped, cwd=reported_copy, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "held by the process that started this one" in proc.stdout and "waiting" not in proc.stdout
