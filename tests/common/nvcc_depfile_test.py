#!/usr/bin/env python3
"""nvcc_depfile_test.py SCRIPT: native/nvcc_depfile.py (SCRIPT) on build.ninja
rules of the forms meson 1.0.1 writes, in a temporary build directory
(MESON_BUILD_ROOT, as meson runs it).

- `nvcc $ARGS ...` (nvcc named by native/cuda.ini) and `ccache nvcc $ARGS ...`
  (nvcc found on PATH with ccache installed): the flags go in front of $ARGS,
  never between ccache and nvcc (ccache would read -MD as its own option);
- a rule with -MD already, the C rule and everything else: left alone;
- run twice (a reconfiguration): the same text, the flags once.
Exit status: 0 when all hold, 1 with what differs.
"""
import os
import subprocess
import sys
import tempfile

BEFORE = """\
rule c_COMPILER
 command = ccache cc $ARGS -MD -MQ $out -MF $DEPFILE -o $out -c $in
 deps = gcc
 depfile = $DEPFILE_UNQUOTED

rule cuda_COMPILER
 command = /usr/local/cuda/bin/nvcc $ARGS -o $out -c $in
 deps = gcc
 depfile = $DEPFILE_UNQUOTED

rule cuda_COMPILER_FOR_BUILD
 command = ccache nvcc $ARGS -o $out -c $in
 deps = gcc

rule cuda_LINKER
 command = nvcc $ARGS -o $out $in $LINK_ARGS

rule cuda_COMPILER_done
 command = nvcc -MD -MF $DEPFILE $ARGS -o $out -c $in

build x.cu.o: cuda_COMPILER ../x.cu
 ARGS = -O2
"""

AFTER = BEFORE.replace(
    " command = /usr/local/cuda/bin/nvcc $ARGS", " command = /usr/local/cuda/bin/nvcc -MD -MF $DEPFILE -MT $out $ARGS"
).replace(" command = ccache nvcc $ARGS", " command = ccache nvcc -MD -MF $DEPFILE -MT $out $ARGS")


def main() -> int:
    script = sys.argv[1]
    with tempfile.TemporaryDirectory() as build:
        path = os.path.join(build, "build.ninja")
        with open(path, "w", encoding="utf-8") as f:
            f.write(BEFORE)
        for run in (1, 2):
            subprocess.run([sys.executable, script], check=True, env=dict(os.environ, MESON_BUILD_ROOT=build))
            with open(path, encoding="utf-8") as f:
                got = f.read()
            if got != AFTER:
                print(f"nvcc_depfile_test: run {run}: build.ninja is\n{got}\nexpected\n{AFTER}")
                return 1
    print("nvcc_depfile_test: the flags went in front of $ARGS in both nvcc rules, once")
    return 0


if __name__ == "__main__":
    sys.exit(main())
