#!/usr/bin/env bash
# bench/run offload-engine: builds bench_offload_engine and zero-optd in
# $ZERO_BUILD_DIR (default build) and times the engine's step (world 1, stage
# 1, AdamW unless --optimizer, bf16) with its optimizer state in the rank, on NVMe (files in
# $ZERO_BUILD_DIR/bench-offload-engine: check with df that it is not a tmpfs)
# and on a local zero-optd, in the same run. Extra arguments go to
# bench_offload_engine (--n, --sub-group, --reps, --threads, --optimizer).
# The last line is: summary: engine_nvme_step_over_host=<x> engine_remote_step_over_host=<y>
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build bench/offload/bench_offload_engine tools/zero-optd/zero-optd
dir="$build_dir/bench-offload-engine"
mkdir -p "$dir"
df -hT "$dir" | tail -1 | awk '{print "bench/run offload-engine: files on " $1 " (" $2 "), " $5 " free"}'
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
echo "bench/run offload-engine: load average $(cut -d' ' -f1-3 /proc/loadavg)"
exec "$build_dir/bench/offload/bench_offload_engine" --optd "$build_dir/tools/zero-optd/zero-optd" --dir "$dir" "$@"
