"""AOTInductor: a package compiled ahead of time for one device, precision and shape.

The rule `compile_aoti` (workflow/rules/compile.smk, `infbench compile-aoti`) builds the package
once with `torch._inductor.aoti_compile_and_package`; a cell only loads it
(`torch._inductor.aoti_load_package`), so benchmark jobs never recompile.

The builder loads each package once in a fresh process; where torch's loader crashes there (SIGSEGV on
the H100 with torch 2.11), it writes a stub naming the crash instead, and the cells report `unavailable`
with that reason (benchmarks/aoti_load_check.py tries the other ways of loading).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from infbench.backends.base import BackendUnavailable
from infbench.backends.torch_compile import use_result_caches
from infbench.backends.torch_eager import TorchEager, load_module
from infbench.backends.unavailable import read_unavailable, write_unavailable
from infbench.core import precisions
from infbench.core.arguments import paths
from infbench.core.integrity import DamagedInput
from infbench.core.io import atomic_path, check_artifact


class AOTInductor(TorchEager):
    def check_available(self) -> None:
        super().check_available()
        stub = read_unavailable(self.artifact)
        if stub is not None:
            raise BackendUnavailable(f"the package {self.artifact} cannot be used here: {stub['error']}")

    def read_artifact(self) -> None:
        """Nothing ahead: the package is the artifact (no checkpoint), and torch's loader reads it onto the device."""

    def load(self) -> None:
        check_artifact(self.artifact, self.artifact_rule)
        self.setup()
        try:
            self.model = self.torch._inductor.aoti_load_package(str(self.artifact))
        except Exception as exc:
            raise DamagedInput(self.artifact, self.artifact_rule, f"AOTInductor cannot load it: {exc}") from exc


# A model's example input at the artifact's one shape (AOTInductor and Torch-TensorRT compile for it).
def example_input(batch: int, size: int, device: str, dtype):
    import torch

    return torch.randn(batch, 3, size, size, device=device, dtype=dtype)


def build_aoti(
    checkpoint: Path,
    out: Path,
    device: str,
    precision: str,
    size: int,
    batch: int,
    max_autotune: bool = False,
    threads: int | None = None,
) -> dict:
    """torch.export the model at (batch, 3, size, size) and AOT-compile it into a .pt2 package."""
    import torch

    use_result_caches()
    if threads:
        torch.set_num_threads(threads)
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("compile_aoti for cuda needs a CUDA device (torch.cuda.is_available() is False)")
    precisions.allow_tf32(precision)
    dtype = precisions.torch_dtype(precision)
    model = load_module(checkpoint, device, dtype)
    example = (example_input(batch, size, device, dtype),)
    started = time.time()
    with torch.inference_mode():
        program = torch.export.export(model, example)
    options = {"max_autotune": True} if max_autotune else {}
    with atomic_path(out, ".pt2") as tmp:
        torch._inductor.aoti_compile_and_package(program, package_path=str(tmp), inductor_configs=options)
        crash = aoti_fresh_load(tmp, device, str(dtype).removeprefix("torch."), batch, size)
    if crash:  # every cell would die the same way: say so once, as 'unavailable' with the reason
        return write_unavailable(out, "aotinductor", f"{crash}; {AOTI_CRASH_NOTE}")
    info = {
        "artifact": str(out),
        "device": device,
        "precision": precision,
        "shape": [batch, 3, size, size],
        "compile_s": round(time.time() - started, 2),
        "torch": torch.__version__,
    }
    print(json.dumps(info))
    return info


# Where torch's package loader crashes in a fresh process (seen on the H100 with torch 2.11 cu130).
AOTI_CRASH_NOTE = (
    "the package was built, but torch's AOTInductor loader (aoti_load_package) crashes in a fresh process on "
    "this machine; no upstream fix known (closest report: https://github.com/pytorch/pytorch/issues/141042); "
    "reproducer and other ways of loading: python benchmarks/aoti_load_check.py --device cuda"
)


_FRESH_LOAD = """
import sys, torch
path, device, batch, size, dtype = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
model = torch._inductor.aoti_load_package(path)
with torch.inference_mode():
    model(torch.randn(batch, 3, size, size, device=device, dtype=getattr(torch, dtype)))
if device == "cuda":
    torch.cuda.synchronize()
"""


def aoti_fresh_load(package: Path, device: str, dtype: str, batch: int, size: int, timeout_s: float = 600):
    """Load the package and run one batch in a fresh process, as a benchmark repetition does.

    None when it ran; the signal and faulthandler's innermost frame when a signal killed the process
    (the loader crashed). Any other failure raises: that is a broken package, not an unusable loader.
    """
    cmd = [sys.executable, "-X", "faulthandler", "-c", _FRESH_LOAD, str(package), device, str(batch), str(size), dtype]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s)
    if proc.returncode == 0:
        return None
    lines = proc.stderr.strip().splitlines()
    if proc.returncode < 0:
        current = next((i for i, line in enumerate(lines) if line.startswith("Current thread")), 0)
        frames = [line.strip() for line in lines[current:] if line.strip().startswith("File ")]
        where = f" at {frames[0]}" if frames else ""
        return f"loading it in a fresh process was killed by {signal.Signals(-proc.returncode).name}{where}"
    last = lines[-1] if lines else f"exit code {proc.returncode}"
    raise RuntimeError(f"the AOTInductor package does not load in a fresh process: {last}")


def add_parser(sub) -> None:
    """`infbench compile-aoti` (holds a GPU on CUDA)."""
    s = sub.add_parser("compile-aoti", help="checkpoint → AOTInductor package (.pt2) for one device/precision/shape")
    paths(s, "--checkpoint", "--out")
    s.add_argument("--device", required=True, choices=["cpu", "cuda"])
    s.add_argument("--precision", required=True, choices=["fp32", "tf32", "fp16", "bf16"])
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--batch", type=int, required=True)
    s.add_argument("--max-autotune", action="store_true", help="Inductor max_autotune while compiling")
    s.add_argument("--threads", type=int, default=0, help="intra-op threads while exporting; 0 = default")
    s.set_defaults(func=_aoti_command, gpu_stage=True)


def _aoti_command(a) -> None:
    build_aoti(a.checkpoint, a.out, a.device, a.precision, a.size, a.batch, a.max_autotune, a.threads)
