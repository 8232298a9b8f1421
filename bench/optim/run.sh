#!/usr/bin/env bash
# bench/run optim: builds bench_optim in $ZERO_BUILD_DIR (default build) and
# runs it. Extra arguments go to bench_optim (--n, --reps, --threads, --quick,
# --rank-threads). It starts with the reduce+AdamW step of two ranks of this
# machine, fused against the unfused pipeline (the reduce-scatter's last hop,
# then the step), on the same buffers. The last line is:
# summary: adamw_fp32_over_triad_1t=<x> adamw_fp32_over_triad_2t=<y>
# fused_adamw_speedup_1t=<a> fused_adamw_speedup_2t=<b> fused_over_unfused=<c>
set -euo pipefail
. "$(dirname "$0")/../lib.sh"
bench_build bench/optim/bench_optim
exec "$build_dir/bench/optim/bench_optim" "$@"
