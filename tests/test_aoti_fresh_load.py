"""AOTInductor packages are loaded once in a fresh process by their builder; where torch's loader crashes
there, the cells say `unavailable` with the reason (the crash itself is the H100's: torch 2.11 cu130)."""

from __future__ import annotations

import pytest

from infbench.backends.aotinductor import AOTI_CRASH_NOTE, AOTInductor, aoti_fresh_load
from infbench.backends.base import BackendUnavailable
from infbench.backends.unavailable import write_unavailable
from infbench.core.cell import Cell


def test_a_package_that_loads_passes_the_fresh_process_check(tmp_path):
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1)).eval()
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        program = torch.export.export(model, (x,))
    package = torch._inductor.aoti_compile_and_package(program, package_path=str(tmp_path / "m.pt2"))
    assert aoti_fresh_load(package, "cpu", "float32", 2, 8) is None


def test_a_file_that_is_no_package_is_an_error_not_a_crash(tmp_path):
    broken = tmp_path / "broken.pt2"
    broken.write_bytes(b"not a zip archive")
    with pytest.raises(RuntimeError, match="does not load in a fresh process"):
        aoti_fresh_load(broken, "cpu", "float32", 2, 8)


def test_a_crash_stub_makes_the_cell_unavailable_with_its_reason(tmp_path):
    artifact = tmp_path / "aoti" / "cuda" / "fp16" / "224x8.pt2"
    reason = f"loading it in a fresh process was killed by SIGSEGV at File ...; {AOTI_CRASH_NOTE}"
    write_unavailable(artifact, "aotinductor", reason)
    backend = AOTInductor(Cell("resnet18", "aotinductor", "fp16", "cpu", 224, 8), artifact, 1, "compile_aoti")
    with pytest.raises(BackendUnavailable) as info:
        backend.check_available()
    message = str(info.value)
    assert "SIGSEGV" in message and "benchmarks/aoti_load_check.py" in message and "pytorch/issues" in message
