#!/usr/bin/env python3
"""Gives nvcc's compile rule in build.ninja the dependency flags meson 1.0 leaves out.

meson 1.0.1 writes the rule for .cu objects with `deps = gcc` and a depfile
of OUT.d, but asks nvcc for no dependency file: ninja then records no
headers, and a .cu object is not rebuilt when a header it includes changes
(lib/comm/quant_elem.h, lib/optim/optim_elem.h), so an incremental build can
link stale kernels. This adds `-MD -MF $DEPFILE -MT $out` (what later meson
versions pass) in front of `$ARGS` in each cuda_COMPILER rule that has no -MD
yet, so nvcc writes the file ninja reads. In front of `$ARGS`, not after the
command's first word: that word is `ccache` when meson finds nvcc on PATH
and ccache installed (meson then runs `ccache nvcc`), and ccache would take
the flags as its own. Run by meson after every (re)configuration
(meson.add_postconf_script in meson.build); a rule that already asks for a
dependency file is left alone. Tests (tests/meson.build): build-nvcc-deps
(ninja's record for a real .cu object) and build-nvcc-depfile-rule (this
script on the rule forms meson writes).
"""
import os
import re
import sys

FLAGS = "-MD -MF $DEPFILE -MT $out "


def add_flags(text):
    """The build.ninja text with the flags added; how many cuda_COMPILER rules
    it has, and how many of those still ask for no dependency file."""
    rules = missed = 0
    out = []
    in_rule = False
    for line in text.splitlines(keepends=True):
        if line.startswith("rule "):
            in_rule = re.match(r"rule cuda_COMPILER\S*\s*$", line) is not None
            rules += in_rule
        elif in_rule and line.startswith(" command = "):
            in_rule = False
            if "-MD" not in line:
                if " $ARGS" in line:
                    line = line.replace(" $ARGS", " " + FLAGS + "$ARGS", 1)
                else:
                    missed += 1
        out.append(line)
    return "".join(out), rules, missed


def main() -> int:
    path = os.path.join(os.environ["MESON_BUILD_ROOT"], "build.ninja")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    fixed, rules, missed = add_flags(text)
    if rules == 0 or missed > 0:
        print("nvcc_depfile.py: %s in build.ninja: .cu objects will not be rebuilt when their headers change"
              % ("no cuda_COMPILER rule" if rules == 0 else "a cuda_COMPILER rule without $ARGS"), file=sys.stderr)
    if fixed == text:
        return 0
    tmp = path + ".nvcc-depfile"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(fixed)
    os.replace(tmp, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
