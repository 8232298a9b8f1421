#!/usr/bin/env bash
# bench/run offload-slots: builds bench_offload_slots and zero-optd in
# $ZERO_BUILD_DIR (default build), starts one zero-optd on 127.0.0.1 (a free
# port, a fresh job token) and times, in the same run, a device rank's CPU
# offload slot path without a GPU (cpu_inner.h: each slot stepped with the
# state in the process, and handed in place to the remote store on the
# server), and the remote store stepped as a host rank steps it. Extra
# arguments go to bench_offload_slots (--n, --slot, --reps, --threads).
# The last line is: summary: offload_remote_slots_over_host=<x> offload_remote_slots_over_store=<y>
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build bench/offload/bench_offload_slots tools/zero-optd/zero-optd
work=$(mktemp -d)
optd_pid=
cleanup() {
  [ -n "$optd_pid" ] && kill "$optd_pid" 2>/dev/null && wait "$optd_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
ZERO_JOB_TOKEN=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
export ZERO_JOB_TOKEN
"$build_dir/tools/zero-optd/zero-optd" --listen 127.0.0.1:0 --port-file "$work/port" 2>"$work/optd.log" &
optd_pid=$!
for _ in $(seq 200); do [ -s "$work/port" ] && break; sleep 0.05; done
if [ ! -s "$work/port" ]; then
  echo "bench/run offload-slots: zero-optd did not start:" >&2
  cat "$work/optd.log" >&2
  exit 1
fi
echo "bench/run offload-slots: load average $(cut -d' ' -f1-3 /proc/loadavg)"
"$build_dir/bench/offload/bench_offload_slots" --server "127.0.0.1:$(cat "$work/port")" "$@"
echo "bench/run offload-slots: load average after $(cut -d' ' -f1-3 /proc/loadavg)" >&2
