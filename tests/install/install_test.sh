#!/usr/bin/env bash
# Packaging test: libzero as a user gets it from `meson install`.
#
# Installs the build into a staging directory (meson install --destdir), then
# MOVES the installed prefix somewhere else, so everything below must work
# from a relocated tree:
#   - the installed tools run without LD_LIBRARY_PATH and load the relocated
#     libzero.so (install_rpath $ORIGIN/../<libdir>);
#   - zero.pc (pkg-config) and zeroConfig.cmake (find_package(zero)) resolve
#     to the relocated prefix;
#   - the installed flat example builds out of tree with its Makefile
#     (pkg-config) and its CMakeLists.txt (CMake), and each binary trains a
#     few steps at world 1 under the installed zero-launch. The trainers find
#     libzero through the rpath their build gives them (the Makefile adds
#     pkg-config's libdir, CMake its imported location), not LD_LIBRARY_PATH;
#   - find_package(zero 99) is refused (the version file is consulted);
#   - the installed LibTorch example (examples/libtorch) builds out of tree
#     with its CMakeLists.txt against the relocated install and the system's
#     LibTorch, and trains 3 steps at world 1, stage 1, with the relocated
#     libzero; skipped, with the reason, where CMake finds no LibTorch
#     (apt-get install libtorch-dev) or libzero is sanitized (LibTorch is not
#     built with the sanitizers). Its build takes 30 s of CPU.
#
# Usage: install_test.sh BUILD_DIR PREFIX LIBDIR DATADIR INCLUDEDIR [SANITIZE]
# (as configured; relative dirs are relative to PREFIX). SANITIZE is meson's
# b_sanitize: a sanitized libzero.so can only be loaded by programs built with
# the same sanitizers (the ASan runtime must come first), so the out-of-tree
# trainers are then built with -fsanitize=SANITIZE too.
# Scratch lives under BUILD_DIR and is removed on exit. Exits 77 (skipped)
# when pkg-config, cmake, make or a C compiler is missing.
set -u
build=$(realpath "${1:?usage: install_test.sh BUILD_DIR PREFIX LIBDIR DATADIR INCLUDEDIR [SANITIZE]}")
prefix=${2:?} libdir=${3:?} datadir=${4:?} includedir=${5:?} sanitize=${6:-none}
san_flags=""
[ "$sanitize" = none ] || san_flags="-fsanitize=$sanitize"
unset LD_LIBRARY_PATH PKG_CONFIG_PATH CMAKE_PREFIX_PATH

skip() { echo "install_test: SKIP: $*"; exit 77; }
failures=0
fail() { echo "install_test: FAIL: $*"; failures=$((failures + 1)); }
for tool in pkg-config cmake make cc; do
  command -v "$tool" >/dev/null 2>&1 || skip "'$tool' is not installed"
