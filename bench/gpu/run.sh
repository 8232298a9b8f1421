#!/usr/bin/env bash
# bench/run gpu: builds bench_gpu in $ZERO_BUILD_DIR (default build) and runs
# it (bench/gpu/bench_gpu.c says what it measures). Extra arguments go to
# bench_gpu (--quick, --steps N). The last line is:
# summary: adamw_over_d2d=<x> engine_step_over_direct=<y> device_bytes_over_formula=<z>
# Without a CUDA build (no nvcc or cuBLAS) or without a CUDA device it prints
# why and that line with na fields, and exits 77 (skipped), as the GPU tests.
# ZERO_BENCH_PREBUILT=1 runs the program in $ZERO_BUILD_DIR as it is, without
# ninja (scripts/gpu-check on a GPU machine, from a scripts/gpu-bundle copy).
set -euo pipefail
if [ "${ZERO_BENCH_PREBUILT:-0}" = 1 ]; then
  # no configure or build step (lib.sh would run scripts/build without a build.ninja)
  build_dir=${ZERO_BUILD_DIR:-build}
  case "$build_dir" in /*) ;; *) build_dir="$(cd "$(dirname "$0")/../.." && pwd)/$build_dir" ;; esac
else
  . "$(dirname "$0")/../lib.sh"
fi
na() {
  echo "gpu: $*"
  echo "summary: adamw_over_d2d=na engine_step_over_direct=na device_bytes_over_formula=na"
  exit 77
}
if [ "${ZERO_BENCH_PREBUILT:-0}" != 1 ]; then
  if ninja -C "$build_dir" -t targets all 2>/dev/null | grep -q '^bench/gpu/bench_gpu:'; then
    bench_build bench/gpu/bench_gpu
  fi
fi
bin="$build_dir/bench/gpu/bench_gpu"
[ -x "$bin" ] || na "not measured: $build_dir has no bench/gpu/bench_gpu (a build without CUDA or cuBLAS; configure with --native-file native/cuda.ini -Dcuda=enabled)"
# The program links libzero statically: name the CUDA module it loads for device memory.
export ZERO_CUDA_MODULE=${ZERO_CUDA_MODULE:-$build_dir/libzero-cuda.so}
exec "$bin" "$@"
