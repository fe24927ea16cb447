#!/usr/bin/env bash
# Driver for the lent H100 (see the device tool's README): one step per call, back to back (the
# machine keeps its files only while warm, 30 s after a call). Run from the repository root.
#   setup     after the last wheel chunk (benchmarks/h100_wheels.sh prepares .device-wheels/c1…cN, each call
#             copies one to /tmp/device-wheels): join and install them into /tmp/site (snakemake, torchao,
#             onnxruntime-gpu), put an `infbench` shim on PATH, print the versions
#   aoticheck benchmarks/aoti_load_check.py on CUDA: AOTInductor built and loaded in fresh processes, each way
#   seeds [SECONDS]  the seeds' grid (benchmarks/h100_seeds.yaml: 224/256/384/512 × 1…64, seven variants)
#             through snakemake, up to SECONDS (default 560; resumes where the last call stopped), then the
#             wall-time breakdown (benchmarks/wall_time.py) once the report exists
#   warmcache [ARGS]  benchmarks/warm_compile_cache.py: the max-autotune cells' compiles up front (JOBS at a time,
#             PASSES fresh processes per shape, default 2: the second shows that a measuring process hits the cache)
#   peak [SECONDS]   the opt-in peak overlay (benchmarks/h100_peak.yaml: 224 × {1, 128, 256, 512}, peak
#             settings) in /tmp/peak, a copy of this folder with the seeds' inputs (resumes there)
#   study [SECONDS]  the older every-backend overlay (benchmarks/h100_digits.yaml: 224 × {1, 64})
#   family [SECONDS]  one cell of MobileNet-V3 on each CUDA backend (benchmarks/gpu_family.yaml)
#   serving [SECONDS [CONFIG...]]  the serving cells on CUDA (benchmarks/gpu_serving.yaml: torch and ONNX Runtime fp32/fp16,
#             Offline, Server, SingleStream at 224 px, two requests in flight on CUDA streams of their own)
#   onnxfile [SECONDS]  a user's ONNX file on CUDA (benchmarks/gpu_onnx_file.yaml): resnet18 exported here from
#             torchvision with a dynamic batch, its ONNX Runtime CUDA and TensorRT cells, PyTorch's dropped
#   gputests  the GPU tests of the suite (skipped on the CPU-only CI), on this GPU
#   fidelity  benchmarks/harness_fidelity.py (torch fp16 b256, fp32 b64, fp16 b64, CUDA graphs b64)
#   e2e       one cell in end_to_end mode beside its device-mode twin
#   aoti      each built AOTInductor package loaded and run in a bare process, beside its cell's status
#   save      the small results and the checkpoint (15 MiB parts) under $OUT, for `restore` on the next machine
#   restore   a fresh machine: the checkpoint and small results of the last one (carried in .devrestore), the
#             files the pack left out (reference logits, ONNX) rebuilt, and every file given one mtime
# Environment: TARGETS="file ..." builds those first; TRIGGERS="input code params" after a restore (it does not
# turn off Snakemake 9's mtime check: `restore` makes the mtimes agree, and a fresh machine has no metadata to compare).
# Everything small worth keeping is copied under $OUT (at most 8 files come back: keep it so).
set -uo pipefail
step=${1:?step}; shift || true
export PYTHONPATH=/tmp/site:$PWD/workflow PATH=/tmp/bin:$PATH PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
STUDY=results/digits/resnet18  # grid.study_dir("digits", "resnet18")
DIGITS=(--configfile config/cifar10.yaml benchmarks/h100_digits.yaml)
# GRID='{image_sizes: [224, 512], batch_sizes: [1, 64]}' narrows the seeds' (or the peak's) grid (a config file given last, merged
# into grid:, its backends kept; Snakemake's --config would read the numbers as strings)
[ -n "${GRID:-}" ] && printf 'grid: %s\n' "$GRID" > /tmp/seeds-grid.yaml
SEEDS=(--configfile config/cifar10.yaml benchmarks/h100_seeds.yaml ${GRID:+/tmp/seeds-grid.yaml} --config dataset=digits)
FAMILY=(--configfile config/cifar10.yaml benchmarks/h100_seeds.yaml benchmarks/gpu_family.yaml)
SERVING=(--configfile config/cifar10.yaml benchmarks/gpu_serving.yaml)
ONNXFILE=(--configfile config/cifar10.yaml benchmarks/gpu_onnx_file.yaml)
PEAK=(--configfile config/cifar10.yaml benchmarks/h100_seeds.yaml benchmarks/h100_peak.yaml ${GRID:+/tmp/seeds-grid.yaml}
  --config dataset=digits)

pack() {  # the small results in one archive; the report's tables and page beside it
  # artifacts, images (reference/, data.npz) and caches stay: `restore` and the rules rebuild them
  tar czf "$OUT/results.tgz" --exclude="$STUDY/checkpoint.pt" --exclude='*.pt2' --exclude='*.onnx' \
    --exclude='*.ep' --exclude='*.npz' --exclude='results/cache' results 2>/dev/null || true
  if [ -f $STUDY/report/index.html ]; then
    cp $STUDY/report/summary.md $STUDY/report/summary.csv $STUDY/report/index.html "$OUT/" 2>/dev/null
  fi
}

