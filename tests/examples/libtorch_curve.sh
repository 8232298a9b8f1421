#!/usr/bin/env bash
# examples/libtorch through zero-launch, as a user runs it: its loss curve
# through libzero at world sizes 1-3 and stages 0-3 (SGD: a subset; AdamW: two runs
# with two micro-batches per step) matches the same model trained with
# torch::optim::AdamW, then torch::optim::SGD with momentum, in one process,
# step by step within TOL. The model has three parameter groups (decay, no
# decay for biases, the embedding at half the rate), torch's param_groups in
# the reference and optimizer.param_groups in libzero's config.
# Usage: libtorch_curve.sh ZERO_LAUNCH TRAIN_TORCH
set -uo pipefail
launch=$1 trainer=$2
steps=30
tol=1e-5          # |loss - reference| / max(1, reference), every step
tmp=$(mktemp -d "${TMPDIR:-/tmp}/libtorch-curve-XXXXXX")
trap 'rm -rf "$tmp"' EXIT
failures=0

reference() {   # reference OPTIMIZER
  local opt=$1
  timeout 120 "$trainer" --reference --optimizer "$opt" --steps $steps --out "$tmp/ref-$opt.txt" > "$tmp/ref.log" 2>&1 ||
    { cat "$tmp/ref.log"; echo "libtorch_curve: FAIL: the $opt reference run"; exit 1; }
  first=$(awk 'NR == 1 { print $2 }' "$tmp/ref-$opt.txt")
  last=$(awk -v n=$steps '$1 == n { print $2 }' "$tmp/ref-$opt.txt")
  echo "reference (torch::optim, $opt, three param groups): loss $first at step 1, $last at step $steps"
  # the curve must show learning, or matching it would prove little
  awk -v a="$first" -v b="$last" 'BEGIN { exit !(b < 0.7 * a) }' ||
    { echo "libtorch_curve: FAIL: the $opt reference does not learn ($first -> $last)"; failures=$((failures + 1)); }
}

run() {   # run OPTIMIZER WORLD STAGE GAS
  local opt=$1 world=$2 stage=$3 gas=$4 name="$1-w$2-s$3-g$4"
  if ! timeout 180 "$launch" --launcher local --num_gpus "$world" --master_port 0 \
       "$trainer" --optimizer "$opt" --stage "$stage" --gas "$gas" --steps $steps --out "$tmp/$name.txt" \
       > "$tmp/$name.log" 2>&1; then
    tail -20 "$tmp/$name.log"
    echo "libtorch_curve: FAIL: $name did not run"
    failures=$((failures + 1))
    return
  fi
  if ! awk -v tol=$tol -v name="$name" -v steps=$steps '
      NR == FNR { ref[$1] = $2; next }
      { d = $2 - ref[$1]; if (d < 0) d = -d; s = ref[$1] > 1 ? ref[$1] : 1; if (d / s > worst) worst = d / s; n++ }
      END { printf "%s: %d steps, worst relative difference %.3g (last loss %s)\n", name, n, worst, $2;
            exit !(n == steps && worst <= tol) }' "$tmp/ref-$opt.txt" "$tmp/$name.txt"; then
    echo "libtorch_curve: FAIL: $name is not within $tol of the reference"
    failures=$((failures + 1))
  fi
}

reference adamw
for world in 1 2 3; do
  for stage in 0 1 2 3; do
    run adamw "$world" "$stage" 1
  done
done
# SGD: every stage at world 2, and the ends of the range (tests/engine's
# param_groups covers every stage at world 1-3 against the C reference)
reference sgd
for stage in 0 1 2 3; do
  run sgd 2 "$stage" 1
done
run sgd 1 0 1
run sgd 3 3 1
run adamw 2 1 2     # accumulation at stage 1: two micro-batches per step, in the trainer's .grad
run adamw 3 2 2     # and at stage 2, reduced per micro-batch

[ $failures -eq 0 ] || { echo "libtorch_curve: $failures failure(s)"; exit 1; }
echo "libtorch_curve: ok"
