"""PyTorch's own x86 INT8 path on the CPU: PT2E quantisation (torchao's X86InductorQuantizer), compiled
with Inductor (backend `torch_pt2e`, precision int8; rule quantize_pt2e, `infbench quantize-pt2e`).

- The build (`quantize_pt2e`): the checkpoint's model exported with `torch.export` (a dynamic batch),
  annotated by `X86InductorQuantizer` with its default static config (per-channel int8 weights,
  per-tensor uint8 activations), observed on the calibration split, converted (`convert_pt2e`: the
  graph with quantize/dequantize ops) and saved as an ExportedProgram (`pt2e/int8.pt2`) with a `.json`
  saying how it was made. Where torchao cannot be imported, the `.pt2` is a stub naming the error and
  the install command: the cells report `unavailable`, and the rule reruns once torchao is installed
  (its version is in the rule's params).
- The cells: the program loaded and compiled by Inductor with freezing on (weights become constants, so
  Inductor fuses the quantize/dequantize pairs into its int8 convolution and linear kernels), one static
  shape per cell like `torch_compile`; the compile happens in the first call, which the warm-up absorbs.
"""

from __future__ import annotations

from pathlib import Path

from infbench.backends.base import BackendUnavailable, import_or_unavailable
from infbench.backends.torch_compile import TorchCompile, use_result_caches
from infbench.backends.unavailable import read_unavailable, write_unavailable
from infbench.core.arguments import paths, schema_default
from infbench.core.integrity import DamagedInput
from infbench.core.io import atomic_path, check_artifact, write_json

INSTALL = "pip install torchao==0.18.0 (or pip install -e '.[pt2e]')"
QUANTIZER = "torchao.quantization.pt2e.quantizer.x86_inductor_quantizer"


def _torchao():
    """torchao's PT2E entry points (prepare_pt2e, convert_pt2e) and its x86 quantizer module."""
    import_or_unavailable("torchao", INSTALL, "torchao (PT2E INT8)")
    from torchao.quantization.pt2e import quantize_pt2e

    return quantize_pt2e, import_or_unavailable(QUANTIZER, INSTALL, "torchao's X86InductorQuantizer")


def one_partition_per_call(gm) -> None:
    """Give each call of an activation module its own source partition. A module called twice (torchvision's
    ResNet blocks call `self.relu` twice) otherwise forms one partition with two outputs from the export's
    module stack, which X86InductorQuantizer's conv-add-relu pattern refuses ('Input partition has more than
    one output node')."""
    import importlib

    import torch

    activations = (torch.nn.ReLU, torch.nn.ReLU6, torch.nn.Hardtanh, torch.nn.Hardswish, torch.nn.SiLU, torch.nn.GELU)
    for node in gm.graph.nodes:
        stack = node.meta.get("nn_module_stack")
        if node.op != "call_function" or node.meta.get("source_fn_stack") or not stack:
            continue
        cls = list(stack.values())[-1][1]
        if isinstance(cls, str):  # "torch.nn.modules.activation.ReLU"
            module, _, name = cls.rpartition(".")
            try:
                cls = getattr(importlib.import_module(module), name)
            except (ImportError, AttributeError, ValueError):
                continue
        if isinstance(cls, type) and issubclass(cls, activations):
            node.meta["source_fn_stack"] = [(node.name, cls)]


def quantize_pt2e(checkpoint: Path, dataset: Path, out: Path, image_size: int, samples: int, threads: int) -> dict:
    """The PT2E INT8 program of the checkpoint's model → `out` (.pt2) and its `.json`; a stub where torchao
    is missing. Returns the record written to the `.json`."""
    try:
        quantize_pt2e_api, xiq = _torchao()
    except BackendUnavailable as exc:
        stub = write_unavailable(out, "torch_pt2e", str(exc))
        write_json(out.with_suffix(".json"), stub)
        return stub
    import torch
    import torchao

    from infbench.stages import model as model_lib
    from infbench.stages import quantize

    torch.set_num_threads(threads)
    net = model_lib.load_checkpoint(checkpoint)
    images = quantize.calibration_images(dataset, image_size, samples, model_lib.input_norm(checkpoint))
    example = (torch.from_numpy(images[:2]),)
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        graph = torch.export.export(net, example, dynamic_shapes=({0: batch},)).module()
    one_partition_per_call(graph)
    quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = quantize_pt2e_api.prepare_pt2e(graph, quantizer)
    step = quantize.calibration_batch(len(images))
    with torch.no_grad():
        for i in range(0, len(images), step):
            prepared(torch.from_numpy(images[i : i + step]))
    converted = quantize_pt2e_api.convert_pt2e(prepared)
    program = torch.export.export(converted, example, dynamic_shapes=({0: batch},))
    with atomic_path(out) as tmp:
        torch.export.save(program, str(tmp))
    ops = [n.target for n in program.graph.nodes if n.op == "call_function"]
    info = {
        "mode": "pt2e X86InductorQuantizer (static, per-channel weights)",
        "torchao": torchao.__version__,
        "torch": torch.__version__,
        "calibration_samples": len(images),
        "calibration_image_size": image_size,
        "quantize_nodes": sum("quantize_per" in str(t) and "dequantize" not in str(t) for t in ops),
    }
    write_json(out.with_suffix(".json"), info)
    print(f"wrote {out}: {info}", flush=True)
    return info


class TorchPT2E(TorchCompile):
    """The PT2E INT8 program compiled by Inductor (freezing on) for the cell's one shape, on the CPU."""

    host_modules = (*TorchCompile.host_modules, QUANTIZER)

    def check_available(self) -> None:
        super().check_available()
        stub = read_unavailable(self.artifact)
        if stub is not None:
            raise BackendUnavailable(f"the PT2E program {self.artifact} cannot be made here: {stub['error']}")
        _torchao()  # its quantize/dequantize ops and Inductor's int8 patterns are registered on import

    def read_artifact(self) -> None:
        """Nothing ahead: the program is read by `load` (no checkpoint)."""

    def load(self) -> None:
        use_result_caches()
        check_artifact(self.artifact, self.artifact_rule)
        self.setup()
        _torchao()
        try:
            module = self.torch.export.load(str(self.artifact)).module()
        except Exception as exc:
            raise DamagedInput(self.artifact, self.artifact_rule, f"torch.export cannot load it: {exc}") from exc
        self.torch._inductor.config.freezing = True  # (as a compile option it failed: no qconv_prepack kernel)
        self.model = self.torch.compile(module, dynamic=False, fullgraph=True)
        self.cudagraphs = False

    def run(self, inputs):
        # no_grad, not inference_mode: Inductor's int8 weight prepacking fails on inference tensors
        with self.torch.no_grad():
            return self.model(inputs)

    def artifact_info(self) -> dict | None:
        info = Path(self.artifact).with_suffix(".json")
        if not info.is_file():
            return None
        import json

        return json.loads(info.read_text())


def add_parser(sub) -> None:
    """`infbench quantize-pt2e`."""
    s = sub.add_parser("quantize-pt2e", help="checkpoint → PT2E INT8 program (X86InductorQuantizer, torchao)")
    paths(s, "--checkpoint", "--dataset", "--out")
    s.add_argument("--image-size", type=int, required=True, help="calibration resolution (the training one)")
    s.add_argument(
        "--samples", type=int, default=schema_default("quantize.calibration_samples"), help="calibration images"
    )
    s.add_argument("--threads", type=int, default=1)
    s.set_defaults(func=lambda a: quantize_pt2e(a.checkpoint, a.dataset, a.out, a.image_size, a.samples, a.threads))
