#!/usr/bin/env bash
# bench/run optim: builds bench_optim in $ZERO_BUILD_DIR (default build) and
# runs it. Extra arguments go to bench_optim (--n, --reps, --threads, --quick).
# The last line is: summary: adamw_fp32_over_triad_1t=<x> adamw_fp32_over_triad_2t=<y>
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
build_dir=${ZERO_BUILD_DIR:-build}
case "$build_dir" in /*) ;; *) build_dir="$root/$build_dir" ;; esac
if [ ! -f "$build_dir/build.ninja" ]; then
  meson setup "$build_dir" "$root" --native-file "$root/native/cuda.ini" ${ZERO_MESON_ARGS:-}
fi
ninja -C "$build_dir" bench/optim/bench_optim >/dev/null
exec "$build_dir/bench/optim/bench_optim" "$@"
