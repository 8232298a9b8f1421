# Sourced by every bench/NAME/run.sh: sets $root (the source tree) and
# $build_dir (absolute; $ZERO_BUILD_DIR, default build), configuring and
# building it with scripts/build when it does not exist yet.
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build_dir=${ZERO_BUILD_DIR:-build}
case "$build_dir" in /*) ;; *) build_dir="$root/$build_dir" ;; esac
if [ ! -f "$build_dir/build.ninja" ]; then
  (cd "$root" && ZERO_BUILD_DIR="$build_dir" scripts/build >&2)
fi
# Brings the named targets up to date (e.g. bench/engine/bench_engine).
bench_build() { ninja -C "$build_dir" "$@" >/dev/null; }

# bench_host_state PHASE: runs bench/host/host_probe (usually well under a
# second, at most about 2 s under load) and
# prints its line, e.g. "host: cross-core copy 46.2 GB/s, same-core 32.1 GB/s,
# core round trip 340 ns (...)", then sets $host_copy to the cross-core figure
# ("46.2 GB/s", or "n/a") and appends "PHASE=46.2" to $host_phases, which
# bench_host_phases prints. Call it right before each measured phase and tag
# that phase's figure lines with $host_copy: on a host whose vCPUs the
# hypervisor moves, a copy of what another core wrote runs at about half speed
# for seconds to minutes, and every figure that hands data between cores
# (shared memory, zero-optd, multi-process ranks) follows it
# (docs/benchmarks.md, "The host's state"). It reports the state; it never
# waits for a good one (that would pick figures).
host_phases=""
bench_host_state() {
    local line probe="$build_dir/bench/host/host_probe"
    [ -x "$probe" ] || bench_build bench/host/host_probe || true
    line=$("$probe" 2>/dev/null) || line=""
    [ -n "$line" ] || line="host: cross-core copy n/a (bench/host/host_probe failed)"
    echo "$line"
    host_copy=$(echo "$line" | sed -n 's/^host: cross-core copy \([^,(]*[^,( ]\).*/\1/p')
    [ -n "$host_copy" ] || host_copy=n/a
    host_phases="${host_phases:+$host_phases }$1=${host_copy% GB/s}"
}
# bench_host_phases: one line with every phase's cross-core copy rate (GB/s), for the end of a run.
bench_host_phases() {
    echo "host: cross-core copy by phase (GB/s): ${host_phases:-none measured}" \
         "(about half of the fast figure: the slow state; docs/benchmarks.md)"
}
