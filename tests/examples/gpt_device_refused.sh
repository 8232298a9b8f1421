#!/usr/bin/env bash
# The trainers' device option where it cannot be honoured, on a machine without
# a GPU (CPU builds and CUDA builds alike):
#   gpt_device_refused.sh TRAIN_GPT [TRAIN_GPT_CUDA]
# train_gpt --device 0 is refused with a message naming train_gpt_cuda;
# train_gpt_cuda (when given) fails before training with "no CUDA device is
# visible". Both exit non-zero without a crash (status 1 or 2, not a signal).
# Exit status 77 where a GPU is visible (train_gpt_cuda would train).
set -uo pipefail
cpu=$1 gpu=${2:-}
data="$(cd "$(dirname "$0")/../data/license-texts" && pwd)"
cfg="$(cd "$(dirname "$0")/../../configs" && pwd)/demo_zero2.json"
unset RANK WORLD_SIZE LOCAL_RANK LOCAL_SIZE MASTER_ADDR MASTER_PORT
fail() { echo "gpt-device-refused: $*"; exit 1; }

out=$("$cpu" --config "$cfg" --data "$data" --steps 1 --device 0 2>&1)
rc=$?
[ $rc -eq 1 ] || [ $rc -eq 2 ] || fail "train_gpt --device 0: exit status $rc, want 1 or 2: $out"
grep -q 'train_gpt_cuda takes --device' <<< "$out" || fail "train_gpt --device 0 said: $out"
grep -q '^step=' <<< "$out" && fail "train_gpt --device 0 trained: $out"
echo "gpt-device-refused: train_gpt --device 0: refused (status $rc): $out"

if [ -n "$gpu" ]; then
  out=$("$gpu" --config "$cfg" --data "$data" --steps 1 2>&1)
  rc=$?
  if [ $rc -eq 0 ]; then
    echo "gpt-device-refused: train_gpt_cuda trained: a GPU is visible, nothing to check"
    exit 77
  fi
  [ $rc -eq 1 ] || [ $rc -eq 2 ] || fail "train_gpt_cuda: exit status $rc, want 1: $out"
  grep -q 'no CUDA device is visible' <<< "$out" || fail "train_gpt_cuda said: $out"
  echo "gpt-device-refused: train_gpt_cuda without a GPU: refused (status $rc): $out"
fi
exit 0
