"""Issue 35 item 5: each cell's result says what ran — its backend's options on its device (defaults included)
and its runtime's version — and the report shows it (summary.md and index.html, "What ran")."""

from __future__ import annotations

import json
from importlib.metadata import version

STUDY = "results/digits/resnet18"


def test_each_result_and_the_report_say_what_ran(reported_workflow):
    ort = json.loads((reported_workflow / f"{STUDY}/bench/onnxruntime/fp32/cpu/32x4.json").read_text())
    torch = json.loads((reported_workflow / f"{STUDY}/bench/torch/fp32/cpu/32x4.json").read_text())
    # the CPU's options only (the CUDA EP's act on no CPU cell), each with its value, the defaults included
    assert ort["ran"]["options"] == {"fixed_shape": False}, ort["ran"]
    assert torch["ran"]["options"] == {"channels_last": False}, torch["ran"]
    assert ort["ran"]["versions"]["onnxruntime"] == version("onnxruntime")
    assert torch["ran"]["versions"] == {"torch": version("torch"), "torchvision": version("torchvision")}
    assert ort["environment"]["versions"]["onnxruntime"] == version("onnxruntime")

    md = (reported_workflow / f"{STUDY}/report/summary.md").read_text()
    ran = md.split("## What ran", 1)[1]
    assert f"- onnxruntime fp32 cpu: onnxruntime {version('onnxruntime')}; options: fixed_shape=False" in ran
    assert f"- torch fp32 cpu: torch {version('torch')}, torchvision {version('torchvision')}" in ran
    html = (reported_workflow / f"{STUDY}/report/index.html").read_text()
    assert '<h2 id="ran">What ran</h2>' in html and "fixed_shape=False" in html
