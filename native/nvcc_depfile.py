#!/usr/bin/env python3
"""Gives nvcc's compile rule in build.ninja the dependency flags meson 1.0 leaves out.

meson 1.0.1 writes the rule for .cu objects with `deps = gcc` and a depfile
of OUT.d, but asks nvcc for no dependency file: ninja then records no
headers, and a .cu object is not rebuilt when a header it includes changes
(lib/comm/quant_elem.h, lib/optim/optim_elem.h), so an incremental build can
link stale kernels. This adds `-MD -MF $DEPFILE -MT $out` (what later meson
versions pass) to each cuda_COMPILER rule that has no -MD yet, so nvcc
writes the file ninja reads. Run by meson after every (re)configuration
(meson.add_postconf_script in meson.build); a rule that already asks for a
dependency file is left alone.
"""
import os
import re
import sys


def main() -> int:
    path = os.path.join(os.environ["MESON_BUILD_ROOT"], "build.ninja")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    # "rule cuda_COMPILER" (or cuda_COMPILER_FOR_BUILD), then its command line
    rule = re.compile(r"^(rule cuda_COMPILER\S*\n command = \S+) (?!.*-MD)", re.M)
    fixed, n = rule.subn(r"\1 -MD -MF $DEPFILE -MT $out ", text)
    if n == 0:
        return 0
    tmp = path + ".nvcc-depfile"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(fixed)
    os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
