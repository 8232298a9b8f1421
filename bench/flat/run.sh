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
# The last line is
#   summary: bytes_adopt_w1=<a> bytes_engine_w1=<b> bytes_adopt_w2=<c> bytes_engine_w2=<d>
#            step_adopt_over_engine=<r> step_adopt_over_views=<s>
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
python3 - "$csv" <<'PY'
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
def get(w, m, i, s=2):
    return f"{med[(w, s, m)][i]:.3f}" if (w, s, m) in med else ""
wl = worlds[-1]
ratio = lambda d: f"{med[(wl, 2, 'adopt')][2] / med[(wl, 2, d)][2]:.3f}" if (wl, 2, d) in med and (wl, 2, 'adopt') in med else ""
print(f"summary: bytes_adopt_w1={get(1, 'adopt', 0)} bytes_engine_w1={get(1, 'engine', 0)} "
      f"bytes_adopt_w2={get(2, 'adopt', 0)} bytes_engine_w2={get(2, 'engine', 0)} "
      f"step_adopt_over_engine={ratio('engine')} step_adopt_over_views={ratio('views')}")
PY
