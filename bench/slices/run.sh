#!/usr/bin/env bash
# bench/run slices: the peak working memory of a stage-3 trainer in llm.c's
# layout (16 tensors, 12 of them stacked over L layers; fp32, AdamW) that
# gathers and hands over gradients layer by layer (zero_gather_slices,
# zero_param_grad_slice), against the same trainer gathering whole tensors,
# in the same launch. Two configs: "bounded" (stage3_prefetch_bucket_size one
# layer, stage3_max_reuse_distance 0: nothing kept for reuse) and
# "deepspeed-defaults". Each prints zero_engine_memory's buffers_peak, pools
# and total for both trainers, and rank 0's peak RSS after each (the layer
# trainer runs first, so the second figure is the larger of the two).
#
# ZERO_BENCH_WORLD (default 2) ranks; ZERO_BENCH_SLICES_SIZE "L C V T"
# (default "12 384 8192 256", about 24e6 parameters; "12 768 50257 1024" is
# GPT-2 124M, about 1 GB of model state per rank at world 2).
# The trainer is tests/engine/slices_check (SLICES_CHECK_ONLY=memory), so the
# build needs -Denable_tests=true (the default).
#
# Then the gradient slices' collective (bench/slices/bench_grad_slice.c), one
# layer-by-layer backward's worth of slices at the same L and C: the allreduce
# the first version used against the reduce-scatter of each slice's range now,
# alternated ZERO_BENCH_SLICES_REPS (default 7) times, on the direct path
# (shared buffers) and on the ring. The last line is
#   summary: bounded_layer_over_whole=<r> bounded_layer_peak_mib=<a> bounded_whole_peak_mib=<b>
#            defaults_layer_over_whole=<s> grad_range_over_allreduce_time_direct=<t>
#            grad_range_over_allreduce_time_ring=<u> grad_range_over_allreduce_bytes=<v>
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build tests/engine/slices_check tools/zero-launch/zero-launch bench/slices/bench_grad_slice
world=${ZERO_BENCH_WORLD:-2}
size=${ZERO_BENCH_SLICES_SIZE:-12 384 8192 256}
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg); world $world; L C V T = $size"
SLICES_CHECK_ONLY=memory SLICES_MEMORY_SIZE="$size" \
  "$build_dir/tools/zero-launch/zero-launch" --launcher local --num_gpus "$world" --master_port 0 \
  "$build_dir/tests/engine/slices_check" "$scratch" | tee "$scratch/out.txt"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
read -r L C _ _ <<<"$size"
reps=${ZERO_BENCH_SLICES_REPS:-7}
for path in direct ring; do
  flag=""
  [ "$path" = ring ] && flag=--ring
  "$build_dir/tools/zero-launch/zero-launch" --launcher local --num_gpus "$world" --master_port 0 \
    "$build_dir/bench/slices/bench_grad_slice" --layers "$L" --width "$C" --reps "$reps" $flag | tee -a "$scratch/out.txt"
done
echo "# load after the collectives: $(cut -d' ' -f1-3 /proc/loadavg)"
awk '
  /^slices-memory: config=bounded/ {
    for (i = 1; i <= NF; i++) {
      if ($i == "layer_over_whole=" || $i ~ /^layer_over_whole=/) { split($i, a, "="); br = a[2] }
      if ($i ~ /^layer=/ && bl == "") { split($i, a, "="); bl = a[2] }
      if ($i ~ /^whole=/ && bw == "") { split($i, a, "="); bw = a[2] }
    }
  }
  /^slices-memory: config=deepspeed-defaults/ {
    for (i = 1; i <= NF; i++) if ($i ~ /^layer_over_whole=/) { split($i, a, "="); dr = a[2]; sub(/;$/, "", dr) }
  }
  /^summary: path=/ {
    split($2, p, "="); split($3, t, "="); split($4, b, "=")
    time[p[2]] = t[2]; bytes = b[2]
  }
  END {
    sub(/;$/, "", br)
    printf "summary: bounded_layer_over_whole=%s bounded_layer_peak_mib=%s bounded_whole_peak_mib=%s defaults_layer_over_whole=%s grad_range_over_allreduce_time_direct=%s grad_range_over_allreduce_time_ring=%s grad_range_over_allreduce_bytes=%s\n", br, bl, bw, dr, time["direct"], time["ring"], bytes
  }' "$scratch/out.txt"
