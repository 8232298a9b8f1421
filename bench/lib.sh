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
