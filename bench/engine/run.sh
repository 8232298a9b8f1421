#!/usr/bin/env bash
# bench/run engine: two parts, one summary line.
#
# 1. Memory sweep: step time and model-state bytes per rank of a synthetic
#    ~100M-parameter model at world sizes 1-4 and stages 0-3 (bf16 training
#    with AdamW; fp32 at world size 4 too), next to the ZeRO paper's formula
#    (2 + 2 + 12) * Psi divided as each stage divides it. Results:
#    bench/results/engine.csv. ZERO_BENCH_PARAMS (default 1e8), ZERO_BENCH_STEPS (4).
# 2. Step comparison (issue 19): one model of ZERO_BENCH_STEP_PARAMS (default
#    1e7) fp32 parameters at world size 2, glibc as shipped (no allocator
#    tunables: GLIBC_TUNABLES and MALLOC_* are cleared), the step at stages
#    0, 1, 2, 3 gathering the whole model before the forward, and 3 gathering
#    layer by layer with prefetch, stage3_max_live_parameters set to 4 layers'
#    worth so the backward gathers every layer again (and, as mode
#    layerwise_default in the CSV, with DeepSpeed's default 1e9, where release
#    keeps the forward's layers for the backward); ZERO_BENCH_ROUNDS rounds (default 3), the
#    configurations interleaved within each round, ZERO_BENCH_STEP_STEPS steps
#    a launch (default 12; each launch reports the median of its steps after
#    the first two), and the median over rounds. In the same launches: the
#    ranks' triad bandwidth, setup time, and the time to back as many fresh
#    bytes with MADV_POPULATE_WRITE (and one write per page). Results:
#    bench/results/engine_steps.csv.
# The last line is
#   summary: stage1_bytes_over_formula=<a> stage2_bytes_over_formula=<b> stage3_bytes_over_formula=<c>
#            stage3_over_stage2=<x> stage3_layerwise_over_stage2=<y> stage2_step_ms=<s>
#            stage2_bandwidth_fraction=<f> setup_s_per_gb=<g> populate_s_per_gb=<p> populate_touch_s_per_gb=<t>
#            stage2_check_grad_writes_over_stage2=<r> stage1_fused_step_speedup=<u>
# (one line): a-c from the sweep (world size 4, bf16: peak bytes over the
# formula); x and y the stage-3 step over the stage-2 step; f the time the
# stage-2 step's bytes (24 Psi at world size 2: moved_bytes) take at the
# triad bandwidth, over the stage-2 step (1 = at the memory-bandwidth bound);
# g, p and t seconds per GB of model state, for the stage-2 launches; r the
# stage-2 step with the late-write guard (zero_optimization.check_grad_writes,
# mode "guard" in the CSV) over the stage-2 step without it, same rounds;
# u the stage-1 step without the reduction fused into the step
# (ZERO_FUSED_STEP=0, mode "unfused" in the CSV) over the stage-1 step with
# it (the default), same rounds (issue 17).
# ZERO_BENCH_SWEEP=0 skips part 1 (its summary fields are then empty).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build bench/engine/bench_engine tools/zero-launch/zero-launch
params=${ZERO_BENCH_PARAMS:-1e8}
steps=${ZERO_BENCH_STEPS:-4}
step_params=${ZERO_BENCH_STEP_PARAMS:-1e7}
step_steps=${ZERO_BENCH_STEP_STEPS:-12}
rounds=${ZERO_BENCH_ROUNDS:-3}
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
unset GLIBC_TUNABLES MALLOC_ARENA_MAX MALLOC_MMAP_THRESHOLD_ MALLOC_TRIM_THRESHOLD_ MALLOC_TOP_PAD_ MALLOC_MMAP_MAX_
mkdir -p "$root/bench/results"
csv="$root/bench/results/engine.csv"
steps_csv="$root/bench/results/engine_steps.csv"
header="world,stage,dtype,params,step_ms,state_bytes,peak_bytes,formula_bytes,peak_over_formula,mode,iter_ms,moved_bytes,triad_gbps,setup_s,populate_s,populate_touch_s"
launch() {   # world stage dtype params steps mode [more bench_engine options]
  local world=$1 stage=$2 dtype=$3 n=$4 k=$5 mode=$6
  shift 6
  "$build_dir/tools/zero-launch/zero-launch" --launcher local --num_gpus "$world" --master_port 0 \
    "$build_dir/bench/engine/bench_engine" --stage "$stage" --dtype "$dtype" --params "$n" --steps "$k" --mode "$mode" "$@"
}

echo "$header" > "$csv"
if [ "${ZERO_BENCH_SWEEP:-1}" != 0 ]; then
  echo "# memory sweep: $params parameters, world sizes 1-4"
  echo "$header"
  # stage 3 goes layer by layer within 4 layers' live weights, so its peak is the
  # ZeRO memory a layer-by-layer trainer gets (DeepSpeed's default
  # stage3_max_live_parameters would keep the forward's layers for the backward)
  live4=$(awk -v n="$params" 'BEGIN { printf "%.0f", 4 * n / 48 }')
  for world in 1 2 3 4; do
    for stage in 0 1 2 3; do
      launch "$world" "$stage" bf16 "$params" "$steps" layerwise --max-live "$live4" | tee -a "$csv"
    done
  done
  for stage in 0 1 2 3; do
    launch 4 "$stage" fp32 "$params" "$steps" layerwise --max-live "$live4" | tee -a "$csv"
  done
