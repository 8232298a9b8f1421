#!/usr/bin/env bash
# bench/run optd_guard [--mib M] [--reps R]: what zero-optd's allow list in
# front of UCX's listening sockets (lib/offload/optd_guard.c) costs a TCP
# stream received on a connection accepted from a guarded listener (the
# filter runs on each of its packets): no guard, a guard allowing the
# sender's address alone, and one at the list's bound (64 IPv4 addresses, the
# sender's compared last), alternated in one run (bench_guard.c). The host's
# state and the load are printed before it. Last line:
#   summary: guard_one_over_none=<r> guard_full_over_none=<s>
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build bench/optd_guard/bench_guard bench/host/host_probe
echo "# load before: $(cut -d' ' -f1-3 /proc/loadavg)"
bench_host_state guard
out=$("$build_dir/bench/optd_guard/bench_guard" "$@")
grep -v '^summary:' <<<"$out"
echo "# load after: $(cut -d' ' -f1-3 /proc/loadavg)"
grep '^summary:' <<<"$out"