settle() {  # every file and folder under results/ one mtime: Snakemake reruns a job whose input is newer than its
  # output (whatever --rerun-triggers says), and restored or rebuilt files are newer than the results made of them
  local t; t=$(date +%s); find results -exec touch -h -d "@$t" {} +
}

snake() {  # snakemake for at most $1 seconds on the config given after it, then the cells measured so far
  # The GPU machine measures; the report is aggregated where the report's libraries are, from the results it
  # sends back (benchmarks/gpu_report.sh): --omit-from aggregate, unless REPORT_HERE=1 (polars, altair and
  # vl-convert installed here too).
  local secs=$1; shift
  timeout -k 30 "$secs" python3 -m snakemake ${TRIGGERS:+--rerun-triggers $TRIGGERS} --cores 16 --resources gpu=${GPU_JOBS:-3} \
    --scheduler greedy --rerun-incomplete --keep-going ${TARGETS:-report} $([ "${REPORT_HERE:-0}" = 1 ] || echo --omit-from aggregate) "$@" 2>&1 |
    tee -a "$OUT/study.log" | tail -40
  echo "cells measured: $(ls $STUDY/bench/*/*/cuda/*.json 2>/dev/null | wc -l)"
}

case $step in
setup)
  cd /tmp/device-wheels || exit 1
  for first in *.part.00; do w=${first%.part.00}; cat "$w".part.* > "$w" && rm "$w".part.*; done
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site ./*.whl ||
    exit 1
  tar -xJf onnxruntime-gpu.tar.xz -C /tmp/site || exit 1  # the wheel's files (h100_wheels.sh)
  cd - >/dev/null
  mkdir -p /tmp/bin
  printf '#!/bin/sh\nexec python3 -m infbench.cli "$@"\n' > /tmp/bin/infbench; chmod +x /tmp/bin/infbench
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.sm,clocks.max.sm,power.limit --format=csv | tee "$OUT/gpu.csv"
  python3 - <<'PY'
import sys, torch, onnxruntime as ort, snakemake, torchao  # each must import
from importlib.metadata import version
print(sys.version.split()[0], "torch", torch.__version__, torch.cuda.get_device_name(), "onnxruntime-gpu",
      version("onnxruntime-gpu"), ort.get_available_providers(), *(f"{n} {version(n)}" for n in
      ("snakemake", "torchao")))
PY
  infbench bench --help | head -2  # (the CLI's report commands need polars, which stays where the report is made)
  ;;
aoticheck)
  python3 benchmarks/aoti_load_check.py --device cuda --out "$OUT/aoti_check.json" "$@" 2>&1 | tee "$OUT/aoti_check.log"
  ;;
seeds)  # [SECONDS [SNAKEMAKE ARGS...]], e.g. `seeds 300 --until accuracy reference_logits` for the inputs only
  snake "${1:-560}" "${SEEDS[@]}" "${@:2}"
  # the span from the first job to the last cell (the report's own time is added where it is made)
  if ls $STUDY/bench/*/*/cuda/*.json >/dev/null 2>&1; then python3 benchmarks/wall_time.py $STUDY --out "$OUT/wall_time"; fi
  pack
  ;;
family)  # [SECONDS]: one cell of MobileNet-V3 on each CUDA backend (benchmarks/gpu_family.yaml)
  snake "${1:-400}" "${FAMILY[@]}"
  echo "family cells: $(ls results/digits/mobilenet_v3_large/bench/*/*/cuda/*.json 2>/dev/null | wc -l)"
  pack
  ;;
warmcache)  # Inductor's caches for the max-autotune cells, before they are measured (needs the checkpoint:
  # TARGETS=results/digits/resnet18/checkpoint.pt bash benchmarks/h100_study.sh seeds 300)
  python3 benchmarks/warm_compile_cache.py --checkpoint $STUDY/checkpoint.pt --backend torch_compile_max_autotune \
    --precision fp16 --device cuda --option channels_last=true --jobs "${JOBS:-1}" --passes "${PASSES:-2}" "$@" 2>&1 | tee -a "$OUT/warmcache.log"
  ;;
peak)  # in a folder of its own (see h100_peak.yaml), from the seeds' inputs; the compile caches shared
  P=/tmp/peak; mkdir -p $P/results/digits $P/$STUDY
  cp -a Snakefile workflow config envs profiles benchmarks $P/
  # not reference/: the peak's batches need more images in it (a copy carries no Snakemake record to tell)
  for f in results/digits/data.npz results/probe $STUDY/checkpoint.pt $STUDY/train_metrics.json $STUDY/onnx \
    $STUDY/flops; do [ -e $P/$f ] || cp -a $f $P/$f 2>/dev/null; done
  mkdir -p results/cache; [ -e $P/results/cache ] || ln -s "$PWD/results/cache" $P/results/cache
  cd $P && OUT=$OUT snake "${1:-560}" "${PEAK[@]}"
  if [ -f $STUDY/report/index.html ]; then
    python3 benchmarks/wall_time.py $STUDY --out "$OUT/peak_wall_time"
    cp $STUDY/report/summary.md "$OUT/peak_summary.md"; cp $STUDY/report/summary.csv "$OUT/peak_summary.csv"
  fi
  ;;
study)
  snake "${1:-540}" "${DIGITS[@]}"
  pack
  ;;
serving)  # [SECONDS [CONFIG FILES...]], e.g. a file narrowing serving.scenarios
  snake "${1:-540}" "${SERVING[@]}" "${@:2}"
  ls $STUDY/serving/*/*/cuda/*/*.json 2>/dev/null | wc -l
  for f in $STUDY/serving/*/*/cuda/*/*.json; do
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); f=d.get('figure') or {}; print(sys.argv[1].split('serving/')[1], d['status'], f.get('value'), f.get('unit'), (d.get('error') or d.get('note') or '')[:160])" "$f"
  done
  pack
  ;;
onnxfile)  # [SECONDS]
  mkdir -p mine
  [ -f mine/resnet18.onnx ] || python3 - <<'PY'
import torch, torchvision
torch.manual_seed(0)
net = torchvision.models.resnet18(num_classes=10).eval()  # digits' 10 classes; random weights
torch.onnx.export(net, (torch.zeros(2, 3, 224, 224),), "mine/resnet18.onnx", input_names=["pixels"],
                  output_names=["logits"], dynamic_axes={"pixels": {0: "n"}, "logits": {0: "n"}}, dynamo=False)
PY
  snake "${1:-400}" "${ONNXFILE[@]}"
  for f in results/digits/onnx-resnet18-*/bench/*/*/cuda/*.json results/digits/onnx-resnet18-*/accuracy/*/*/cuda.json; do
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1].split('/',2)[2], d['status'], d.get('throughput_img_s') or d.get('accuracy_top1'), (d.get('error') or '')[:200])" "$f"
  done
  pack
  ;;
