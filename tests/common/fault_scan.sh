#!/bin/sh
# One job per K = 1, 2, ...: EXE DIR scan K [EXTRA...] on NP ranks through
# zero-launch, each failing the K-th of one rank's allocations in the code
# under test (fault_shim.h; tests/comm/malloc_fail_shim.c in LD_PRELOAD),
# until that rank makes fewer than K and leaves DIR/NAME.end. Every job must
# pass (exit 0): its checks say what all-or-nothing means there.
# usage: fault_scan.sh DIR NAME ZERO_LAUNCH NP EXE [EXTRA...]
set -u
dir=$1 name=$2 launch=$3 np=$4 exe=$5
shift 5
rm -f "$dir/$name.end"
k=1
while [ "$k" -le 500 ]; do
  if ! "$launch" --launcher local --num_gpus "$np" --master_port 0 "$exe" "$dir" scan "$k" "$@"; then
    echo "fault_scan $name: allocation $k: FAILED (above)"
    exit 1
  fi
  if [ -f "$dir/$name.end" ]; then
    rm -f "$dir/$name.end"
    echo "fault_scan $name: each of the $((k - 1)) allocations failed in turn: every job passed"
    exit 0
  fi
  k=$((k + 1))
done
echo "fault_scan $name: allocation 500 still made (no $name.end)"
exit 1
