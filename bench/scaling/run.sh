#!/usr/bin/env bash
# bench/run scaling: the scaling study. Two workloads at world sizes 1-4,
# ZeRO stages 0-3, bf16 and fp32, each a short run through zero-launch:
#   example:   examples/gpt/train_gpt (C=96, L=4, T=64, ~0.46M parameters) on the
#              license texts in tests/data, micro-batch 4 per rank (weak scaling), AdamW;
#              samples per second, step time broken into forward and backward
#              (the trainer's timers; at stage 3 they include waiting in
#              zero_gather), backward_wait + reduce (gradient reduction),
#              optimizer step and gather (the engine's timers, zero_engine_timers),
#              and model-state bytes per rank (zero_engine_memory) next to the
#              ZeRO paper's formula (2w + K) Psi divided as the stage divides it
#              (w = 2 bytes for bf16, 4 for fp32; K = 12);
#   synthetic: bench/engine/bench_engine with ZERO_SCALING_PARAMS parameters
#              (default 2e7) in 48 layers: step time and bytes per rank.
# Baseline of each row: world 1, stage 0, same dtype and workload, in the same
# run; the ratio is samples_per_s / baseline (example) or baseline step / step.
# Outputs: bench/results/scaling_example.csv, scaling_synthetic.csv,
# scaling_*.png (gnuplot), scaling.md (markdown summary). A failed
# configuration is a row with status=failed (the run goes on). Last line:
#   summary: example_bf16_w2_s2_samples_per_s=<x> stage3_state_over_formula_w4=<y> failed=<n> stage3_peak_over_formula_w4=<z>
# (y: the synthetic model's state bytes per rank at world 4, stage 3, bf16 over
# the formula; z: the same with the working memory the engine held added)
# Env: ZERO_SCALING_TIMEOUT (120 s per run), ZERO_SCALING_STEPS (12; timing skips the first 2), ZERO_SCALING_PARAMS (2e7), ZERO_SCALING_WORLDS ("1 2 3 4").
set -uo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build examples/train_gpt bench/engine/bench_engine tools/zero-launch/zero-launch || exit 1
steps=${ZERO_SCALING_STEPS:-12}
params=${ZERO_SCALING_PARAMS:-2e7}
worlds=${ZERO_SCALING_WORLDS:-1 2 3 4}
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
# One OpenMP thread per rank: the per-rank work stays the same at every world
# size (weak scaling), and spinning threads do not fight over shared cores.
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}
res="$root/bench/results"
mkdir -p "$res"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# A configuration that hangs (e.g. a rendezvous that never completes) is ended
# after ZERO_SCALING_TIMEOUT seconds and recorded as failed.
launch="timeout ${ZERO_SCALING_TIMEOUT:-120} $build_dir/tools/zero-launch/zero-launch --launcher local --master_port 0 --num_gpus"
machine="$(getconf _NPROCESSORS_ONLN) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"

ex_csv="$res/scaling_example.csv"
syn_csv="$res/scaling_synthetic.csv"
echo "world,stage,dtype,params,global_batch,samples_per_s,speedup,step_ms,forward_ms,backward_ms,reduce_ms,optimizer_ms,gather_ms,state_bytes,peak_bytes,formula_bytes,state_over_formula,status" > "$ex_csv"
echo "world,stage,dtype,params,step_ms,speedup,state_bytes,peak_bytes,formula_bytes,peak_over_formula,status" > "$syn_csv"
failed=0
declare -A base_sps base_ms

for dtype in bf16 fp32; do
  for world in $worlds; do
    for stage in 0 1 2 3; do
      cfg="$tmp/ex_${dtype}_${stage}.json"
      bf=""
      [ "$dtype" = bf16 ] && bf='"bf16": {"enabled": true},'
      cat > "$cfg" <<JSON
{"train_micro_batch_size_per_gpu": 4, "gradient_accumulation_steps": 1, "steps_per_print": 0,
 "gradient_clipping": 1.0,
 "optimizer": {"type": "AdamW", "params": {"lr": 1e-3, "weight_decay": 0.1}},
 $bf "zero_optimization": {"stage": $stage}}