done
# Relative install dirs are under the prefix; absolute ones outside it cannot be relocated.
rel() { case $1 in "$prefix"/*) echo "${1#"$prefix"/}" ;; /*) echo "" ;; *) echo "$1" ;; esac; }
libdir=$(rel "$libdir") datadir=$(rel "$datadir") includedir=$(rel "$includedir")
[ -n "$libdir" ] && [ -n "$datadir" ] && [ -n "$includedir" ] ||
  skip "libdir/datadir/includedir outside the prefix cannot be relocated"

tmp=$(mktemp -d "$build/install-test-XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# 1. Install, then relocate the prefix.
meson install -C "$build" --no-rebuild --quiet --destdir "$tmp/stage" >"$tmp/install.log" 2>&1 ||
  { cat "$tmp/install.log"; echo "install_test: FAIL: meson install"; exit 1; }
root="$tmp/relocated"
mv "$tmp/stage$prefix" "$root" || { echo "install_test: FAIL: cannot move $tmp/stage$prefix"; exit 1; }
rm -rf "$tmp/stage"
echo "install_test: installed and moved to $root"

# 2. Tools: run from the relocated bin/ without LD_LIBRARY_PATH, loading the relocated libzero.
for tool in zero-config zero-launch zero-estimate zero-ckpt-merge; do
  [ -x "$root/bin/$tool" ] || { fail "$tool not installed in bin/"; continue; }
  "$root/bin/$tool" --help >"$tmp/$tool.help" 2>&1 || fail "$tool --help exits $? : $(head -3 "$tmp/$tool.help")"
done
for tool in zero-config zero-estimate; do # the two that link libzero.so
  resolved=$(ldd "$root/bin/$tool" | awk '$1 ~ /^libzero\.so/ { print $3 }')
  [ "$resolved" = "$(realpath "$root/$libdir")/libzero.so.0" ] ||
    [ "$(realpath "$resolved" 2>/dev/null)" = "$(realpath "$root/$libdir/libzero.so.0" 2>/dev/null)" ] ||
    fail "$tool loads libzero from '$resolved', not from the relocated $root/$libdir"
done
# CUDA builds: the CUDA module is installed beside libzero.so, which links neither
# the CUDA runtime nor NCCL (lib/util/cuda_module.h; libzero finds it through its own path).
if [ -e "$build/libzero-cuda.so" ]; then
  [ -e "$root/$libdir/libzero-cuda.so" ] || fail "libzero-cuda.so is not installed beside libzero.so in $root/$libdir"
  if readelf -d "$root/$libdir/libzero.so.0" | grep NEEDED | grep -Eq 'libcudart|libnccl'; then
    fail "the installed libzero.so needs the CUDA runtime or NCCL to load"
  fi
fi

examples="$root/$datadir/doc/libzero/examples"
[ -f "$examples/flat/ds_config.json" ] || fail "examples not installed under $examples"
if "$root/bin/zero-config" check "$examples/flat/ds_config.json" --world-size 1 >"$tmp/check.log" 2>&1; then
  echo "install_test: installed zero-config checks the installed flat config"
else
  fail "zero-config check of the installed flat config: $(cat "$tmp/check.log")"
fi

# Trains N steps at world 1 under the installed launcher; checks the last step printed a finite loss.
train() { # NAME BINARY
  local log="$tmp/$1.train.log"
  (cd "$tmp/$1" && timeout 60 "$root/bin/zero-launch" --launcher local --num_gpus 1 --master_port 0 \
     "$2" --config ds_config.json --steps 5) >"$log" 2>&1 || { fail "$1: training exits $?: $(tail -5 "$log")"; return; }
  grep -Eq '^step=5 train_loss=[0-9]+\.[0-9]+$' "$log" || { fail "$1: no 'step=5 train_loss=<finite>' line: $(tail -5 "$log")"; return; }
  local lib
  lib=$(ldd "$2" | awk '$1 ~ /^libzero\.so/ { print $3 }')
  [ "$(realpath "$lib" 2>/dev/null)" = "$(realpath "$root/$libdir/libzero.so.0")" ] ||
    { fail "$1: trainer loads libzero from '$lib', not the relocated install"; return; }
  echo "install_test: $1 trained: $(grep '^step=5' "$log")"
}

# 3. pkg-config: the relocated zero.pc must point into the relocated prefix.
export PKG_CONFIG_PATH="$root/$libdir/pkgconfig"
pc_libdir=$(pkg-config --variable=libdir zero 2>"$tmp/pc.err") || fail "pkg-config zero: $(cat "$tmp/pc.err")"
[ "$(realpath "$pc_libdir" 2>/dev/null)" = "$(realpath "$root/$libdir")" ] ||
  fail "zero.pc's libdir is '$pc_libdir', not the relocated $root/$libdir (a build directory configured before pkgconfig.relocatable=true became the project default keeps the old value: meson configure $build -Dpkgconfig.relocatable=true)"
for flag in $(pkg-config --cflags zero); do
  case $flag in -I*) [ "$(realpath "${flag#-I}")" = "$(realpath "$root/$includedir")" ] ||
                       fail "pkg-config --cflags zero has '$flag' (only the relocated include dir expected)" ;; esac
done
cp -r "$examples/flat" "$tmp/pc" && chmod -R u+w "$tmp/pc"
if make -C "$tmp/pc" CFLAGS="-O2 -g $san_flags" LDFLAGS="$san_flags" >"$tmp/make.log" 2>&1; then
  train pc "$tmp/pc/train_flat"
else
  fail "make (pkg-config) of the installed flat example: $(tail -20 "$tmp/make.log")"
fi
unset PKG_CONFIG_PATH

# 4. CMake: find_package(zero) through CMAKE_PREFIX_PATH.
cp -r "$examples/flat" "$tmp/cm" && chmod -R u+w "$tmp/cm"
if cmake -S "$tmp/cm" -B "$tmp/cm/build" -DCMAKE_PREFIX_PATH="$root" \
     -DCMAKE_C_FLAGS="$san_flags" -DCMAKE_EXE_LINKER_FLAGS="$san_flags" >"$tmp/cmake.log" 2>&1 &&
   cmake --build "$tmp/cm/build" >>"$tmp/cmake.log" 2>&1; then
  train cm "$tmp/cm/build/train_flat"
else
  fail "CMake build of the installed flat example: $(tail -20 "$tmp/cmake.log")"
fi
# The version file is consulted: a newer major than installed is refused.
mkdir -p "$tmp/ver"
printf 'cmake_minimum_required(VERSION 3.16)\nproject(v C)\nfind_package(zero 99 REQUIRED)\n' >"$tmp/ver/CMakeLists.txt"
if cmake -S "$tmp/ver" -B "$tmp/ver/build" -DCMAKE_PREFIX_PATH="$root" >"$tmp/ver.log" 2>&1; then
  fail "find_package(zero 99) succeeded against version $(sed -n 's/^set(PACKAGE_VERSION "\(.*\)")/\1/p' \
        "$root/$libdir/cmake/zero/zeroConfigVersion.cmake")"
elif ! grep -q 'zeroConfig.cmake, version: ' "$tmp/ver.log"; then
  fail "find_package(zero 99) failed for another reason than the version: $(tail -5 "$tmp/ver.log")"
fi

# 5. The LibTorch example, where LibTorch is installed.
mkdir -p "$tmp/probe"
printf 'cmake_minimum_required(VERSION 3.16)\nproject(p CXX)\nfind_package(Torch REQUIRED)\n' >"$tmp/probe/CMakeLists.txt"
if [ "$sanitize" != none ]; then
  echo "install_test: libtorch example: SKIP (libzero is built with -fsanitize=$sanitize; LibTorch is not)"
elif [ ! -f "$examples/libtorch/train_torch.cpp" ] || [ ! -f "$examples/libtorch/CMakeLists.txt" ]; then
  fail "the LibTorch example is not installed under $examples/libtorch"
elif ! command -v c++ >/dev/null 2>&1; then
  echo "install_test: libtorch example: SKIP (no C++ compiler)"
elif ! cmake -S "$tmp/probe" -B "$tmp/probe/build" >"$tmp/probe.log" 2>&1; then
  echo "install_test: libtorch example: SKIP (CMake finds no LibTorch: apt-get install libtorch-dev)"
else
  cp -r "$examples/libtorch" "$tmp/torch" && chmod -R u+w "$tmp/torch"
  if cmake -S "$tmp/torch" -B "$tmp/torch/build" -DCMAKE_PREFIX_PATH="$root" >"$tmp/torch.log" 2>&1 &&
     cmake --build "$tmp/torch/build" >>"$tmp/torch.log" 2>&1; then
    bin="$tmp/torch/build/train_torch"
    if (cd "$tmp/torch" && timeout 120 "$root/bin/zero-launch" --launcher local --num_gpus 1 --master_port 0 \
          "$bin" --stage 1 --steps 3 --out "$tmp/torch/losses.txt") >"$tmp/torch.train.log" 2>&1 &&
       awk '$1 == 3 && $2 + 0 > 0 && $2 + 0 < 100 { ok = 1 } END { exit !ok }' "$tmp/torch/losses.txt"; then
      lib=$(ldd "$bin" | awk '$1 ~ /^libzero\.so/ { print $3 }')
      if [ "$(realpath "$lib" 2>/dev/null)" = "$(realpath "$root/$libdir/libzero.so.0")" ]; then
        echo "install_test: libtorch example trained: $(tail -1 "$tmp/torch/losses.txt")"
      else
        fail "libtorch example: loads libzero from '$lib', not the relocated install"
      fi
    else
      fail "libtorch example: training: $(tail -5 "$tmp/torch.train.log")"
    fi
  else
    fail "CMake build of the installed LibTorch example: $(tail -20 "$tmp/torch.log")"
  fi
fi

[ "$failures" -eq 0 ] || { echo "install_test: $failures failure(s)"; exit 1; }
echo "install_test: OK"
