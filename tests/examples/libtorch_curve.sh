#!/usr/bin/env bash
# examples/libtorch through zero-launch, as a user runs it: its loss curve
# through libzero at world sizes 1-3 and stages 0-3 (and one run with two
# micro-batches per step) matches the same model trained with
# torch::optim::AdamW in one process, step by step within TOL.
# Usage: libtorch_curve.sh ZERO_LAUNCH TRAIN_TORCH
set -uo pipefail
launch=$1 trainer=$2
steps=30
tol=1e-5          # |loss - reference| / max(1, reference), every step
tmp=$(mktemp -d "${TMPDIR:-/tmp}/libtorch-curve-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0

timeout 120 "$trainer" --reference --steps $steps --out "$tmp/ref.txt" > "$tmp/ref.log" 2>&1 ||
  { cat "$tmp/ref.log"; echo "libtorch_curve: FAIL: the reference run"; exit 1; }
first=$(awk 'NR == 1 { print $2 }' "$tmp/ref.txt")
last=$(awk -v n=$steps '$1 == n { print $2 }' "$tmp/ref.txt")
echo "reference (torch::optim::AdamW): loss $first at step 1, $last at step $steps"
# the curve must show learning, or matching it would prove little
awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.7 * a) }' ||
  { echo "libtorch_curve: FAIL: the reference does not learn ($first -> $last)"; failures=$((failures + 1)); }

run() {   # run WORLD STAGE GAS
  local world=$1 stage=$2 gas=$3 name="w$1-s$2-g$3"
  if ! timeout 180 "$launch" --launcher local --num_gpus "$world" --master_port 0 \
       "$trainer" --stage "$stage" --gas "$gas" --steps $steps --out "$tmp/$name.txt" > "$tmp/$name.log" 2>&1; then
    tail -20 "$tmp/$name.log"
    echo "libtorch_curve: FAIL: $name did not run"
    failures=$((failures + 1))
    return
  fi
  if ! awk -v tol=$tol -v name="$name" -v steps=$steps '
      NR == FNR { ref[$1] = $2; next }
      { d = $2 - ref[$1]; if (d < 0) d = -d; s = ref[$1] > 1 ? ref[$1] : 1; if (d / s > worst) worst = d / s; n++ }
      END { printf "%s: %d steps, worst relative difference %.3g (last loss %s)\n", name, n, worst, $2;
            exit !(n == steps && worst <= tol) }' "$tmp/ref.txt" "$tmp/$name.txt"; then
    echo "libtorch_curve: FAIL: $name is not within $tol of the reference"
    failures=$((failures + 1))
  fi
}

for world in 1 2 3; do
  for stage in 0 1 2 3; do
    run "$world" "$stage" 1
  done
done
run 2 1 2     # accumulation at stage 1: two micro-batches per step, in the trainer's .grad
run 3 2 2     # and at stage 2, reduced per micro-batch

[ $failures -eq 0 ] || { echo "libtorch_curve: $failures failure(s)"; exit 1; }
echo "libtorch_curve: ok"
