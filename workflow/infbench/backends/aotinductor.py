"""AOTInductor: a package compiled ahead of time for one device, precision and shape.

The rule `compile_aoti` (workflow/rules/compile.smk, `infbench compile-aoti`) builds the package
once with `torch._inductor.aoti_compile_and_package`; a cell only loads it
(`torch._inductor.aoti_load_package`), so benchmark jobs never recompile.
"""

from __future__ import annotations

from infbench.backends.base import DamagedInput, check_artifact
from infbench.backends.torch_eager import TorchEager


class AOTInductor(TorchEager):
    def load(self) -> None:
        check_artifact(self.artifact, self.artifact_rule)
        self.setup()
        try:
            self.model = self.torch._inductor.aoti_load_package(str(self.artifact))
        except Exception as exc:
            raise DamagedInput(self.artifact, self.artifact_rule, f"AOTInductor cannot load it: {exc}") from exc
