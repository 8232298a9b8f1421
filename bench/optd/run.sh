#!/usr/bin/env bash
# bench/run optd: builds bench_optd and zero-optd in $ZERO_BUILD_DIR (default
# build) and runs the step on a local zero-optd process against the in-process
# host store. Extra arguments go to bench_optd (--n, --piece, --reps, --window).
# The last line is: summary: optd_step_over_local=<x> optd_step_throughput_over_path=<y>
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build bench/optd/bench_optd tools/zero-optd/zero-optd
export UCX_NET_DEVICES=${UCX_NET_DEVICES:-lo}
exec "$build_dir/bench/optd/bench_optd" --optd "$build_dir/tools/zero-optd/zero-optd" "$@"
