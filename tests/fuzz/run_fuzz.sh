#!/usr/bin/env bash
# Runs one libFuzzer target for $ZERO_FUZZ_SECONDS (default 20) over its seed
# corpus, under ASan and UBSan (any finding halts the run), and fails with the
# crash file's path when the fuzzer finds anything.
#
#   run_fuzz.sh EXE NAME CORPUS_DIR SCRATCH_DIR
#
# The seeds are only read: libFuzzer writes new inputs into the first corpus
# directory it is given, here SCRATCH_DIR/NAME/new, and crash files under
# SCRATCH_DIR/NAME/artifacts (both in the build dir, emptied on each run).
# Any crash, leak, timeout (30 s for one input) or out-of-memory is a finding.
# Extra libFuzzer flags may come from $ZERO_FUZZ_ARGS (e.g. -jobs, -dict).
set -uo pipefail
exe=$1 name=$2 corpus=$3 scratch=$4
seconds=${ZERO_FUZZ_SECONDS:-20}
here=$(cd "$(dirname "$0")" && pwd)
work=$scratch/$name
rm -rf "$work"
mkdir -p "$work/new" "$work/artifacts" "$work/tmp"

# allocator_may_return_null: an allocation too large to serve returns NULL,
# as glibc's malloc does, instead of ASan aborting. A damaged file can make
# libhdf5 ask for terabytes (H5C_protect sizing a metadata entry from the
# file); outside ASan that malloc fails and the HDF5 call returns an error,
# which libzero must then handle (corpus/ckpt/crash-hdf5-huge-metadata-allocation).
export ASAN_OPTIONS=detect_leaks=1:halt_on_error=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:allocator_may_return_null=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export UCX_ERROR_SIGNALS=    # UCX would otherwise catch the crash signals before libFuzzer writes the crash file
# LSan takes one suppressions file: the CI one plus the fuzz one (libhdf5's own leaks)
cat "$here/../../.ci/lsan.supp" "$here/lsan.supp" >"$work/lsan.supp"
export LSAN_OPTIONS=suppressions=$work/lsan.supp:print_suppressions=0
export TMPDIR=$work/tmp      # the targets' own temp dirs (ckpt, client_sd): emptied with $work

# -malloc_limit_mb above -rss_limit_mb: a damaged file can also make libhdf5
# malloc a few GB it never touches (a 4 GB buffer inside H5Dread,
# corpus/ckpt/crash-hdf5-4gb-allocation-in-dread), which libFuzzer would call
# an out-of-memory at 2 GB; memory really used is still bounded by the RSS limit.
# shellcheck disable=SC2086
"$exe" -max_total_time="$seconds" -timeout=30 -rss_limit_mb=2048 -malloc_limit_mb=16384 -print_final_stats=1 \
  -artifact_prefix="$work/artifacts/" ${ZERO_FUZZ_ARGS:-} "$work/new" "$corpus" >"$work/log" 2>&1
rc=$?
tail -n 40 "$work/log"
stats=$(grep -E '^#[0-9]+.*(DONE|cov:)' "$work/log" | tail -n 1)
echo "fuzz-$name: ${seconds}s, last status: ${stats:-none}"
# findings: crash-, leak-, timeout-, oom- files (slow-unit- files only say the
# machine was slow: a busy CI host must not fail on them)
found=$(find "$work/artifacts" -type f \( -name 'crash-*' -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
if [ "$rc" -ne 0 ] || [ -n "$found" ]; then
  echo "fuzz-$name: FINDING (exit $rc); full log: $work/log"
  for f in $found; do
    echo "fuzz-$name: crash file: $f  (reproduce: $exe $f)"
  done
  exit 1
fi
exit 0
