#!/usr/bin/env bash
# What the lent GPU machine lacks to measure, in chunks the device tool can carry (one chunk per call).
#
#   bash benchmarks/h100_wheels.sh          # in the repository root
#
# The device image (Python 3.12, torch 2.11 cu130, numpy, onnx, CPU-only onnxruntime 1.30, jinja2, pyyaml,
# requests, psutil, ...; /work/.library/device/KINDS.md) has no Snakemake nor onnxruntime-gpu. The GPU
# machine only measures: the report is aggregated where Snakemake and the report's libraries already are
# (benchmarks/gpu_report.sh, from the results it sends back), so polars, altair and vl-convert (~75 MiB)
# stay here. WHEELS is snakemake 9.27.1's dependency closure minus what the image holds (read off
# importlib.metadata of this project's environment), torchao 0.18.0 (issue 36's float8 attempt) and
# mlcommons-loadgen 6.0.17 (the serving cells, issue 37).
# onnxruntime-gpu 1.31.1 (PyPI's build is for CUDA 13: it runs with torch cu130's libraries) travels as
# its unpacked files in one xz tarball: 186 MiB for its CUDA provider where the wheel's zip takes 244 MiB
# in all, a chunk (one device call) fewer; `h100_study.sh setup` unpacks it into /tmp/site.
# Left out on purpose: pulp (only Snakemake's ILP scheduler imports it; the study runs --scheduler greedy).
# typing-extensions is carried although the image has it: pydantic 2.14 needs typing-extensions>=4.16.
# connection-pool 0.0.3 (snakemake needs >=0.0.3) has no wheel on PyPI: it is built here (pure Python).
#
# Output: .device-wheels/c1 … cN (git-ignored), each at most CHUNK_MIB (default 54) MiB: a call carries the
# checkout the device tool sends (~4 MiB, twice where a helper's copy travels beside it) plus one chunk,
# at most 64 MiB. `bash benchmarks/h100_study.sh setup` joins and installs them.
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
WHEELS=(
  snakemake==9.27.1 snakemake-interface-common==1.23.0 snakemake-interface-executor-plugins==9.4.0
  snakemake-interface-logger-plugins==2.1.0 snakemake-interface-report-plugins==1.3.0
  snakemake-interface-scheduler-plugins==2.0.2 snakemake-interface-storage-plugins==4.4.1
  argparse-dataclass==2.0.0 conda-inject==1.3.2 configargparse==1.9.0 docutils==0.22.4 dpath==2.2.0
  fastjsonschema==2.22.3 gitdb==4.0.12 gitpython==3.2.1 greenlet==3.5.6 humanfriendly==10.0 immutables==0.21
  jsonschema==4.26.0 jsonschema-specifications==2025.9.1 jupyter-core==5.9.1 nbformat==5.11.1
  platformdirs==4.14.8 pydantic==2.14.4 pydantic-core==2.50.5 annotated-types==0.8.0 typing-inspection==0.4.5
  referencing==0.37.0 rpds-py==2026.9.1 smart-open==7.7.1 smmap==5.0.3 sqlalchemy==2.0.58 sqlmodel==0.0.37
  tenacity==9.2.1 throttler==1.2.3 traitlets==5.16.1 yte==1.9.4 typing-extensions==4.16.0
  torchao==0.18.0 mlcommons-loadgen==6.0.17
)
ORT=onnxruntime-gpu==1.31.1
SDIST_ONLY=(connection-pool==0.0.3)
dir=.device-wheels
chunk_mib=${CHUNK_MIB:-54}  # lower it if a call says the working tree is over 64 MiB
limit=$((chunk_mib * 1024 * 1024))
rm -rf "$dir"; mkdir -p "$dir/dl"
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dir/dl" "${WHEELS[@]}" "$ORT"
python3 -m pip wheel -q --no-deps -w "$dir/dl" "${SDIST_ONLY[@]}"
mkdir "$dir/ort" && unzip -q "$dir"/dl/onnxruntime_gpu-*.whl -d "$dir/ort" && rm "$dir"/dl/onnxruntime_gpu-*.whl
tar -C "$dir/ort" -cf - . | xz -T0 -6 > "$dir/dl/onnxruntime-gpu.tar.xz" && rm -rf "$dir/ort"
(cd "$dir/dl" && for w in *; do split -b "${chunk_mib}M" -d -a 2 "$w" "$w.part."; rm "$w"; done)
# Largest pieces first, each into the first chunk it fits (first-fit decreasing): fewest chunks, fewest calls.
declare -a fill=()
while read -r size name; do
  for ((i = 0; ; i++)); do
    if [ $i -ge ${#fill[@]} ]; then fill[i]=0; mkdir -p "$dir/c$((i + 1))"; fi
    if [ $((fill[i] + size)) -le $limit ]; then
      mv "$dir/dl/$name" "$dir/c$((i + 1))/"; fill[i]=$((fill[i] + size)); break
    fi
  done
done < <(cd "$dir/dl" && stat -c '%s %n' * | sort -rn)
rmdir "$dir/dl"
n=${#fill[@]}
echo "$(ls "$dir"/c*/ | grep -c '\.whl\.part\.00$') wheels and onnxruntime-gpu's tarball, $(du -sm "$dir" | cut -f1) MiB in $n chunks under $dir:"
for i in $(seq 1 "$n"); do echo "  c$i $((fill[i - 1] / 1048576)) MiB"; done
echo "Device calls, back to back (the machine keeps files 30 s after a call):"
for i in $(seq 1 "$n"); do
  cmd="mkdir -p /tmp/device-wheels && cp $dir/c$i/* /tmp/device-wheels/"
  [ "$i" -eq "$n" ] && cmd="$cmd && bash benchmarks/h100_study.sh setup"
  echo "  carry [\"$dir/c$i\"]  command: $cmd"
done
