"""TorchScript: the model traced at the cell's shape and frozen (`torch.jit.freeze`).

Tracing takes a second, so the cell builds it from the checkpoint instead of reading a cached
artifact. Options: `channels_last=true` (as for `torch`).
"""

from __future__ import annotations

import numpy as np

from infbench.backends.torch_eager import TorchEager, flag, load_module, setup_precision, to_input


class TorchScript(TorchEager):
    def load(self) -> None:
        import torch

        self.torch = torch
        self.dtype = setup_precision(self.cell.precision, self.threads)
        self.device = torch.device(self.cell.device)
        self.channels_last = flag(self.options, "channels_last")
        self.graph = None
        eager = load_module(self.artifact, self.cell.device, self.dtype, self.channels_last)
        c = self.cell
        example = to_input(
            np.zeros((c.batch_size, 3, c.image_size, c.image_size), np.float32),
            c.device,
            self.dtype,
            self.channels_last,
        )
        with torch.inference_mode():
            traced = torch.jit.trace(eager, example, check_trace=False)
            # freeze: weights become constants, conv+bn folded, ready for the optimizing executor
            self.model = torch.jit.optimize_for_inference(torch.jit.freeze(traced.eval()))
