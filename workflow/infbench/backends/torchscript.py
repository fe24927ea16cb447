"""TorchScript: the model traced at the cell's shape and frozen (`torch.jit.freeze`).

Tracing takes a second, so the cell builds it from the checkpoint instead of reading a cached
artifact. Options: `channels_last` (as for `torch`).
"""

from __future__ import annotations

from infbench.backends.base import BackendUnavailable
from infbench.backends.torch_eager import TorchEager


class TorchScript(TorchEager):
    def load(self) -> None:
        self.setup()
        torch = self.torch
        eager = self.eager_module()
        example = self.zeros_input()
        try:
            with torch.inference_mode():
                traced = torch.jit.trace(eager, example, check_trace=False)
                # freeze: weights become constants, conv+bn folded, ready for the optimizing executor
                self.model = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
        except MemoryError:
            raise
        except Exception as exc:  # a model TorchScript cannot trace or freeze: a limit of the runtime, not a crash
            first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ""
            raise BackendUnavailable(
                f"TorchScript cannot trace or freeze {self.cell.model} ({type(exc).__name__}: {first})"
            ) from exc
