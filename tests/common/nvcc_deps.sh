#!/bin/sh
# nvcc_deps.sh NINJA BUILD_DIR OBJECT HEADER: ninja recorded HEADER among the
# headers OBJECT (a .cu object of BUILD_DIR) was compiled from, so touching
# HEADER rebuilds it (native/nvcc_depfile.py gives nvcc's rule the flags).
# Exit 0 when it did, 1 when not (with ninja's record).
ninja=$1 build=$2 obj=$3 header=$4
deps=$("$ninja" -C "$build" -t deps "$obj") || { echo "nvcc_deps: ninja -t deps $obj failed"; exit 1; }
if printf '%s\n' "$deps" | grep -q "/$header\$"; then
  echo "nvcc_deps: $obj depends on $header ($(printf '%s\n' "$deps" | head -1))"
  exit 0
fi
echo "nvcc_deps: ninja recorded no dependency of $obj on $header:"
printf '%s\n' "$deps" | head -5
exit 1