fi

echo "# step comparison: $step_params fp32 parameters, world size 2, $rounds rounds"
step_live4=$(awk -v n="$step_params" 'BEGIN { printf "%.0f", 4 * n / 48 }')
echo "round,$header" | tee "$steps_csv"
for round in $(seq 1 "$rounds"); do
  # stage3_max_live_parameters: DeepSpeed's 1e9, except 4 layers' worth for layer by layer
  for cfg in "0 layerwise 1e9" "1 layerwise 1e9" "2 layerwise 1e9" "3 whole 1e9" "3 layerwise $step_live4"; do
    set -- $cfg
    launch 2 "$1" fp32 "$step_params" "$step_steps" "$2" --max-live "$3" | sed "s/^/$round,/" | tee -a "$steps_csv"
  done
  # layer by layer with DeepSpeed's default stage3_max_live_parameters: the
  # forward's layers stay for the backward (mode "layerwise_default")
  launch 2 3 fp32 "$step_params" "$step_steps" layerwise --max-live 1e9 |
    sed "s/^/$round,/; s/,layerwise,/,layerwise_default,/" | tee -a "$steps_csv"
  # stage 2 with the late-write guard (zero_optimization.check_grad_writes): mode "guard"
  launch 2 2 fp32 "$step_params" "$step_steps" layerwise --check-grad-writes |
    sed "s/^/$round,/; s/,-,/,guard,/" | tee -a "$steps_csv"
  # stage 1 without the reduction fused into the step (ZERO_FUSED_STEP=0):
  # mode "unfused"; the stage-1 rows above take the fused step (the default)
  ZERO_FUSED_STEP=0 launch 2 1 fp32 "$step_params" "$step_steps" layerwise --max-live 1e9 |
    sed "s/^/$round,/; s/,-,/,unfused,/" | tee -a "$steps_csv"
done

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'), load average $(cut -d' ' -f1-3 /proc/loadavg)"
# median over rounds of column $2 (1-based, of the steps CSV) for stage $3 and mode $4
median() {
  awk -F, -v c="$1" -v s="$2" -v m="$3" 'NR > 1 && $3 == s && $11 == m { print $c }' "$steps_csv" | sort -g |
    awk '{ v[NR] = $1 } END { if (NR == 0) print "nan"; else if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}
s2=$(median 6 2 -)
s3=$(median 6 3 whole)
s3l=$(median 6 3 layerwise)
s3ld=$(median 6 3 layerwise_default)
s2g=$(median 6 2 guard)
s1=$(median 6 1 -)
s1u=$(median 6 1 unfused)
moved=$(median 13 2 -)
triad=$(median 14 2 -)
setup=$(median 15 2 -)
pop=$(median 16 2 -)
touch=$(median 17 2 -)
state=$(median 7 2 -)
for st in 0 1; do echo "stage $st step (median of rounds): $(median 6 $st -) ms"; done
echo "stage 2 step with the late-write guard $s2g ms (without: $s2 ms)"
echo "stage 1 step with the reduction fused into the step $s1 ms, unfused (ZERO_FUSED_STEP=0) $s1u ms"
echo "stage 2 step $s2 ms, stage 3 whole $s3 ms, stage 3 layerwise $s3l ms, layerwise with the default max live $s3ld ms (median of $rounds rounds)"
sweep=$(awk -F, '$1 == 4 && $3 == "bf16" { r[$2] = $9 }
         END { printf "stage1_bytes_over_formula=%s stage2_bytes_over_formula=%s stage3_bytes_over_formula=%s", r[1], r[2], r[3] }' "$csv")
awk -v sweep="$sweep" -v s2="$s2" -v s3="$s3" -v s3l="$s3l" -v moved="$moved" -v triad="$triad" \
    -v setup="$setup" -v pop="$pop" -v touch="$touch" -v state="$state" -v s2g="$s2g" -v s1="$s1" -v s1u="$s1u" 'BEGIN {
  gb = state / 1e9
  printf "summary: %s stage3_over_stage2=%.2f stage3_layerwise_over_stage2=%.2f stage2_step_ms=%.1f stage2_bandwidth_fraction=%.2f setup_s_per_gb=%.2f populate_s_per_gb=%.2f populate_touch_s_per_gb=%.2f stage2_check_grad_writes_over_stage2=%.2f stage1_fused_step_speedup=%.3f\n",
    sweep, s3 / s2, s3l / s2, s2, (moved / (triad * 1e9)) * 1e3 / s2, setup / gb, pop / gb, touch / gb, s2g / s2, s1u / s1
}'
