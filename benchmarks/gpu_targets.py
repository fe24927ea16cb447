"""Issue 36, item 4: the GPU targets' attempts beside the best so far, in one process on the lent GPU.

  python3 benchmarks/gpu_targets.py --out $OUT/targets.json [--parts float8 latency best]

ResNet-18 (torchvision's, 10 classes; the timings do not depend on the weights) at 224 px, fp16, on CUDA:
* `float8`: torchao 0.18.0's float8 inference (`Float8DynamicActivationFloat8WeightConfig`, per-row and
  per-tensor scales) on the model, run eagerly and under torch.compile: whether it runs on this GPU at all,
  and the throughput at batch 512 where it does. The target: >= 88,000 img/s without TensorRT (best so far
  76,436 +- 1.8%, torch.compile max-autotune fp16 batch 512, CUDA graphs, freezing, channels-last, H100).
* `best`: that best-so-far configuration measured again here, beside the attempts (a max-autotune compile:
  minutes of the device's time).
* `latency`: batch-1 p50 (target <= 0.20 ms; best so far 0.272 ms, ONNX Runtime CUDA fp16 with a CUDA graph,
  NHWC): that configuration again, beside a torch CUDA graph of the channels-last fp16 model.

Throughput: CUDA events around windows of back-to-back batches on one device buffer, the median window (and
the windows' spread). Latency: one batch at a time, the host's clock around a call that ends synchronised.
Prints a table last and writes every figure, with the errors of the attempts that do not run, to --out.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
import traceback

import torch
import torchvision

SIZE = 224


def model_fp16(channels_last: bool = True) -> torch.nn.Module:
    m = torchvision.models.resnet18(num_classes=10).eval().cuda().half()
    return m.to(memory_format=torch.channels_last) if channels_last else m


def batch(n: int, channels_last: bool = True) -> torch.Tensor:
    x = torch.randn(n, 3, SIZE, SIZE, device="cuda", dtype=torch.float16)
    return x.contiguous(memory_format=torch.channels_last) if channels_last else x


def throughput(fn, x: torch.Tensor, windows: int = 10, per_window: int = 20) -> dict:
    """Median images/s over `windows` windows of `per_window` batches, after a warm-up of as many."""
    with torch.inference_mode():
        for _ in range(per_window):
            fn(x)
        torch.cuda.synchronize()
        rates = []
        for _ in range(windows):
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(per_window):
                fn(x)
            end.record()
            end.synchronize()
            rates.append(per_window * x.shape[0] / (start.elapsed_time(end) / 1000))
    med = statistics.median(rates)
    return {"img_s": round(med), "windows_spread_pct": round(100 * (max(rates) - min(rates)) / 2 / med, 2)}


def latency(call, iterations: int = 2000) -> dict:
    """p50 and p99 of one synchronised call, ms (host clock), after a warm-up of 200 calls."""
    for _ in range(200):
        call()
    times = []
    for _ in range(iterations):
        t = time.perf_counter()
        call()
        times.append((time.perf_counter() - t) * 1000)
    times.sort()
    return {"p50_ms": round(times[len(times) // 2], 4), "p99_ms": round(times[int(len(times) * 0.99)], 4)}


def compiled(mode: str, x: torch.Tensor):
    torch._inductor.config.freezing = True
    m = torch.compile(model_fp16(), mode=mode)

    def fn(inp):
        torch.compiler.cudagraph_mark_step_begin()
        return m(inp)

    with torch.inference_mode():
        fn(x)
    return fn


def part_float8(rows: list) -> None:
    from torchao.quantization import Float8DynamicActivationFloat8WeightConfig, PerRow, PerTensor, quantize_

    x = batch(512)
    # quantize_ takes nn.Linear only unless told otherwise; ResNet-18's one Linear (512 → 10) is too narrow
    # for a float8 matrix product, so the convolutions (per-tensor scales only) are asked for too
    convs = lambda mod, fqn: isinstance(mod, (torch.nn.Conv2d, torch.nn.Linear))  # noqa: E731
    variants = [
        ("per-row", PerRow(), None),
        ("per-tensor", PerTensor(), None),
        ("per-tensor, convs", PerTensor(), convs),
    ]
    for name, gran, filter_fn in variants:
        for how in ("eager", "torch.compile"):
            label = f"torchao float8 ({name}) {how}, b512"
            try:
                m = torchvision.models.resnet18(num_classes=10).eval().cuda().to(torch.bfloat16)
                m = m.to(memory_format=torch.channels_last)
                quantize_(m, Float8DynamicActivationFloat8WeightConfig(granularity=gran), filter_fn=filter_fn)
                kinds = {"float8 weights": sum("Float8" in type(p).__name__ for p in m.parameters())}
                fn = torch.compile(m) if how == "torch.compile" else m
                rows.append({"attempt": label, **kinds, **throughput(fn, x.to(torch.bfloat16))})
            except Exception as exc:  # an attempt that does not run is a finding: say why
                rows.append({"attempt": label, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:300]}"})
                traceback.print_exc(limit=3)


def part_best(rows: list) -> None:
    x = batch(512)
    started = time.time()
    fn = compiled("max-autotune", x)
    rows.append(
        {
            "attempt": "torch.compile max-autotune fp16 b512, CUDA graphs, freezing, channels-last (best so far)",
            "compile_s": round(time.time() - started, 1),
            **throughput(fn, x),
        }
    )


def part_latency(rows: list) -> None:
    import onnxruntime as ort

    x = batch(1, channels_last=False)
    path = "/tmp/resnet18_fp16.onnx"
    torch.onnx.export(
        model_fp16(channels_last=False),
        (x,),
        path,
        opset_version=17,
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
    )
    opts = {"enable_cuda_graph": "1", "prefer_nhwc": "1", "cudnn_conv_algo_search": "EXHAUSTIVE"}
    session = ort.InferenceSession(path, providers=[("CUDAExecutionProvider", opts)])
    binding = session.io_binding()
    inp = ort.OrtValue.ortvalue_from_numpy(x.cpu().numpy(), "cuda", 0)
    out = ort.OrtValue.ortvalue_from_shape_and_type([1, 10], x.cpu().numpy().dtype, "cuda", 0)
    binding.bind_ortvalue_input("input", inp)
    binding.bind_ortvalue_output("logits", out)
    rows.append(
        {
            "attempt": "ONNX Runtime CUDA fp16, CUDA graph, NHWC, b1 (best so far)",
            **latency(lambda: session.run_with_iobinding(binding)),
        }
    )

    xc = batch(1)
    m = model_fp16()
    with torch.inference_mode():
        for _ in range(3):
            m(xc)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = m(xc)
    del static_out

    def replay():
        graph.replay()
        torch.cuda.synchronize()

    rows.append({"attempt": "torch eager fp16 channels-last in a CUDA graph, b1", **latency(replay)})


PARTS = {"float8": part_float8, "latency": part_latency, "best": part_best}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True)
    p.add_argument("--parts", nargs="+", choices=list(PARTS), default=list(PARTS))
    a = p.parse_args()
    torch.backends.cudnn.benchmark = True
    rows: list[dict] = []
    for part in a.parts:
        started = time.time()
        try:
            PARTS[part](rows)
        except Exception as exc:
            rows.append({"attempt": part, "error": f"{type(exc).__name__}: {exc}"[:400]})
            traceback.print_exc(limit=5)
        print(f"part {part}: {time.time() - started:.1f} s", flush=True)
    doc = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}
    with open(a.out, "w") as f:
        json.dump(doc, f, indent=1)
    print(doc["gpu"], "torch", doc["torch"])
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
