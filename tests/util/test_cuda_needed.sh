#!/usr/bin/env bash
# libzero.so must load on a machine without CUDA: no libcudart or libnccl among
# its NEEDED entries. The CUDA module (libzero-cuda.so) is what needs them.
# Usage: test_cuda_needed.sh LIBZERO_SO LIBZERO_CUDA_SO
set -euo pipefail
lib=$1 module=$2
lib_needed=$(readelf -d "$lib" | grep '(NEEDED)' || true)
module_needed=$(readelf -d "$module" | grep '(NEEDED)' || true)
echo "libzero.so NEEDED:"; echo "$lib_needed"
echo "libzero-cuda.so NEEDED:"; echo "$module_needed"
if grep -Eq 'libcudart|libnccl|libcuda\.' <<<"$lib_needed"; then
  echo "FAIL: $lib needs the CUDA runtime or NCCL to load" >&2
  exit 1
fi
for want in libcudart libnccl; do
  if ! grep -q "$want" <<<"$module_needed"; then
    echo "FAIL: $module does not link $want (is it the CUDA module?)" >&2
    exit 1
  fi
done
# the module's one entry point is exported
if ! nm -D --defined-only "$module" | grep -qw zero_cuda_module_api; then
  echo "FAIL: $module does not export zero_cuda_module_api" >&2
  exit 1
fi
echo "ok"
