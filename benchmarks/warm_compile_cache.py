"""Fill Inductor's on-disk caches (results/cache/) for a study's torch.compile cells before they are measured.

Each repetition of a torch.compile cell is a fresh process that compiles in its first batch; with Inductor's
FX graph cache and autotuning cache under results/cache/ (backends/torch_compile.py) only the first process
of each shape compiles cold: the others load the compiled graph. On a lent GPU the cold compiles of a whole
grid (max-autotune: tens of seconds per shape) dominate; this does them up front, several shapes at once
(--jobs), each in a fresh process that loads the backend exactly as a cell does (same class, options,
precision settings, hence the same cache keys), runs one batch and reports its seconds. The measurement
itself is untouched: cells still time every repetition in its own process, and a cache hit only skips the
compilation. With --jobs > 1 the autotuning of concurrent shapes shares the GPU, so its kernel choices may
differ from an undisturbed run's (those choices are what the cells then measure): use --jobs 1 for that.

  PYTHONPATH=workflow python benchmarks/warm_compile_cache.py --checkpoint results/digits/resnet18/checkpoint.pt \\
      --backend torch_compile_max_autotune --precision fp16 --device cuda --option channels_last=true \\
      --sizes 224 256 384 512 --batches 1 4 8 16 32 64 --jobs 4 --passes 2

Each process starts exactly as a measuring one does (the backend's `instance`, typed options, `prepare_host`'s
imports, the thread count of `infbench bench --threads 0`), so that both use the same caches with the same keys.
(On the H100 a cache filled by this script's processes, which then skipped `prepare_host`, missed in every
measuring process: importing Inductor writes its default folder, /tmp/torchinductor_<user>, into the
environment, and the measuring processes, which import first, compiled there. `prepare_host` now sets the
study's folders first.) A second pass (--passes 2) shows each shape's `fxgraph_cache_hit`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

CHILD = r"""
import json, sys, time
import numpy as np
from infbench.core.cell import Cell
from infbench.backends.registry import spec
backend_name, precision, device, size, batch, checkpoint, options, threads = sys.argv[1:9]
cell = Cell("resnet18", backend_name, precision, device, int(size), int(batch))
# exactly as a measuring process (bench.measure_repetition) starts: same cache folders, same keys
s = spec(backend_name)
backend = s.instance(cell, checkpoint, int(threads), s.option_values(json.loads(options)))
backend.prepare_host()
backend.read_artifact()
backend.check_available()
started = time.perf_counter()
backend.load()
backend.run(backend.prepare(np.zeros((cell.batch_size, 3, cell.image_size, cell.image_size), np.float32)))
backend.synchronize()
print(json.dumps({"seconds": round(time.perf_counter() - started, 1), "caches": backend.compile_cache()}))
"""


def warm(args, size: int, batch: int) -> tuple[int, int, str]:
    cmd = [sys.executable, "-c", CHILD, args.backend, args.precision, args.device, str(size), str(batch)]
    options = dict(o.split("=", 1) for o in args.option)
    cmd += [str(args.checkpoint), json.dumps(options), str(os.cpu_count())]  # threads: as `infbench bench --threads 0`
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or [f"exit code {proc.returncode}"]
        return size, batch, f"failed: {tail[0]}"
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return size, batch, f"{out['seconds']} s {out['caches']}"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--backend", default="torch_compile_max_autotune")
    p.add_argument("--precision", default="fp16")
    p.add_argument("--device", default="cuda")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="as the study's backend_options")
    p.add_argument("--sizes", type=int, nargs="+", default=[224, 256, 384, 512])
    p.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8, 16, 32, 64])
    p.add_argument("--jobs", type=int, default=1, help="shapes compiled at once")
    p.add_argument("--passes", type=int, default=1, help="times each shape is loaded, each in a fresh process")
    args = p.parse_args()
    if not args.checkpoint.is_file():
        sys.exit(f"warm_compile_cache: {args.checkpoint} does not exist; train first (snakemake ... {args.checkpoint})")
    shapes = [(s, b) for s in args.sizes for b in args.batches]
    for n in range(1, args.passes + 1):
        started = time.perf_counter()
        with ThreadPoolExecutor(args.jobs) as pool:
            for size, batch, what in pool.map(lambda sb: warm(args, *sb), shapes):
                print(f"pass {n}: {args.backend} {args.precision} {args.device} {size}x{batch}: {what}", flush=True)
        took = time.perf_counter() - started
        print(f"pass {n}: {len(shapes)} shapes in {took:.0f} s ({args.jobs} at a time)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
