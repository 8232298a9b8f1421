#!/usr/bin/env bash
# bench/run engine: step time and model-state bytes per rank of a synthetic
# ~100M-parameter model at world sizes 1-4 and stages 0-3 (bf16 training with
# AdamW; fp32 at world size 4 too), next to the ZeRO paper's formula
# (2 + 2 + 12) * Psi divided as each stage divides it. Results go to
# bench/results/engine.csv; the last line is
#   summary: stage1_bytes_over_formula=<a> stage2_bytes_over_formula=<b> stage3_bytes_over_formula=<c>
# (world size 4, bf16). Options via env: ZERO_BENCH_PARAMS (default 1e8), ZERO_BENCH_STEPS (4).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build bench/engine/bench_engine tools/zero-launch/zero-launch
params=${ZERO_BENCH_PARAMS:-1e8}
steps=${ZERO_BENCH_STEPS:-4}
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
mkdir -p "$root/bench/results"
csv="$root/bench/results/engine.csv"
echo "world,stage,dtype,params,step_ms,state_bytes,peak_bytes,formula_bytes,peak_over_formula" | tee "$csv"
run() {
  "$build_dir/tools/zero-launch/zero-launch" --launcher local --num_gpus "$1" --master_port 0 \
    "$build_dir/bench/engine/bench_engine" --stage "$2" --dtype "$3" --params "$params" --steps "$steps" | tee -a "$csv"
}
for world in 1 2 3 4; do
  for stage in 0 1 2 3; do
    run "$world" "$stage" bf16
  done
done
for stage in 0 1 2 3; do
  run 4 "$stage" fp32
done
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
awk -F, '$1 == 4 && $3 == "bf16" { r[$2] = $9 }
         END { printf "summary: stage1_bytes_over_formula=%s stage2_bytes_over_formula=%s stage3_bytes_over_formula=%s\n", r[1], r[2], r[3] }' "$csv"
