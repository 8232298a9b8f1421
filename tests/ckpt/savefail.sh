#!/usr/bin/env bash
# Failed saves through real launches: a 2-rank job (zero-launch, UCX) whose
# filesystem calls under the checkpoint directory go through the fault shim,
# and which fails its save at every call (savefail_rank.c says what is checked).
#   savefail.sh ZERO_LAUNCH SAVEFAIL_RANK FAULT_SHIM [ASAN_RUNTIME] [STRIDE] [CLASS]
# ASAN_RUNTIME: in a sanitizer build, the ASan runtime, which must come first
# in LD_PRELOAD ("" otherwise).
set -euo pipefail
launch=$1 rank_prog=$2 shim=$3 asan=${4:-} stride=${5:-1}
export ZERO_RENDEZVOUS_TIMEOUT=${ZERO_RENDEZVOUS_TIMEOUT:-60}
dir=$(mktemp -d /tmp/zero-savefail-XXXXXX)
trap 'rm -rf "$dir"' EXIT
# The sweep's ENOSPC on H5Fcreate's first write leaks inside HDF5 (see the file).
export LSAN_OPTIONS="suppressions=$(cd "$(dirname "$0")" && pwd)/savefail.lsan.supp:print_suppressions=0"
preload=$shim
[ -n "$asan" ] && preload="$asan:$shim"
LD_PRELOAD="$preload${LD_PRELOAD:+:$LD_PRELOAD}" \
  "$launch" --launcher local --num_gpus 2 --master_port 0 "$rank_prog" "$dir/ckpt" "$stride" ${6:+"$6"}
