#!/usr/bin/env bash
# bench/run ckpt: builds bench_ckpt and zero-ckpt-merge in $ZERO_BUILD_DIR
# (default build) and runs bench_ckpt on 2 ranks through zero-launch: save and
# load throughput per rank of a 40M-parameter stage-3 checkpoint (240 MB per
# rank) against a raw write+fsync and read of the same bytes, the fletcher32
# cost, and zero-ckpt-merge time and peak RSS. Output also goes to
# bench/results/ckpt.txt. The last line is
#   summary: save_over_raw=<x> load_over_raw=<y> merge_peak_rss_over_largest_tensor=<z>
# Env: ZERO_BENCH_REPEATS (default 5), ZERO_BENCH_CKPT_DIR (default a fresh
# directory under ${TMPDIR:-/tmp}, removed afterwards; put it on the
# filesystem you checkpoint to).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build bench/ckpt/bench_ckpt tools/zero-ckpt-merge/zero-ckpt-merge tools/zero-launch/zero-launch
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
if [ -n "${ZERO_BENCH_CKPT_DIR:-}" ]; then
  dir=$ZERO_BENCH_CKPT_DIR; mkdir -p "$dir"
else
  dir=$(mktemp -d "${TMPDIR:-/tmp}/zero-bench-ckpt-XXXXXX")
  trap 'rm -rf "$dir"' EXIT
fi
mkdir -p "$root/bench/results"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), filesystem of $dir: $(df -T "$dir" | awk 'NR==2 {print $2}')" | tee "$root/bench/results/ckpt.txt"
"$build_dir/tools/zero-launch/zero-launch" --launcher local --num_gpus 2 --master_port 0 \
  "$build_dir/bench/ckpt/bench_ckpt" "$dir" "$build_dir/tools/zero-ckpt-merge/zero-ckpt-merge" \
  "${ZERO_BENCH_REPEATS:-5}" | tee -a "$root/bench/results/ckpt.txt"
