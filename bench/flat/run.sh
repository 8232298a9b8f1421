#!/usr/bin/env bash
# bench/run flat: examples/flat (llm.c's layout, fp32 AdamW) with the engine
# adopting its buffers, against the engine's own buffers and against views
# into the trainer's buffers, in the same run.
#
# For each world size in ZERO_BENCH_WORLDS (default "1 2") and stage in
# ZERO_BENCH_STAGES (default "1 2"): ZERO_BENCH_ROUNDS rounds (default 3), the
# three modes interleaved within a round, each launch ZERO_BENCH_STEPS steps
# (default 30; train_flat reports the mean step time after the first). Per
# configuration it prints the engine's bytes per parameter per rank
# (zero_engine_memory().total / parameters; adoption adds the trainer's own 8
# for its two buffers, which every mode's trainer holds except "engine") and
# the median step time over rounds, and the ratios adopt/engine and
# adopt/views. Results: bench/results/flat.csv.
# Stage 3 (ZERO_BENCH_STAGE3=1, the default; world sizes above 1 from
# ZERO_BENCH_WORLDS) runs ds_config_stage3.json at ZERO_BENCH_LAYERS layers
# (default 6) layer by layer through slices (--gather layers) against whole
# gathers (--gather whole), interleaved the same way; it prints the engine's
# bytes per parameter, buffers_peak per parameter (working memory: gathered
# weights and gradient staging) and the step time, and their ratios.
# Results: bench/results/flat-stage3.csv.
# The last line is
#   summary: bytes_adopt_w1=<a> bytes_engine_w1=<b> bytes_adopt_w2=<c> bytes_engine_w2=<d>
#            step_adopt_over_engine=<r> step_adopt_over_views=<s>
#            stage3_peak_layers_over_whole=<p> stage3_step_layers_over_whole=<q>
# (stage 2; the ratios from the largest world size run).
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build examples/train_flat tools/zero-launch/zero-launch
worlds=${ZERO_BENCH_WORLDS:-1 2}
stages=${ZERO_BENCH_STAGES:-1 2}
rounds=${ZERO_BENCH_ROUNDS:-3}
steps=${ZERO_BENCH_STEPS:-30}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$root/bench/results"
csv="$root/bench/results/flat.csv"
echo "world,stage,mode,round,engine_bytes_per_param,trainer_bytes_per_param,step_ms" >"$csv"
echo "bench flat: load $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores" >&2
for w in $worlds; do
  for s in $stages; do
    sed "s/\"stage\": [0-9]/\"stage\": $s/" "$root/examples/flat/ds_config.json" >"$tmp/cfg$s.json"
    for r in $(seq 1 "$rounds"); do
      for mode in adopt engine views; do
        out=$(UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo} "$build_dir/tools/zero-launch/zero-launch" --launcher local \
                --num_gpus "$w" --master_port 0 "$build_dir/examples/train_flat" --config "$tmp/cfg$s.json" \
                --steps "$steps" --buffers "$mode" 2>&1) || { echo "$out" >&2; exit 1; }
        eb=$(sed -n 's/.*engine_bytes_per_param=\([0-9.]*\).*/\1/p' <<<"$out")
        tb=$(sed -n 's/.*trainer_bytes_per_param=\([0-9.]*\).*/\1/p' <<<"$out")
        ms=$(sed -n 's/^timing: .*step_ms=\([0-9.]*\).*/\1/p' <<<"$out")
        echo "$w,$s,$mode,$r,$eb,$tb,$ms" >>"$csv"
      done
    done
  done
