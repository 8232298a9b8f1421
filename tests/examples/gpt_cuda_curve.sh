#!/usr/bin/env bash
# The GPU trainer's loss curve against the CPU trainer's, at world size 1:
#   gpt_cuda_curve.sh TRAIN_GPT TRAIN_GPT_CUDA DATA_DIR
# Runs train_gpt (host) and train_gpt_cuda (device memory, CUDA model) with the
# same config, seed, data and model for 40 steps, a loss line every 5 steps,
# in three cases: fp32 at stage 0, bf16 at stage 2, bf16 at stage 3 (AdamW,
# clipping 1.0, warm-up). Every printed train loss (the mean of 5 steps), the
# final validation loss and the last grad_norm must agree within:
#   fp32: 2e-3 nats (grad_norm: 2e-2 relative)
#   bf16: 3e-2 nats (grad_norm: 1e-1 relative)
# The model computes in fp32 on both sides; they differ by the device's
# expf/tanhf, the SGEMMs' summation order and where the bias is added (about
# 1e-6 relative per layer, tests/examples/test_gpt_cuda_ops.c), which 40
# AdamW steps amplify a little; in bf16 such a difference can flip a rounding
# of the 16-bit weights or gradients, hence the wider bound.
# Exit status: 0 all within bounds; 1 a mismatch or a failed run; 77 when
# train_gpt_cuda finds no CUDA device.
set -uo pipefail
if [ $# -ne 3 ]; then
  echo "usage: $0 TRAIN_GPT TRAIN_GPT_CUDA DATA_DIR" >&2
  exit 2
fi
cpu=$1 gpu=$2 data=$3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
unset RANK WORLD_SIZE LOCAL_RANK LOCAL_SIZE MASTER_ADDR MASTER_PORT

config() { # DTYPE STAGE
  local prec=""
  [ "$1" = bf16 ] && prec='"bf16": { "enabled": true },'
  cat <<EOF
{
  "train_micro_batch_size_per_gpu": 8,
  "gradient_accumulation_steps": 1,
  "optimizer": { "type": "AdamW", "params": { "lr": 2e-3, "betas": [0.9, 0.95], "eps": 1e-8, "weight_decay": 0.1 } },
  "scheduler": { "type": "WarmupLR", "params": { "warmup_min_lr": 0, "warmup_max_lr": 2e-3, "warmup_num_steps": 10,
                                                 "warmup_type": "linear" } },
  $prec
  "gradient_clipping": 1.0,
  "zero_optimization": { "stage": $2 }
}
EOF
}

failed=0
for case in "fp32 0 2e-3 2e-2" "bf16 2 3e-2 1e-1" "bf16 3 3e-2 1e-1"; do
  read -r dtype stage tol gtol <<< "$case"
  name="$dtype-stage$stage"
  config "$dtype" "$stage" > "$work/$name.json"
  args=(--config "$work/$name.json" --data "$data" --steps 40 --print-interval 5 --eval-windows 32 --no-resume
        --seed 7)
  "$cpu" "${args[@]}" > "$work/$name.cpu.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    echo "gpt-cuda-curve: $name: train_gpt failed (rc $rc):"; tail -5 "$work/$name.cpu.log"; exit 1
  fi
  "$gpu" "${args[@]}" > "$work/$name.gpu.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    if grep -q 'no CUDA device is visible' "$work/$name.gpu.log"; then
      echo "gpt-cuda-curve: $(grep -m1 'no CUDA device' "$work/$name.gpu.log"): skipped"
      exit 77
    fi
    echo "gpt-cuda-curve: $name: train_gpt_cuda failed (rc $rc):"; tail -5 "$work/$name.gpu.log"; exit 1
  fi
  grep -q '^backend: cuda' "$work/$name.gpu.log" || { echo "gpt-cuda-curve: $name: no 'backend: cuda' line"; exit 1; }
  # step, train loss, grad norm per printed line; the final validation loss
  ext() { sed -n 's/^step=\([0-9]*\) train_loss=\([0-9.eE+-]*\) .*grad_norm=\([0-9.eE+-]*\) .*/\1 \2 \3/p' "$1"; }
  ext "$work/$name.cpu.log" > "$work/$name.cpu.dat"
  ext "$work/$name.gpu.log" > "$work/$name.gpu.dat"
  vcpu=$(sed -n 's/^final_train_loss=.* final_val_loss=\([0-9.]*\) .*/\1/p' "$work/$name.cpu.log")
  vgpu=$(sed -n 's/^final_train_loss=.* final_val_loss=\([0-9.]*\) .*/\1/p' "$work/$name.gpu.log")
  if ! paste -d ' ' "$work/$name.cpu.dat" "$work/$name.gpu.dat" | \
       awk -v tol="$tol" -v gtol="$gtol" -v vc="$vcpu" -v vg="$vgpu" -v name="$name" '
         function abs(x) { return x < 0 ? -x : x }
         { n++; d = abs($2 - $5); if (d > worst) worst = d
           if ($1 != $4 || d > tol) { printf "gpt-cuda-curve: %s: step %s cpu %s gpu %s (|diff| %.3g > %s)\n", name, $1, $2, $5, d, tol; bad = 1 }
           g = $3; gg = $6 }
         END {
           if (n < 8) { printf "gpt-cuda-curve: %s: only %d loss lines\n", name, n; exit 1 }
           if (abs(g - gg) > gtol * abs(g)) { printf "gpt-cuda-curve: %s: last grad_norm cpu %s gpu %s\n", name, g, gg; bad = 1 }
           dv = abs(vc - vg)
           if (vc == "" || vg == "" || dv > tol) { printf "gpt-cuda-curve: %s: final_val_loss cpu %s gpu %s\n", name, vc, vg; bad = 1 }
           printf "gpt-cuda-curve: %s: %d points, worst train-loss difference %.3g (bound %s), val %s vs %s%s\n",
                  name, n, worst, tol, vc, vg, bad ? ": FAILED" : ""
           exit bad }'; then
    failed=1
  fi
done
exit $failed
