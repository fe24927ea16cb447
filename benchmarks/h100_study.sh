#!/usr/bin/env bash
# Driver for the lent H100 (see the device tool's README): one step per call, back to back.
#   setup   after the last wheel chunk: unpack the carried site-packages (snakemake, polars,
#           altair, vl-convert, onnxruntime-gpu) into /tmp/site; a shim for the `infbench` command
#   gputests  the GPU tests of the suite (skipped on the CPU-only CI), on this GPU
#   fidelity  benchmarks/harness_fidelity.py (torch fp16 b256, max-autotune fp16 b256, ORT CUDA fp32 b1)
#   study [SECONDS]  the study grid through snakemake (resumes where the last call stopped);
#           TARGETS="file ..." builds those first (the cells most worth the device time)
#   e2e     one cell in end_to_end mode beside its device-mode twin
#   aoti    each built AOTInductor package loaded and run in a bare process, beside its cell's status
# Everything small worth keeping is copied under $OUT.
set -uo pipefail
step=${1:?step}; shift || true
export PYTHONPATH=/tmp/site:$PWD/workflow PATH=/tmp/bin:$PATH PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
CONF=(--configfile config/cifar10.yaml benchmarks/h100_digits.yaml)

pack() {  # the small results, one archive
  tar czf "$OUT/results.tgz" --exclude='results/models' --exclude='results/cache' results 2>/dev/null || true
  if [ -f results/report/index.html ]; then
    cp results/report/summary.md results/report/summary.csv results/report/index.html "$OUT/" 2>/dev/null
    tar czf "$OUT/report.tgz" results/report 2>/dev/null
  fi
}

case $step in
setup)
  cd /tmp/device-wheels && cat site.tar.xz.part.* | xz -d -T0 | tar x -C /tmp && cd - >/dev/null
  mkdir -p /tmp/bin
  printf '#!/bin/sh\nexec python3 -m infbench.cli "$@"\n' > /tmp/bin/infbench; chmod +x /tmp/bin/infbench
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.csv"
  python3 - <<'PY'
import sys, torch, onnxruntime as ort, snakemake, polars
print(sys.version.split()[0], "torch", torch.__version__, torch.cuda.get_device_name(), "ort", ort.__version__,
      ort.get_available_providers(), "snakemake", snakemake.__version__, "polars", polars.__version__)
PY
  ;;
gputests)
  python3 -m pytest -q -rs -p no:cacheprovider tests/test_gpu_backends.py tests/test_timing.py 2>&1 | tee "$OUT/gputests.log" | tail -25
  ;;
fidelity)
  python3 benchmarks/harness_fidelity.py --out "$OUT/fidelity.json" "$@" 2>&1 | tee "$OUT/fidelity.log"
  ;;
restore)  # a fresh machine: the checkpoint and the small results of the last one (carried in .devrestore)
  mkdir -p results/models/resnet18 && cat .devrestore/ckpt.part.* > results/models/resnet18/checkpoint.pt
  tar xzf .devrestore/results.tgz
  infbench prepare-data --dataset digits --data-dir data --out results/data/digits.npz --calib 200 --test 400 \
    --seed 0 --cifar-md5 c58f30108f718f92721af3b95e74349a | tail -1
  ls results/bench/resnet18/*/*/cuda | wc -l
  ;;
study)
  secs=${1:-540}
  # After a restore there is no Snakemake metadata: judge by params/code/input, not by file times.
  timeout -k 30 "$secs" python3 -m snakemake ${TRIGGERS:+--rerun-triggers $TRIGGERS} --cores 16 --resources gpu=1 --scheduler greedy --rerun-incomplete --keep-going \
    ${TARGETS:-report} "${CONF[@]}" 2>&1 | tee -a "$OUT/study.log" | grep -E "^\[|rule |Finished|Error|error|steps \(" | tail -60
  ls results/bench/resnet18/*/*/cuda/ 2>/dev/null | head -80
  pack
  ;;
aoti)
  for pkg in results/models/resnet18/aoti/cuda/*/*.pt2; do
    python3 -X faulthandler - "$pkg" <<'PY' 2>&1 | tail -12
import sys, torch
pkg = sys.argv[1]
batch, size = (int(v) for v in pkg.rsplit("/", 1)[1][:-4].split("x")[::-1])
model = torch._inductor.aoti_load_package(pkg)
x = torch.randn(batch, 3, size, size, device="cuda", dtype=torch.float16)
with torch.inference_mode():
    out = model(x)
torch.cuda.synchronize()
print(pkg, "bare load+run ok", tuple((out[0] if isinstance(out, (list, tuple)) else out).shape))
PY
  done
  for f in results/bench/resnet18/aotinductor/*/cuda/*.json; do
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1], d['status'], d['error'])" "$f"
  done
  ;;
e2e)
  for mode in end_to_end device; do
    infbench bench --backend torch --precision fp16 --device cuda --size 224 --batch 16 --mode $mode \
      --artifact results/models/resnet18/checkpoint.pt --checkpoint results/models/resnet18/checkpoint.pt \
      --dataset results/data/digits.npz --out results/e2e/torch_fp16_224x16_$mode.json --time-budget 3 2>&1 | tail -2
  done
  pack
  ;;
esac