done
csv3="$root/bench/results/flat-stage3.csv"
echo "world,gather,round,engine_bytes_per_param,buffers_peak_per_param,step_ms" >"$csv3"
layers=${ZERO_BENCH_LAYERS:-6}
if [ "${ZERO_BENCH_STAGE3:-1}" = 1 ]; then
  for w in $worlds; do
    [ "$w" -gt 1 ] || continue
    for r in $(seq 1 "$rounds"); do
      for g in layers whole; do
        out=$(UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo} "$build_dir/tools/zero-launch/zero-launch" --launcher local \
                --num_gpus "$w" --master_port 0 "$build_dir/examples/train_flat" \
                --config "$root/examples/flat/ds_config_stage3.json" --steps "$steps" --layers "$layers" \
                --gather "$g" 2>&1) || { echo "$out" >&2; exit 1; }
        n=$(sed -n 's/^memory: .* parameters=\([0-9]*\).*/\1/p' <<<"$out")
        eb=$(sed -n 's/.*engine_bytes_per_param=\([0-9.]*\).*/\1/p' <<<"$out")
        pk=$(sed -n 's/.* buffers_peak=\([0-9]*\).*/\1/p' <<<"$out")
        ms=$(sed -n 's/^timing: .*step_ms=\([0-9.]*\).*/\1/p' <<<"$out")
        echo "$w,$g,$r,$eb,$(awk -v a="$pk" -v b="$n" 'BEGIN { printf "%.3f", a / b }'),$ms" >>"$csv3"
      done
    done
  done
fi
python3 - "$csv" "$csv3" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
med = {}
for key in sorted({(int(r["world"]), int(r["stage"]), r["mode"]) for r in rows}):
    sel = [r for r in rows if (int(r["world"]), int(r["stage"]), r["mode"]) == key]
    med[key] = (float(sel[0]["engine_bytes_per_param"]), float(sel[0]["trainer_bytes_per_param"]),
                statistics.median(float(r["step_ms"]) for r in sel))
for (w, s, m), (eb, tb, ms) in sorted(med.items()):
    print(f"world={w} stage={s} buffers={m}: engine {eb:.3f} B/param, trainer {tb:.3f} B/param, step {ms:.3f} ms")
worlds = sorted({w for w, _, _ in med})
for w in worlds:
    for s in sorted({s for ww, s, _ in med if ww == w}):
        a, e, v = (med[(w, s, m)][2] for m in ("adopt", "engine", "views"))
        print(f"world={w} stage={s}: step adopt/engine={a / e:.3f} adopt/views={a / v:.3f}")
rows3 = list(csv.DictReader(open(sys.argv[2])))
med3 = {}
for key in sorted({(int(r["world"]), r["gather"]) for r in rows3}):
    sel = [r for r in rows3 if (int(r["world"]), r["gather"]) == key]
    med3[key] = (float(sel[0]["engine_bytes_per_param"]), float(sel[0]["buffers_peak_per_param"]),
                 statistics.median(float(r["step_ms"]) for r in sel))
for (w, g), (eb, pk, ms) in sorted(med3.items()):
    print(f"world={w} stage=3 gather={g}: engine {eb:.3f} B/param, working memory peak {pk:.3f} B/param, "
          f"step {ms:.3f} ms")
peak3 = step3 = ""
for w in sorted({w for w, _ in med3}):
    if (w, "layers") in med3 and (w, "whole") in med3:
        l, h = med3[(w, "layers")], med3[(w, "whole")]
        peak3, step3 = f"{l[1] / h[1]:.3f}", f"{l[2] / h[2]:.3f}"
        print(f"world={w} stage=3: working memory peak layers/whole={peak3} step layers/whole={step3}")
def get(w, m, i, s=2):
    return f"{med[(w, s, m)][i]:.3f}" if (w, s, m) in med else ""
wl = worlds[-1]
ratio = lambda d: f"{med[(wl, 2, 'adopt')][2] / med[(wl, 2, d)][2]:.3f}" if (wl, 2, d) in med and (wl, 2, 'adopt') in med else ""
print(f"summary: bytes_adopt_w1={get(1, 'adopt', 0)} bytes_engine_w1={get(1, 'engine', 0)} "
      f"bytes_adopt_w2={get(2, 'adopt', 0)} bytes_engine_w2={get(2, 'engine', 0)} "
      f"step_adopt_over_engine={ratio('engine')} step_adopt_over_views={ratio('views')} "
      f"stage3_peak_layers_over_whole={peak3} stage3_step_layers_over_whole={step3}")
PY
