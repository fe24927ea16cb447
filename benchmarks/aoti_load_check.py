"""AOTInductor: build in one process, load and run in fresh ones, several ways; one line per way.

Why: on the H100 (torch 2.11 cu130) a package built by `aoti_compile_and_package` crashed (SIGSEGV in
`load_pt2` → `AOTIModelPackageLoader`) whenever a fresh process loaded it, while loading in the process
that built it worked. This finds which way of building and loading works in a fresh process, the way
a benchmark repetition loads it. Every build runs in its own process, every load in a new one (never
the builder), each under faulthandler; a way is `ok` (ran, output within tolerance of eager on the same
input), `signal SIGSEGV …` (with faulthandler's innermost frame), `error …`, `timeout` or `skip` (this
torch lacks the switch).

  PYTHONPATH=workflow python benchmarks/aoti_load_check.py --device cuda                 # on the GPU
  PYTHONPATH=workflow python benchmarks/aoti_load_check.py --device cpu --model tiny     # here, in minutes

Ways (build → load):
  package                       aoti_compile_and_package → aoti_load_package (what the backend does)
  package+cuda_init             the same, CUDA's context created first (torch.cuda.init, one allocation)
  package+triton_init           the same, Triton's CUDA driver loaded first (the builder's state)
  package+device_index0         aoti_load_package(device_index=0)
  package+single_threaded       aoti_load_package(run_single_threaded=True)
  package_embed                 kernels embedded in the .so (aot_inductor.embed_kernel_binary) → aoti_load_package
  package_weights_apart         weights beside the .so (aot_inductor.package_constants_in_so=False) → aoti_load_package
  runner_on_extracted_so        the package unzipped; its .so run by AOTIModelContainerRunner{Cuda,Cpu}
  aot_compile+aot_load          torch._inductor.aot_compile → .so → torch._export.aot_load
  aot_compile+aot_load+cuda_init   the same, CUDA's context created first
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
UPSTREAM = "https://github.com/pytorch/pytorch/pull/186943"  # load_package's fallback after a load_pt2 failure

# build name -> inductor options (None: torch._inductor.aot_compile to a bare .so, no package)
BUILDS = {
    "package": {},
    "package_embed": {"aot_inductor.embed_kernel_binary": True},
    "package_weights_apart": {"aot_inductor.package_constants_in_so": False},
    "so": None,
}
# way -> (build it loads, how)
WAYS = {
    "package": ("package", "load_package"),
    "package+cuda_init": ("package", "load_package"),
    "package+triton_init": ("package", "load_package"),
    "package+device_index0": ("package", "load_package"),
    "package+single_threaded": ("package", "load_package"),
    "package_embed": ("package_embed", "load_package"),
    "package_weights_apart": ("package_weights_apart", "load_package"),
    "runner_on_extracted_so": ("package", "runner"),
    "aot_compile+aot_load": ("so", "aot_load"),
    "aot_compile+aot_load+cuda_init": ("so", "aot_load"),
}
CUDA_ONLY = {"package+cuda_init", "package+triton_init", "package+device_index0", "package_embed",
             "aot_compile+aot_load+cuda_init"}  # fmt: skip


def make_model(name: str, device: str, dtype):
    import torch

    torch.manual_seed(0)
    if name == "tiny":  # a few layers of the same kinds as ResNet-18: compiles in seconds on a CPU
        net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.Conv2d(8, 8, 3, stride=2, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
            torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10),
        )  # fmt: skip
    else:
        sys.path.insert(0, str(ROOT / "workflow"))
        from infbench.stages.model import build

        net = build("resnet18", 10, "imagenet")
    return net.eval().to(device, dtype)


def child_build(a: dict) -> dict:
    import torch

    dtype = getattr(torch, a["dtype"])
    model = make_model(a["model"], a["device"], dtype)
    torch.manual_seed(1)
    x = torch.randn(a["batch"], 3, a["size"], a["size"]).to(a["device"], dtype)
    work = Path(a["work"])
    with torch.inference_mode():
        expected = model(x)
    torch.save({"x": x.cpu(), "expected": expected.float().cpu()}, work / f"io-{a['build']}.pt")
    started = time.perf_counter()
    with torch.inference_mode():
        program = torch.export.export(model, (x,))
    options = BUILDS[a["build"]]
    if options is None:
        so = work / "so" / "model.so"
        so.parent.mkdir(exist_ok=True)
        path = torch._inductor.aot_compile(program.module(), (x,), options={"aot_inductor.output_path": str(so)})
    else:
        known = {k: v for k, v in options.items() if _has_config(k)}
        if len(known) < len(options):
            return {"status": "skip", "detail": f"this torch has no {', '.join(set(options) - set(known))}"}
        path = torch._inductor.aoti_compile_and_package(
            program, package_path=str(work / f"{a['build']}.pt2"), inductor_configs=known
        )
    return {"status": "ok", "path": str(path), "build_s": round(time.perf_counter() - started, 1)}


def _has_config(key: str) -> bool:
    from torch._inductor import config

    obj = config
    for part in key.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def child_load(a: dict) -> dict:
    import torch

    way, device = a["way"], a["device"]
    io = torch.load(a["io"])
    if way.endswith("cuda_init"):
        torch.cuda.init()
        torch.empty(1, device="cuda")
        torch.cuda.synchronize()
    if way.endswith("triton_init"):
        from triton.runtime import driver

        driver.active.get_current_device()
        driver.active.utils  # noqa: B018  (compiles/loads Triton's CUDA helper module, as a compiling process has)
    started = time.perf_counter()
    how = WAYS[way][1]
    if how == "load_package":
        kwargs = {"device_index": 0} if way.endswith("device_index0") else {}
        if way.endswith("single_threaded"):
            kwargs["run_single_threaded"] = True
        model = torch._inductor.aoti_load_package(a["artifact"], **kwargs)
    elif how == "aot_load":
        model = torch._export.aot_load(a["artifact"], device)
    else:  # the package's own .so, run by the runner class the package loader wraps
        extracted = Path(a["work"]) / f"extracted-{os.getpid()}"
        with zipfile.ZipFile(a["artifact"]) as z:
            z.extractall(extracted)
        so = next(p for p in extracted.rglob("*.so"))
        if device == "cuda":
            runner = torch._C._aoti.AOTIModelContainerRunnerCuda(str(so), 1, "cuda", str(so.parent))
        else:
            runner = torch._C._aoti.AOTIModelContainerRunnerCpu(str(so), 1)

        def model(x):
            return runner.run([x])

    load_s = time.perf_counter() - started
    x = io["x"].to(device)
    with torch.inference_mode():
        out = model(x)
    out = out[0] if isinstance(out, (list, tuple)) else out
    if device == "cuda":
        torch.cuda.synchronize()
    diff = (out.float().cpu() - io["expected"]).abs().max().item()
    return {"status": "ok", "load_s": round(load_s, 2), "max_abs_diff": diff, "shape": list(out.shape)}


def run_child(kind: str, args: dict, timeout: float) -> dict:
    """One fresh process; its JSON answer, or what killed it."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(args, f)
    cmd = [sys.executable, "-X", "faulthandler", __file__, "--child", kind, f.name]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"status": "timeout", "detail": f"no answer within {timeout:.0f} s"}
    finally:
        os.unlink(f.name)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode == 0 and lines:
        return json.loads(lines[-1])
    err = proc.stderr.strip().splitlines()
    if proc.returncode < 0:
        name = signal.Signals(-proc.returncode).name
        # the crashing thread's innermost frame (faulthandler lists it after "Current thread", most recent first)
        start = next((i for i, line in enumerate(err) if line.startswith("Current thread")), 0)
        frames = [line.strip() for line in err[start:] if line.strip().startswith("File ")]
        return {"status": f"signal {name}", "detail": frames[0] if frames else (err[-1] if err else "")}
    return {"status": "error", "detail": err[-1] if err else f"exit code {proc.returncode}"}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    p.add_argument("--model", default="resnet18", choices=["resnet18", "tiny"])
    p.add_argument("--precision", default=None, choices=["fp32", "fp16", "bf16"], help="default: cuda fp16, cpu fp32")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--ways", default=",".join(WAYS), help="comma-separated subset of: " + ", ".join(WAYS))
    p.add_argument("--timeout", type=float, default=600, help="seconds per build or load process")
    p.add_argument("--work", type=Path, default=None, help="folder for the builds (default: a temporary one)")
    p.add_argument("--out", type=Path, default=None, help="write every result as JSON here")
    args = p.parse_args()
    precision = args.precision or ("fp16" if args.device == "cuda" else "fp32")
    dtype = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[precision]
    work = args.work or Path(tempfile.mkdtemp(prefix="aoti-load-check-"))
    work.mkdir(parents=True, exist_ok=True)
    common = {"device": args.device, "model": args.model, "dtype": dtype, "size": args.size, "batch": args.batch}
    ways = [w for w in args.ways.split(",") if w]
    unknown = set(ways) - set(WAYS)
    if unknown:
        p.error(f"unknown way(s) {', '.join(sorted(unknown))}; known: {', '.join(WAYS)}")
    import torch

    shape = f"{args.batch}x3x{args.size}x{args.size}"
    print(f"torch {torch.__version__}, {args.device}, {args.model} {precision} {shape}, work {work}")
    builds: dict[str, dict] = {}
    results = {}
    for way in ways:
        if args.device == "cpu" and way in CUDA_ONLY:
            results[way] = {"status": "skip", "detail": "CUDA only"}
        else:
            build = WAYS[way][0]
            if build not in builds:
                builds[build] = run_child("build", {**common, "build": build, "work": str(work)}, args.timeout)
                b = builds[build]
                print(f"  build {build:<22} {b['status']} {b.get('build_s', '')} {b.get('detail', '')}", flush=True)
            b = builds[build]
            if b["status"] != "ok":
                results[way] = {"status": "skip", "detail": f"build {build}: {b['status']} {b.get('detail', '')}"}
            else:
                io = str(work / f"io-{build}.pt")
                load = {**common, "way": way, "artifact": b["path"], "io": io, "work": str(work)}
                results[way] = run_child("load", load, args.timeout)
        r = results[way]
        detail = (
            f"load {r['load_s']} s, max|Δ| vs eager {r['max_abs_diff']:.3g}, out {r['shape']}"
            if r["status"] == "ok"
            else r.get("detail", "")
        )
        print(f"{way:<32} {r['status']:<16} {detail}", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        meta = {"torch": torch.__version__, "precision": precision, "upstream": UPSTREAM, **common}
        args.out.write_text(json.dumps({"meta": meta, "builds": builds, "ways": results}, indent=1))
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--child":
        answer = (child_build if sys.argv[2] == "build" else child_load)(json.loads(Path(sys.argv[3]).read_text()))
        print(json.dumps(answer), flush=True)
        sys.exit(0)
    sys.exit(main())