gputests)
  # [PYTEST ARGS], e.g. -n 4 (pytest-xdist is in the device image; the tests time nothing)
  python3 -m pytest -q -rs -p no:cacheprovider "$@" tests/test_gpu_backends.py tests/test_timing.py 2>&1 | tee "$OUT/gputests.log" | tail -25
  ;;
fidelity)
  python3 benchmarks/harness_fidelity.py --out "$OUT/fidelity.json" "$@" 2>&1 | tee "$OUT/fidelity.log"
  ;;
save)  # before the machine goes back: what `restore` needs on the next one (copy $OUT's files to .devrestore/)
  pack
  split -b 15M -d -a 2 $STUDY/checkpoint.pt "$OUT/ckpt.part."
  ls -l "$OUT"
  ;;
restore)  # a fresh machine: the checkpoint and the small results of the last one (carried in .devrestore)
  tar xzf .devrestore/results.tgz  # first: prepare-data then writes data.npz's sidecar over the archived one
  infbench prepare-data --dataset digits --data-dir data --out results/digits/data.npz --calib 200 --test 400 \
    --seed 0 --cifar-md5 c58f30108f718f92721af3b95e74349a | tail -1
  mkdir -p $STUDY && cat .devrestore/ckpt.part.* > $STUDY/checkpoint.pt
  settle
  # the files the pack left out (reference/*.npz, onnx/*, ...: their sidecars came in the archive), rebuilt by a
  # run of their own: in the run that continues the study, a rebuilt input would rerun every cell made from it
  left=()
  while IFS= read -r s; do n=${s##*/}; n=${n#.}; f=${s%/*}/${n%.sha256}; [ -e "$f" ] || left+=("$f"); done \
    < <(find results -name '.*.sha256')
  [ ${#left[@]} -eq 0 ] || TARGETS="${left[*]}" snake 540 "${SEEDS[@]}"
  settle
  ls $STUDY/bench/*/*/cuda | wc -l
  ;;
aoti)
  for pkg in $STUDY/aoti/cuda/*/*.pt2; do
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
  for f in $STUDY/bench/aotinductor/*/cuda/*.json; do
    python3 -c "import json,sys; d=json.load(open(sys.argv[1])); print(sys.argv[1], d['status'], d['error'])" "$f"
  done
  ;;
e2e)
  for mode in end_to_end device; do
    infbench bench --backend torch --precision fp16 --device cuda --size 224 --batch 16 --mode $mode \
      --artifact $STUDY/checkpoint.pt --reference $STUDY/reference/224.npz \
      --out results/e2e/torch_fp16_224x16_$mode.json --timeout 300 --repetitions 3 --max-extra-repetitions 2 \
      --tolerance 0.05 --warmup 1 --window 0.2 --window-iterations 5 --windows 5 --latency 0.5 \
      --latency-iterations 100 --energy-window 1 --canary-slowdown 1.3 --foreign-cores 0.25 2>&1 | tail -2
  done
  cp results/e2e/*.json "$OUT/" 2>/dev/null
  ;;
*)
  echo "unknown step '$step' (setup aoticheck seeds family warmcache peak study serving onnxfile gputests fidelity save restore aoti e2e)"
  exit 2
  ;;
esac
