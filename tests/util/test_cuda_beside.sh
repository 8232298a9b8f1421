#!/usr/bin/env bash
# The CUDA module is found beside libzero.so (lib/util/cuda_module.h), as
# installed, without ZERO_CUDA_MODULE: a 2-rank train_flat (linked against
# libzero.so; its communicator checks for GPUs, which loads the module) logs,
# at debug level, where it loaded the module from.
# Usage: test_cuda_beside.sh ZERO_LAUNCH TRAIN_FLAT CONFIG LIBZERO_SO
set -uo pipefail
launch=$1 trainer=$2 config=$3 lib=$4
unset ZERO_CUDA_MODULE
want="$(cd "$(dirname "$lib")" && pwd -P)/libzero-cuda.so"
log=$(ZERO_LOG_LEVEL=debug timeout 120 "$launch" --launcher local --num_gpus 2 --master_port 0 \
        "$trainer" --config "$config" --steps 1 2>&1)
rc=$?
if [ $rc -ne 0 ]; then
  echo "$log" | tail -20
  echo "FAIL: train_flat exits $rc"
  exit 1
fi
loaded=$(echo "$log" | grep -o 'CUDA module loaded from [^ ]*' | sort -u)
echo "${loaded:-no 'CUDA module loaded' line}"
[ "$(echo "$loaded" | wc -l)" -eq 1 ] || { echo "FAIL: expected one module path, got: $loaded"; exit 1; }
got=${loaded#CUDA module loaded from }
[ "$(realpath "$got")" = "$(realpath "$want")" ] || { echo "FAIL: loaded $got, expected $want (beside libzero.so)"; exit 1; }
[ "$(echo "$log" | grep -c 'CUDA module loaded from')" -eq 2 ] || { echo "FAIL: not both ranks loaded it"; exit 1; }
echo ok
