"""torch.compile (TorchInductor) in its three modes, one backend name each.

- `torch_compile`                  mode "default"
- `torch_compile_max_autotune`     mode "max-autotune" (Triton/cuBLAS template autotuning; CUDA graphs)
- `torch_compile_reduce_overhead`  mode "reduce-overhead" (CUDA graphs, CUDA only)

One cell compiles one static shape (`dynamic=False`) in its own process; the compilation happens
in the first call, which the measurement's warm-up absorbs. Inductor's and Triton's caches live
under `results/cache/` (not the user's home), so a rerun of a cell reuses the compiled kernels.
Options (declared in backends/registry.py): `channels_last` (as for `torch`), `freezing` (Inductor
freezing: weights become constants folded into the graph), `cudagraphs` (CUDA graphs inside the
compiled module; unset: the mode's own choice, on for max-autotune and reduce-overhead).
"""

from __future__ import annotations

import os
from pathlib import Path

from infbench.backends.base import BackendUnavailable
from infbench.backends.torch_eager import TorchEager

CACHE_ROOT = Path("results/cache")


def use_result_caches(root: Path = CACHE_ROOT) -> None:
    """Point Inductor's (and Triton's) on-disk caches under `root` unless the user chose others."""
    os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", str((root / "inductor").resolve()))
    os.environ.setdefault("TRITON_CACHE_DIR", str((root / "triton").resolve()))


class TorchCompile(TorchEager):
    mode = "default"
    host_modules = (*TorchEager.host_modules, "torch._dynamo", "torch._inductor.compile_fx")

    def prepare_host(self) -> None:
        # Before Inductor is imported: it fixes its cache folders then (on the H100 a measuring process that
        # imported first compiled into /tmp/torchinductor_<user>, missing the cache results/cache held).
        use_result_caches()
        super().prepare_host()

    def load(self) -> None:
        use_result_caches()
        self.setup()
        eager = self.eager_module()
        overrides = self.inductor_overrides()
        modes = self.torch._inductor.list_mode_options(self.mode)
        if overrides:  # the mode's own settings with the options' on top (torch.compile takes mode or options)
            options = {**modes, **overrides}
            self.model = self.torch.compile(eager, options=options, dynamic=False, fullgraph=True)
        else:
            options = modes
            self.model = self.torch.compile(eager, mode=self.mode, dynamic=False, fullgraph=True)
        self.cudagraphs = bool(options.get("triton.cudagraphs")) and self.cell.device == "cuda"

    def inductor_overrides(self) -> dict:
        """Inductor settings from the backend's options (empty: the mode as it is)."""
        overrides = {}
        if self.options["freezing"]:
            overrides["freezing"] = True
        if self.options["cudagraphs"] is not None:
            overrides["triton.cudagraphs"] = self.options["cudagraphs"]
        return overrides

    def run(self, inputs):
        if self.cudagraphs:
            # CUDA-graph trees: each call is a new step; the previous output may be overwritten.
            self.torch.compiler.cudagraph_mark_step_begin()
        try:
            with self.torch.inference_mode():
                return self.model(inputs)
        except self.torch._dynamo.exc.Unsupported as exc:  # fullgraph: a graph break is a limit, not a crash
            first = str(exc).strip().splitlines()[0][:200]
            raise BackendUnavailable(f"torch.compile cannot capture {self.cell.model} in one graph ({first})") from exc

    def compile_cache(self) -> dict:
        """Inductor's FX graph cache and AOTAutograd's cache: hits, misses, saves, bypasses in this process
        (a first batch that missed compiled, and with max-autotune autotuned, again)."""
        from torch._dynamo.utils import counters

        return {
            k: n
            for group in ("inductor", "aot_autograd")
            for k, n in counters[group].items()
            if k.startswith(("fxgraph_cache", "autograd_cache"))
        }


class TorchCompileMaxAutotune(TorchCompile):
    mode = "max-autotune"


class TorchCompileReduceOverhead(TorchCompile):
    mode = "reduce-overhead"
