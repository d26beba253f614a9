#!/bin/sh
# Compiles every kernel (one translation unit, lora_gateway.cu) into one fatbin: SASS for sm_80
# and sm_90 plus compute_90 PTX for newer GPUs. Without nvcc on the PATH it prints a line and
# succeeds (the CUDA backend then reports itself unavailable); when nvcc fails, this fails.
# Skips the compile when the fatbin is newer than every source and this script.
#
# usage: build.sh [source dir] [output file]
#   defaults: the directory of this script, ../../../target/classes/cuda/lora-gateway.fatbin
# environment: NVCC (default nvcc), NVCC_THREADS (default 2), LG_CUDA_GENCODE (replaces the
#   -gencode flags, e.g. "-gencode arch=compute_90,code=sm_90" for a quick local build)
set -eu

here=$(cd "$(dirname "$0")" && pwd)
src=${1:-$here}
out=${2:-$here/../../../target/classes/cuda/lora-gateway.fatbin}
nvcc=${NVCC:-nvcc}

if ! command -v "$nvcc" >/dev/null 2>&1; then
    echo "[cuda] $nvcc not on the PATH: skipping the CUDA kernels (the CUDA backend will report itself unavailable)"
    exit 0
fi

if [ -s "$out" ] && [ -z "$(find "$src" "$0" \( -name '*.cu' -o -name '*.cuh' -o -name 'build.sh' \) -newer "$out" | head -n 1)" ]; then
    echo "[cuda] $out is up to date"
    exit 0
fi

gencode=${LG_CUDA_GENCODE:-"-gencode arch=compute_80,code=sm_80 -gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90"}
mkdir -p "$(dirname "$out")"
tmp="$out.tmp.$$"
trap 'rm -f "$tmp"' EXIT
start=$(date +%s)
# no --use_fast_math: rope and the softmaxes want accurate exp/sincos, and the single translation
# unit shares one set of flags; kernels that can use approximate math call the intrinsics directly.
# shellcheck disable=SC2086
"$nvcc" -fatbin -O3 -std=c++17 -lineinfo --threads "${NVCC_THREADS:-2}" $gencode -o "$tmp" "$src/lora_gateway.cu"
mv "$tmp" "$out"
echo "[cuda] built $out ($(wc -c <"$out") bytes) in $(($(date +%s) - start)) s with $("$nvcc" --version | tail -n 1)"
