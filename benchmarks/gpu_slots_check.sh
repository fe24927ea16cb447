#!/usr/bin/env bash
# GPU slots on a real GPU host (issue 18), one command from the repository root:
#   bash benchmarks/gpu_slots_check.sh
# (on the lent H100 after `bash benchmarks/h100_study.sh setup`, which it reuses when there).
# Shows: the GPUs NVML lists; a command run under a slot seeing only its GPU (CUDA's UUID = the slot's);
# two jobs wanting the one GPU at once, the second waiting for the first; the probe and one torch
# cell (tiny digits model, trained here for one epoch) recording the GPU they held.
# Everything goes to $OUT/gpu_slots (default /tmp/out/gpu_slots); nothing under results/ is touched.
set -uo pipefail
export PYTHONPATH=/tmp/site:$PWD/workflow PATH=/tmp/bin:$PATH PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/out}/gpu_slots; mkdir -p "$OUT"
WORK=$(mktemp -d /tmp/gpu-slots-check.XXXX)
ib() { python3 -m infbench.cli "$@"; }
exec > >(tee "$OUT/check.log") 2>&1

echo "== nvidia-smi"; nvidia-smi --query-gpu=index,uuid,name --format=csv,noheader
echo "== infbench gpu-slot --list"; ib gpu-slot --list

echo "== a command under a slot: what CUDA sees"
ib gpu-slot -- python3 -c "
import os, torch
p = torch.cuda.get_device_properties(0)
print('CUDA_VISIBLE_DEVICES', os.environ.get('CUDA_VISIBLE_DEVICES'), '| torch sees', torch.cuda.device_count(),
      'device(s); device 0:', p.name, 'GPU-' + str(p.uuid))"

echo "== two jobs, one GPU: the second waits for the first"
ib gpu-slot -- sh -c 'echo first holds $CUDA_VISIBLE_DEVICES; sleep 3; echo first done' > "$OUT/first.log" &
first=$!
sleep 1
ib gpu-slot -- sh -c 'echo second holds $CUDA_VISIBLE_DEVICES' > "$OUT/second.log"
wait "$first"  # (a bare `wait` would also wait for the tee above)
cat "$OUT/first.log" "$OUT/second.log"

echo "== probe and one cell, each on its slot"
ib prepare-data --dataset digits --data-dir "$WORK/data" --out "$WORK/digits.npz" | tail -1
ib train --dataset "$WORK/digits.npz" --checkpoint "$WORK/ckpt.pt" --metrics "$WORK/train.json" --epochs 1 | tail -1
ib flops --checkpoint "$WORK/ckpt.pt" --size 32 --out "$WORK/flops.json" | tail -1
ib reference --checkpoint "$WORK/ckpt.pt" --dataset "$WORK/digits.npz" --size 32 --images 16 --out "$WORK/ref.npz"
ib probe --device cuda --out "$OUT/probe.json" --budget 0.3
ib bench --backend torch --precision fp32 --device cuda --size 32 --batch 8 --artifact "$WORK/ckpt.pt" \
  --reference "$WORK/ref.npz" --probe "$OUT/probe.json" --flops "$WORK/flops.json" --out "$OUT/cell.json" \
  --timeout 120 --mode device --repetitions 2 --max-extra-repetitions 0 --tolerance 0.05 --warmup 0.3 --window 0.1 \
  --window-iterations 5 --windows 3 --latency 0.2 --latency-iterations 20 --energy-window 0.5 \
  --canary-slowdown 1.3 --foreign-cores 0.25
python3 - "$OUT/probe.json" "$OUT/cell.json" <<'PY'
import json, sys
probe, cell = (json.load(open(p)) for p in sys.argv[1:])
print("probe:", probe["status"], "gpu", probe["gpu"])
print("cell:", cell["status"], "gpu", cell["gpu"], "| nvml gpu", (cell.get("nvml") or {}).get("gpu"),
      "| utilisation %", cell["flops"]["utilization_pct"], "| flops note", cell["flops"]["note"])
PY
rm -rf "$WORK"
