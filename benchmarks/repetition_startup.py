"""What a benchmark repetition's process spends before its first timed batch, step by step.

Each repetition is a fresh process (DESIGN.md, "Measuring honestly"), so this cost is paid 3-5 times
per cell. One fresh process here does what `infbench.bench` does, in its order, and times each step:
interpreter start, infbench's imports, torch, the CUDA context, NVML, the canary, the checkpoint, the
move to the device, the first batch (cuDNN's libraries and its algorithm search) and a second batch.

  PYTHONPATH=workflow python benchmarks/repetition_startup.py --device cuda [--checkpoint PATH] [--runs 3]
Without --checkpoint a randomly initialised ResNet-18 is written to a temporary folder first.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHILD = r"""
import json, sys, time
marks = [("interpreter start", time.time())]
def mark(name):
    marks.append((name, time.time()))
device, checkpoint, batch, size = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
import infbench.bench.process  # noqa: F401  (numpy, infbench's modules: what the child imports first)
mark("import infbench.bench.process")
import torch
mark("import torch")
if device == "cuda":
    torch.cuda.init(); torch.cuda.synchronize()
    mark("CUDA context")
    from infbench.measure.nvml import Nvml
    nvml, _ = Nvml.open(torch.cuda.current_device())
    mark("NVML open")
from infbench.measure.interference import canary_ms
canary_ms(device)
mark("canary")
from infbench.backends.torch_eager import load_module, setup_precision, to_input
dtype = setup_precision("fp16" if device == "cuda" else "fp32", 1)
from infbench.stages.model import load_checkpoint
model = load_checkpoint(checkpoint)
mark("checkpoint → module (torchvision, torch.load)")
model = model.to(torch.device(device), dtype)
if device == "cuda":
    torch.cuda.synchronize()
mark("module → device")
import numpy as np
x = to_input(np.zeros((batch, 3, size, size), np.float32), device, dtype)
for name in ("first batch (cuDNN load, algorithm search)", "second batch"):
    with torch.inference_mode():
        model(x)
    if device == "cuda":
        torch.cuda.synchronize()
    mark(name)
print(json.dumps(marks))
"""


def make_checkpoint(tmp: Path) -> Path:
    import torch

    sys.path.insert(0, str(ROOT / "workflow"))
    from infbench.stages.model import build

    net = build("resnet18", 10, "imagenet").eval()
    ckpt = tmp / "checkpoint.pt"
    torch.save({"arch": "resnet18", "num_classes": 10, "stem": "imagenet", "state_dict": net.state_dict()}, ckpt)
    return ckpt


def one_run(device: str, checkpoint: Path, batch: int, size: int) -> list[tuple[str, float]]:
    env_path = str(ROOT / "workflow")
    started = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, device, str(checkpoint), str(batch), str(size)],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "PYTHONPATH": env_path},
    )
    if proc.returncode != 0:
        sys.exit(f"repetition_startup: the child failed: {proc.stderr.strip().splitlines()[-1:]}")
    marks = json.loads(proc.stdout.strip().splitlines()[-1])
    steps, previous = [], started
    for name, at in marks:
        steps.append((name, at - previous))
        previous = at
    steps.append(("process exit", time.time() - previous))
    return steps


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--checkpoint", type=Path)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--runs", type=int, default=3, help="fresh processes (the first may pay cold file caches)")
    p.add_argument("--out", type=Path, help="write the steps of every run as JSON here")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = args.checkpoint or make_checkpoint(Path(tmp))
        runs = [one_run(args.device, ckpt, args.batch, args.size) for _ in range(args.runs)]
    names = [name for name, _ in runs[0]]
    print(f"{'step':<48}" + "".join(f"{f'run {i + 1} s':>10}" for i in range(len(runs))))
    for k, name in enumerate(names):
        print(f"{name:<48}" + "".join(f"{run[k][1]:>10.3f}" for run in runs))
    print(f"{'total':<48}" + "".join(f"{sum(s for _, s in run):>10.3f}" for run in runs))
    if args.out:
        args.out.write_text(json.dumps(runs, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
