#!/usr/bin/env bash
# Multi-rank checkpoints through zero-launch: for each world size W given,
# save at stage 3 and stage 0 (tests round trip, tag agreement, missing shard);
# then load every checkpoint at every world size given, at stage 3 and stage 0
# (resharding W -> W' and stage 0 <-> 3 across real processes).
# usage: multi.sh ZERO_LAUNCH CKPT_CHECK WORLD...
set -euo pipefail
launch=$1; check=$2; shift 2
export ZERO_RENDEZVOUS_TIMEOUT=${ZERO_RENDEZVOUS_TIMEOUT:-60}
dir=$(mktemp -d /tmp/zero-ckpt-multi-XXXXXX)
trap 'rm -rf "$dir"' EXIT
run() { local n=$1; shift; "$launch" --launcher local --num_gpus "$n" --master_port 0 "$check" "$@"; }
for w in "$@"; do
  run "$w" save "$dir" 3
  run "$w" save "$dir" 0
done
for w in "$@"; do
  for from in "$@"; do
    for s in 3 0; do
      run "$w" load "$dir" "w${from}s${s}" 3
      run "$w" load "$dir" "w${from}s${s}" 0
    done
  done
done
echo "multi-rank checkpoint checks passed for world sizes $*"
