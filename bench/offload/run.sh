#!/usr/bin/env bash
# bench/run offload: builds bench_offload in $ZERO_BUILD_DIR (default build)
# and runs it with its files in $ZERO_BUILD_DIR/bench-offload (on the disk the
# build is on: check with df that it is not a tmpfs). Extra arguments go to
# bench_offload (--n, --range, --reps, --buffers, --block, --qd, --posix, --dir).
# The last line is: summary: nvme_step_over_raw_io=<x> offload_added_over_slowest_part=<y> pcie_bytes_over_deepspeed=<z>
# (the GPU fields are na where there is no CUDA device), after the overlap line
# overlap: offload_overlap_without=<a> offload_exposed_without=<s> offload_overlap_with=<b> offload_exposed_with=<s>
# (the device engine's CPU offload without and with overlap_step; na without a CUDA device).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build bench/offload/bench_offload
dir="$build_dir/bench-offload"
mkdir -p "$dir"
df -hT "$dir" | tail -1 | awk '{print "bench/run offload: files on " $1 " (" $2 "), " $5 " free"}'
exec "$build_dir/bench/offload/bench_offload" --dir "$dir" "$@"
