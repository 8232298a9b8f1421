#!/bin/sh
# Every allocation of libzero's on rank 1's thread in zero_comm_split fails
# in turn, one job each (split_fail.c, scan K; malloc_fail_shim.c in
# LD_PRELOAD): K = 1, 2, ... until rank 1 makes fewer than K, which it marks
# with DIR/split_scan.end. Each job must pass: all or none of the ranks'
# splits failed, at once.
# usage: split_fail_scan.sh ZERO_LAUNCH SPLIT_FAIL DIR
set -u
launch=$1 exe=$2 dir=$3
rm -f "$dir/split_scan.end"
k=1
while [ "$k" -le 200 ]; do
  if ! "$launch" --launcher local --num_gpus 2 --master_port 0 "$exe" "$dir" scan "$k"; then
    echo "split_fail_scan: allocation $k of rank 1's in zero_comm_split: FAILED (above)"
    exit 1
  fi
  if [ -f "$dir/split_scan.end" ]; then
    rm -f "$dir/split_scan.end"
    echo "split_fail_scan: each of rank 1's $((k - 1)) allocations in zero_comm_split failed in turn: all or none of the splits failed, at once"
    exit 0
  fi
  k=$((k + 1))
done
echo "split_fail_scan: rank 1 still made allocation 200 in zero_comm_split (no end marker)"
exit 1
