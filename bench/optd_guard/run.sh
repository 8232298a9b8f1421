#!/usr/bin/env bash
# bench/run optd_guard [--mib M] [--reps R]: what zero-optd's allow list in
# front of UCX's listening sockets (lib/offload/optd_guard.c) costs a TCP
# stream received on a connection accepted from a guarded listener (the
# filter runs on each of its packets): no guard, a guard allowing the
# sender's address alone, and one at the list's bound (64 IPv4 addresses, the
# sender's compared last), alternated in one run (bench_guard.c). Two phases:
# "bulk" (256 KiB writes: the 64 KiB packets loopback carries) and "small"
# (1448-byte writes with TCP_NODELAY: a packet each, an Ethernet MSS). Both
# ends run on one CPU (the last this script may use), so that the filter's
# CPU time shows in the throughput rather than hiding behind the other core.
# The host's state and the load are printed before each phase. Last line:
#   summary: guard_one_over_none=<r> guard_full_over_none=<s> guard_one_over_none_small=<t>
#            guard_full_over_none_small=<u>
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build bench/optd_guard/bench_guard bench/host/host_probe
cpu=$(taskset -pc $$ | sed 's/.*: //; s/.*[,-]//')
declare -A sum
for phase in bulk small; do
  args=()
  [ "$phase" = small ] && args=(--chunk 1448 --mib 256)
  echo "# $phase: load $(cut -d' ' -f1-3 /proc/loadavg), both ends on cpu $cpu"
  bench_host_state "$phase"
  out=$(taskset -c "$cpu" "$build_dir/bench/optd_guard/bench_guard" "${args[@]}" "$@")
  grep -v '^summary:' <<<"$out"
  sum[$phase]=$(grep '^summary:' <<<"$out" | sed 's/^summary: //')
done
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
bench_host_phases
small=$(sed 's/\([a-z_]*\)=/\1_small=/g' <<<"${sum[small]}")
echo "summary: ${sum[bulk]} $small"
