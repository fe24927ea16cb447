"""AOTInductor: a package compiled ahead of time for one device, precision and shape.

The rule `compile_aoti` (workflow/rules/compile.smk, `infbench compile-aoti`) builds the package
once with `torch._inductor.aoti_compile_and_package`; a cell only loads it
(`torch._inductor.aoti_load_package`), so benchmark jobs never recompile.

The builder loads each package once in a fresh process; where torch's loader crashes there (SIGSEGV on
the H100 with torch 2.11), it writes a stub naming the crash instead, and the cells report `unavailable`
with that reason (benchmarks/aoti_load_check.py tries the other ways of loading).
"""

from __future__ import annotations

from infbench.backends.base import BackendUnavailable, DamagedInput, check_artifact
from infbench.backends.torch_eager import TorchEager


class AOTInductor(TorchEager):
    def check_available(self) -> None:
        super().check_available()
        from infbench.compile import read_unavailable

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
