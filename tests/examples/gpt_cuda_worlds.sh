#!/usr/bin/env bash
# The GPU trainer at world sizes 2-4 against world size 1, and its checkpoints
# across device and host at different world sizes:
#   gpt_cuda_worlds.sh ZERO_LAUNCH TRAIN_GPT TRAIN_GPT_CUDA ZERO_CKPT_MERGE DATA_DIR
# Every rank runs on the first GPU; ranks that share it go through the staged
# backend (the communicator chooses it by itself).
#
# The model and batch are test_train_curves.c's (C=32, L=2, NH=2, T=32; a
# global batch of 12 windows, micro-batch 1, gradient accumulation 12 / W;
# AdamW, clipping 1.0; 20 steps), so every world size trains on the same
# global batches.
#  1. Curves: train_gpt_cuda at world 1, stage 0 is the reference. fp32 at
#     world 2 stage 1, world 3 stage 2, world 4 stage 3: every step's train
#     loss within 2e-3 nats of it (test_train_curves.c's fp32 bound for the
#     host engine across world sizes: only the reduction order differs). bf16
#     at world 4 stage 3 against bf16 at world 1 stage 0: within 0.15 nats
#     (its bf16 bound). Every curve falls by at least 0.5 nats.
#  2. Checkpoints across kinds and world sizes (fp32): train_gpt_cuda at
#     world 2 (stage 2) stops after 10 steps with a checkpoint; train_gpt
#     (host) at world 3 (stage 3) resumes it to step 20. train_gpt at world 1
#     (stage 1) stops after 10 steps; train_gpt_cuda at world 3 (stage 1)
#     resumes it. Steps 11-20 of both within 2e-3 nats of the reference.
#  3. zero-ckpt-merge on the device's step-10 checkpoint (world 2) and on the
#     host's (world 1), both to safetensors: the same header (names, shapes,
#     offsets) and every weight within 2e-3 + 2e-2 |w| (the same 10 steps on
#     the same batches; Adam's m / sqrt(v) moves elements whose gradient is
#     near zero by up to lr a step when the summation order changes).
# The bounds of 1 are measured on the host engine; the GPU's are estimates
# (nothing here has run on a GPU yet).
# GPT_WORLDS_BACKEND=host with TRAIN_GPT given for TRAIN_GPT_CUDA runs this
# script's logic on a machine without a GPU (its own check, not the GPU's).
# Exit status: 0 all within bounds; 1 a mismatch or a failed run; 77 when
# train_gpt_cuda finds no CUDA device.
set -uo pipefail
if [ $# -ne 5 ]; then
  echo "usage: $0 ZERO_LAUNCH TRAIN_GPT TRAIN_GPT_CUDA ZERO_CKPT_MERGE DATA_DIR" >&2
  exit 2
fi
launch=$1 cpu=$2 gpu=$3 merge=$4 data=$5
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
unset RANK WORLD_SIZE LOCAL_RANK LOCAL_SIZE MASTER_ADDR MASTER_PORT
# One GPU for every rank: zero-launch lists slots 0..W-1 in CUDA_VISIBLE_DEVICES,
# and CUDA hides the ones that do not exist, so each rank sees the first GPU.
unset CUDA_VISIBLE_DEVICES
steps=20
backend=${GPT_WORLDS_BACKEND:-cuda}

config() { # FILE DTYPE STAGE
  local prec=""
  [ "$2" = bf16 ] && prec='"bf16": { "enabled": true },'
  cat > "$1" <<EOF
{
  "train_batch_size": 12, "train_micro_batch_size_per_gpu": 1, "steps_per_print": 0,
  "gradient_clipping": 1.0,
  "optimizer": { "type": "AdamW", "params": { "lr": 1e-2, "betas": [0.9, 0.95], "weight_decay": 0.1 } },
  $prec
  "zero_optimization": { "stage": $3, "reduce_bucket_size": 3000, "stage3_param_persistence_threshold": 0 }
}
EOF
}

# run NAME PROGRAM WORLD DTYPE STAGE [ARGS...]: the losses into $work/NAME.dat ("step loss" lines).
run() {
  local name=$1 prog=$2 world=$3 dtype=$4 stage=$5 rc
  shift 5
  config "$work/$name.json" "$dtype" "$stage"
  timeout -k 5 120 "$launch" --launcher local --num_gpus "$world" --master_port 0 "$prog" \
    --config "$work/$name.json" --steps $steps --print-interval 1 --channels 32 --layers 2 --heads 2 \
    --context 32 --eval-windows 8 --data "$data" "$@" > "$work/$name.log" 2>&1
  rc=$?
  if [ $rc -ne 0 ]; then
    if grep -q 'no CUDA device is visible' "$work/$name.log"; then
      echo "gpt-cuda-worlds: $(grep -m1 'no CUDA device' "$work/$name.log"): skipped"
      exit 77
    fi
    echo "gpt-cuda-worlds: $name: failed (rc $rc):"
    tail -8 "$work/$name.log"
    exit 1
  fi
  if [ "$prog" = "$gpu" ] && ! grep -q "^backend: $backend" "$work/$name.log"; then
    echo "gpt-cuda-worlds: $name: no 'backend: $backend' line"
    exit 1
  fi
  sed -n 's/^step=\([0-9]*\) train_loss=\([0-9.eE+-]*\) .*/\1 \2/p' "$work/$name.log" > "$work/$name.dat"
}

failed=0
# compare NAME REF TOL FIRST LAST: steps FIRST..LAST of NAME against REF.
compare() {
  local name=$1 ref=$2 tol=$3 first=$4 last=$5
  if ! awk -v tol="$tol" -v first="$first" -v last="$last" -v name="$name" -v ref="$ref" '
      function abs(x) { return x < 0 ? -x : x }
      FNR == NR { want[$1] = $2; next }
      $1 >= first && $1 <= last { got[$1] = $2 }
      END {
        for (s = first; s <= last; s++) {
          if (!(s in got) || !(s in want)) { printf "gpt-cuda-worlds: %s: no loss at step %d\n", name, s; bad = 1; continue }
          d = abs(got[s] - want[s]); if (d > worst) worst = d
          if (d > tol) { printf "gpt-cuda-worlds: %s: step %d loss %s, %s has %s (|diff| %.3g > %s)\n", name, s, got[s], ref, want[s], d, tol; bad = 1 }
        }
        if (first == 1 && got[1] - got[last] < 0.5) { printf "gpt-cuda-worlds: %s: the loss fell only from %s to %s\n", name, got[1], got[last]; bad = 1 }
        printf "gpt-cuda-worlds: %s: steps %d-%d against %s: worst |diff| %.3g (bound %s)%s\n", name, first, last, ref, worst, tol, bad ? ": FAILED" : ""
        exit bad }' "$work/$ref.dat" "$work/$name.dat"; then
    failed=1
  fi
}

# 1. curves
run gpu-w1-s0-fp32 "$gpu" 1 fp32 0 --no-resume
run gpu-w2-s1-fp32 "$gpu" 2 fp32 1 --no-resume
run gpu-w3-s2-fp32 "$gpu" 3 fp32 2 --no-resume
run gpu-w4-s3-fp32 "$gpu" 4 fp32 3 --no-resume
run gpu-w1-s0-bf16 "$gpu" 1 bf16 0 --no-resume
run gpu-w4-s3-bf16 "$gpu" 4 bf16 3 --no-resume
for n in gpu-w2-s1-fp32 gpu-w3-s2-fp32 gpu-w4-s3-fp32; do
  compare "$n" gpu-w1-s0-fp32 2e-3 1 $steps
done
compare gpu-w4-s3-bf16 gpu-w1-s0-bf16 0.15 1 $steps

# 2. checkpoints: device (world 2) -> host (world 3), host (world 1) -> device (world 3)
run d2h-first "$gpu" 2 fp32 2 --save-dir "$work/d2h" --save-interval 10 --stop-after 10
run d2h-resumed "$cpu" 3 fp32 3 --save-dir "$work/d2h" --save-interval 10
run h2d-first "$cpu" 1 fp32 1 --save-dir "$work/h2d" --save-interval 10 --stop-after 10
run h2d-resumed "$gpu" 3 fp32 1 --save-dir "$work/h2d" --save-interval 10
compare d2h-first gpu-w1-s0-fp32 2e-3 1 10
compare h2d-first gpu-w1-s0-fp32 2e-3 1 10
compare d2h-resumed gpu-w1-s0-fp32 2e-3 11 $steps
compare h2d-resumed gpu-w1-s0-fp32 2e-3 11 $steps
for n in d2h-resumed h2d-resumed; do
  if grep -q '^step=[1-9] \|^step=10 ' "$work/$n.log"; then
    echo "gpt-cuda-worlds: $n: trained steps 1-10 again instead of resuming"
    failed=1
  fi
done

# 3. zero-ckpt-merge on the device's checkpoint and the host's, both taken at step 10
for side in d2h h2d; do
  if ! timeout -k 5 60 "$merge" "$work/$side" --tag global_step10 -o "$work/$side.safetensors" > "$work/$side.merge.log" 2>&1; then
    echo "gpt-cuda-worlds: zero-ckpt-merge of the $side checkpoint failed:"
    tail -5 "$work/$side.merge.log"
    exit 1
  fi
done
hdr() { # the header's length (8-byte little-endian) plus 8
  echo $(( $(od -A n -t u8 -N 8 "$1" | tr -d ' ') + 8 ))
}
ha=$(hdr "$work/d2h.safetensors") hb=$(hdr "$work/h2d.safetensors")
if [ "$ha" != "$hb" ] || ! cmp -s -n "$ha" "$work/d2h.safetensors" "$work/h2d.safetensors" ||
   [ "$(stat -c %s "$work/d2h.safetensors")" != "$(stat -c %s "$work/h2d.safetensors")" ]; then
  echo "gpt-cuda-worlds: the merged device and host checkpoints differ in their tensors (header or size)"
  failed=1
else
  if ! paste -d ' ' <(od -A n -v -t f4 -j "$ha" -w4 "$work/d2h.safetensors") \
                    <(od -A n -v -t f4 -j "$hb" -w4 "$work/h2d.safetensors") |
       awk 'function abs(x) { return x < 0 ? -x : x }
            { n++; d = abs($1 - $2); if (d > worst) worst = d; if (d > 2e-3 + 2e-2 * abs($2)) bad++
              if ($1 ~ /nan|inf/ || $2 ~ /nan|inf/) bad++ }
            END { printf "gpt-cuda-worlds: merged step-10 weights, device (world 2) against host (world 1): %d values, worst |diff| %.3g, %d beyond 2e-3 + 2e-2 |w|%s\n", n, worst, bad, (bad || n == 0) ? ": FAILED" : ""
                  exit (bad || n == 0) }'; then
    failed=1
  fi
fi
exit $failed
