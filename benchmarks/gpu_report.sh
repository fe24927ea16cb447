#!/usr/bin/env bash
# The report of a GPU run, made here from the results the GPU machine sent back (it only measures: issue 36).
#
#   bash benchmarks/gpu_report.sh RESULTS_TGZ REPORT_DIR [SNAKEMAKE CONFIG ARGS...]
#   bash benchmarks/gpu_report.sh /work/.device/.../results.tgz results/digits/resnet18/report \
#       --configfile config/cifar10.yaml benchmarks/h100_seeds.yaml --config dataset=digits
#
# In a copy of the workflow under WORK (default /tmp/gpu-report), RESULTS_TGZ (h100_study.sh's pack: the
# cells, their repetitions, accuracy, train metrics and probes, without checkpoints and ONNX files) is
# unpacked and Snakemake runs only the report's two rules (--allowed-rules aggregate render_report): every
# other file is taken as the GPU machine left it. Prints the report's own seconds (add them to the GPU
# run's span from first job to last cell) and leaves the report in WORK/REPORT_DIR.
set -euo pipefail
tgz=$(realpath "${1:?results archive}"); report=${2:?report folder}; shift 2
work=${WORK:-/tmp/gpu-report}
rm -rf "$work"; mkdir -p "$work"
cp -a Snakefile workflow config envs profiles benchmarks "$work/"
cd "$work"
tar xzf "$tgz"
t=$(date +%s); find results -exec touch -h -d "@$t" {} +  # one mtime: nothing older than its inputs
start=$(date +%s.%N)
# the targets first: --allowed-rules takes every word after it
PYTHONPATH=$PWD/workflow python3 -m snakemake "$report/index.html" "$report/summary.md" --cores 2 \
  --allowed-rules aggregate render_report "$@"
echo "report made here in $(python3 -c "import sys; print(round(float(sys.argv[2]) - float(sys.argv[1]), 1))" \
  "$start" "$(date +%s.%N)") s: $work/$report"