JSON
      out="$tmp/ex.log"
      if $launch "$world" "$build_dir/examples/train_gpt" --config "$cfg" --steps "$steps" --eval-windows 0 --data "$root/tests/data/license-texts" \
           --no-resume > "$out" 2>&1 && grep -q '^timing:' "$out"; then
        row=$(awk -v w="$world" -v s="$stage" -v d="$dtype" '
          function val(line, key,   i, n, kv) { n = split(line, f, " "); for (i = 1; i <= n; i++) { split(f[i], kv, "="); if (kv[1] == key) return kv[2] } return "" }
          /^config:/ { gb = val($0, "global_batch") }
          /^timing:/ { t = $0 }
          /^memory:/ { m = $0 }
          END {
            psi = val(m, "num_params"); wb = (d == "fp32") ? 4 : 2; k = 12; n = w
            fm = (s == 0) ? (2 * wb + k) * psi : (s == 1) ? 2 * wb * psi + k * psi / n : (s == 2) ? wb * psi + (wb + k) * psi / n : (2 * wb + k) * psi / n
            state = val(m, "params") + val(m, "grads") + val(m, "master") + val(m, "optim_state")
            peak = state + val(m, "buffers_peak")
            printf "%d,%d,%s,%d,%d,%s,SPEEDUP,%s,%s,%s,%.2f,%s,%s,%d,%d,%.0f,%.3f,ok\n", w, s, d, psi, gb,
              val(t, "samples_per_s"), val(t, "step_ms"), val(t, "forward_ms"), val(t, "backward_ms"),
              val(t, "backward_wait_ms") + val(t, "reduce_ms"), val(t, "optimizer_ms"), val(t, "gather_ms"),
              state, peak, fm, state / fm }' "$out")
        sps=$(echo "$row" | cut -d, -f6)
        [ "$world" = 1 ] && [ "$stage" = 0 ] && base_sps[$dtype]=$sps
        sp=$(awk -v a="$sps" -v b="${base_sps[$dtype]:-0}" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
        echo "${row/SPEEDUP/$sp}" | tee -a "$ex_csv"
      else
        failed=$((failed + 1))
        echo "$world,$stage,$dtype,,,,,,,,,,,,,,,failed" | tee -a "$ex_csv"
        tail -3 "$out" >&2
      fi
      # The synthetic model, same configuration.
      if $launch "$world" "$build_dir/bench/engine/bench_engine" --stage "$stage" --dtype "$dtype" \
           --params "$params" --steps 4 > "$tmp/syn.log" 2>&1 && grep -q "^$world,$stage," "$tmp/syn.log"; then
        r=$(grep "^$world,$stage," "$tmp/syn.log" | tail -1)
        ms=$(echo "$r" | cut -d, -f5)
        [ "$world" = 1 ] && [ "$stage" = 0 ] && base_ms[$dtype]=$ms
        sp=$(awk -v a="$ms" -v b="${base_ms[$dtype]:-0}" 'BEGIN { printf "%.2f", (a > 0 && b > 0 ? b / a : 0) }')
        echo "$r" | awk -F, -v sp="$sp" '{ printf "%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,ok\n", $1, $2, $3, $4, $5, sp, $6, $7, $8, $9 }' >> "$syn_csv"
      else
        failed=$((failed + 1))
        echo "$world,$stage,$dtype,,,,,,,,failed" >> "$syn_csv"
      fi
    done
  done
done

# Plots.
for d in bf16 fp32; do
  for s in 0 1 2 3; do
    awk -F, -v d="$d" -v s="$s" '$3 == d && $2 == s && $18 == "ok" { print $1, $6, $14, $16 }' "$ex_csv" > "$tmp/ex_${d}_s$s.dat"
    awk -F, -v d="$d" -v s="$s" '$3 == d && $2 == s && $11 == "ok" { print $1, $5, $7, $9 }' "$syn_csv" > "$tmp/syn_${d}_s$s.dat"
  done
done
awk -F, '$3 == "bf16" && $1 == 2 && $18 == "ok" { print "stage" $2, $9, $10, $11, $12, $13 }' "$ex_csv" > "$tmp/breakdown.dat"
gnuplot <<GP
set terminal png size 900,540 noenhanced
set grid
set key top left
set output "$res/scaling_throughput.png"
set title "train_gpt samples/s vs world size (micro-batch 4 per rank), $machine"
set xlabel "world size (ranks)"; set ylabel "samples per second"; set xtics 1
plot for [s=0:3] "$tmp/ex_bf16_s".s.".dat" using 1:2 with linespoints title "bf16 stage ".s, \
     for [s=0:3] "$tmp/ex_fp32_s".s.".dat" using 1:2 with linespoints dashtype 2 title "fp32 stage ".s
set output "$res/scaling_memory.png"
set title "synthetic model ($params params, bf16): model-state bytes per rank vs ZeRO formula"
set ylabel "bytes per rank"; set logscale y
plot for [s=0:3] "$tmp/syn_bf16_s".s.".dat" using 1:3 with linespoints title "measured stage ".s, \
     for [s=0:3] "$tmp/syn_bf16_s".s.".dat" using 1:4 with lines dashtype 2 title "formula stage ".s
unset logscale y
set output "$res/scaling_breakdown.png"
set title "train_gpt step time at world size 2, bf16 (ms per step)"
set ylabel "ms"; set xlabel "ZeRO stage (stage 3: forward and backward include waiting in zero_gather)"; set key outside right
set style data histograms; set style histogram rowstacked; set style fill solid 0.8 border -1; set boxwidth 0.6
plot "$tmp/breakdown.dat" using 2:xtic(1) title "forward", '' using 3 title "backward", \
     '' using 4 title "reduction", '' using 5 title "optimizer", '' using 6 title "gather"
GP

# Markdown summary.
md="$res/scaling.md"
{
  echo "# Scaling study ($(date -u +%Y-%m-%d), \`bench/run scaling\`)"
  echo
  echo "Machine: $machine. One OpenMP thread per rank; ranks share the cores: beyond $(getconf _NPROCESSORS_ONLN) ranks they are oversubscribed."
  echo
  echo "## train_gpt (example), micro-batch 4 per rank"
  echo
  echo "| world | stage | dtype | samples/s | vs w1 s0 | step ms | fwd | bwd | reduce | optim | gather | state bytes/rank | formula | ratio |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
  awk -F, 'NR > 1 { if ($18 == "ok") printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $6, $7, $8, $9, $10, $11, $12, $13, $14, $16, $17;
            else printf "| %s | %s | %s | failed |||||||||||\n", $1, $2, $3 }' "$ex_csv"
  echo
  echo "## Synthetic model ($params parameters), bench_engine"
  echo
  echo "| world | stage | dtype | step ms | vs w1 s0 | state bytes/rank | peak bytes/rank | formula | peak/formula |"
  echo "|---|---|---|---|---|---|---|---|---|"
  awk -F, 'NR > 1 { if ($11 == "ok") printf "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $5, $6, $7, $8, $9, $10;
            else printf "| %s | %s | %s | failed ||||||\n", $1, $2, $3 }' "$syn_csv"
  echo
  echo "Plots: scaling_throughput.png, scaling_memory.png, scaling_breakdown.png (this folder)."
} > "$md"
echo "scaling: results in $res (scaling_example.csv, scaling_synthetic.csv, scaling.md, scaling_*.png)"
echo "machine: $machine"
sps=$(awk -F, '$1 == 2 && $2 == 2 && $3 == "bf16" && $18 == "ok" { print $6 }' "$ex_csv")
# Model state (weights, gradients, master, moments: what the ZeRO formula
# counts) over the formula, and the peak (model state + the working memory the
# engine held: gather and gradient pools, or buffers in use if more) over it.
r3=$(awk -F, '$1 == 4 && $2 == 3 && $3 == "bf16" && $11 == "ok" && $9 > 0 { printf "%.3f", $7 / $9 }' "$syn_csv")
p3=$(awk -F, '$1 == 4 && $2 == 3 && $3 == "bf16" && $11 == "ok" { print $10 }' "$syn_csv")
echo "summary: example_bf16_w2_s2_samples_per_s=${sps:-NA} stage3_state_over_formula_w4=${r3:-NA} failed=$failed stage3_peak_over_formula_w4=${p3:-NA}"
[ "$failed" -eq 0 ]
