#!/usr/bin/env python3
"""Checks check_code_blocks.py itself on selftest/blocks.md: it must report
exactly the blocks marked `expect-fail` (a word of the info string, or the line
`<!-- expect-fail -->` just before a fence without one) and accept all
others, so that the docs check (docs-code-blocks) is known to be able to fail.

Usage: selftest.py CHECKER FIXTURE.md [checker options: --cc, --cxx, -I ...]
"""
import re
import subprocess
import sys


def main():
    checker, fixture, options = sys.argv[1], sys.argv[2], sys.argv[3:]
    expected = set()
    fence_open = False
    previous = ""
    with open(fixture, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            m = re.match(r"^```(.*)$", line.rstrip("\n"))
            if m and not fence_open:
                fence_open = True
                # Marked in the info string, or (for a fence without one) by the line before.
                if "expect-fail" in m.group(1).split() or previous.strip() == "<!-- expect-fail -->":
                    expected.add(n)
            elif m and not m.group(1).strip():
                fence_open = False
            previous = line
    r = subprocess.run([sys.executable, checker, "--quiet"] + options + [fixture],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    reported = set()
    for line in r.stdout.splitlines():
        m = re.match(r"^" + re.escape(fixture) + r":(\d+): (```|fenced block)", line)
        if m:
            reported.add(int(m.group(1)))
    ok = True
    if r.returncode != 1:
        print(f"selftest: the checker exited {r.returncode}, expected 1")
        ok = False
    if reported != expected:
        print(f"selftest: blocks reported at lines {sorted(reported)}, expected {sorted(expected)}")
        ok = False
    if not ok:
        print(r.stdout)
        return 1
    print(f"selftest: the checker reported exactly the {len(expected)} failing blocks "
          f"(lines {sorted(expected)}) and passed the others")
    return 0


if __name__ == "__main__":
    sys.exit(main())
