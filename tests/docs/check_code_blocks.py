#!/usr/bin/env python3
"""Compile every C and C++ code block of the documentation as what it is marked.

The convention (docs/cpp.md, "Code blocks in these docs"):

  * Every fenced block carries a language: the first word of its info string.
    A fence without one is an error (mark plain text, output and pseudo-code
    ```text), so no code can slip in unchecked.
  * ```c          is compiled as C11 AND as C++17: C++ users read the same docs.
  * ```c c-only   is compiled as C11 only (designated initialisers, compound
                  literals); put a ```cpp twin next to it.
  * ```cpp        is compiled as C++17 only.
  * Any other language (text, sh, json, python, ...) is not compiled.
  * By default a block is a fragment: it is compiled as the body of a
    function returning int, after <zero/zero.h> (and, as C++, <zero/zero.hpp>)
    and the usual C headers; an #include of these in a fragment is allowed
    (their include guards make it empty). The word `file` in
    the info string (```c file) makes it a whole translation unit instead.
  * The names a fragment uses without declaring them are declared in an HTML
    comment (invisible when rendered) just before the fence:
        <!-- compile-context: zero_engine_h eng; zero_param_h p; -->
    Its text goes at file scope, before the function holding the fragment.

Blocks are compiled with -fsyntax-only (they are checked, never run) and
-Wall -Wextra -pedantic-errors -Werror, minus the unused and uninitialised
warnings that fragments trip by nature. Compiler messages point at the
markdown file and line (#line).

Usage: check_code_blocks.py --cc CMD --cxx CMD -I DIR ... FILE.md|DIR ...
(a DIR stands for the *.md files in it)
Exits 0 when every block compiles as marked, 1 otherwise (each failure is
reported with its file and line), 2 on bad usage.
"""
import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile

FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
CONTEXT = re.compile(r"<!--\s*compile-context:(?P<text>.*?)-->", re.S)

PRELUDE = """#include <zero/zero.h>
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
"""

WARNINGS = ["-Wall", "-Wextra", "-pedantic-errors", "-Werror",
            "-Wno-unused-variable", "-Wno-unused-but-set-variable", "-Wno-unused-parameter",
            "-Wno-unused-value", "-Wno-uninitialized", "-Wno-maybe-uninitialized"]

COMPILED = {"c", "cpp"}


class Block:
    def __init__(self, path, line, info, body, context, context_line):
        self.path = path
        self.line = line                 # 1-based line of the opening fence
        words = info.split()
        self.lang = words[0].lower() if words else ""
        self.attrs = set(w.lower() for w in words[1:])
        self.body = body
        self.context = context
        self.context_line = context_line

    def where(self):
        return f"{self.path}:{self.line}"


def read_blocks(path, problems):
    """The fenced blocks of a markdown file (CommonMark fences; indented blocks are text)."""
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    blocks = []
    i = 0
    while i < len(lines):
        m = FENCE.match(lines[i])
        if not m:
            i += 1
            continue
        fence, info = m.group("fence"), m.group("info").strip()
        start = i
        i += 1
        body = []
        while i < len(lines):
            close = FENCE.match(lines[i])
            if close and close.group("fence")[0] == fence[0] and len(close.group("fence")) >= len(fence) \
                    and not close.group("info").strip():
                break
            body.append(lines[i])
            i += 1
        else:
            problems.append(f"{path}:{start + 1}: fenced block is never closed")
        i += 1
        # An HTML compile-context comment ending on the last non-blank line before the fence.
        context, context_line = None, 0
        j = start - 1
        while j >= 0 and not lines[j].strip():
            j -= 1
        if j >= 0 and lines[j].rstrip().endswith("-->"):
            k = j
            while k >= 0 and "<!--" not in lines[k]:
                k -= 1
            if k >= 0:
                cm = CONTEXT.search("\n".join(lines[k:j + 1]))
                if cm:
                    context, context_line = cm.group("text"), k + 1
        blocks.append(Block(path, start + 1, info, body, context, context_line))
    return blocks


def source_for(block, as_cxx):
    """The translation unit that holds a block, with #line pointing into the markdown."""
    path = block.path.replace("\\", "\\\\").replace('"', '\\"')
    body = f'#line {block.line + 1} "{path}"\n' + "\n".join(block.body) + "\n"
    if "file" in block.attrs:
        return body
    src = PRELUDE
    if as_cxx:
        src += "#include <zero/zero.hpp>\n"   # the C++ wrapper, for ```cpp fragments
    if block.context is not None:
        src += f'#line {block.context_line} "{path}"\n{block.context}\n'
    # int, so that a fragment may end its function early with `return status;`.
    src += "int doc_block(void);\nint doc_block(void)\n{\n" + body + "    return 0;\n}\n"
    return src


def compile_block(block, as_cxx, args, tmpdir):
    suffix = ".cpp" if as_cxx else ".c"
    src = os.path.join(tmpdir, "block" + suffix)
    with open(src, "w", encoding="utf-8") as f:
        f.write(source_for(block, as_cxx))
    compiler = args.cxx if as_cxx else args.cc
    std = ["-x", "c++", "-std=c++17"] if as_cxx else ["-x", "c", "-std=c11"]
    cmd = shlex.split(compiler) + std + ["-fsyntax-only"] + WARNINGS + [f"-I{d}" for d in args.include] + [src]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return r.returncode == 0, r.stdout


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cc", required=True, help="C compiler command")
    ap.add_argument("--cxx", required=True, help="C++ compiler command")
    ap.add_argument("-I", dest="include", action="append", default=[], help="include directory")
    ap.add_argument("--quiet", action="store_true", help="print failures only")
    ap.add_argument("files", nargs="+")
    args = ap.parse_args()
    files = []
    for path in args.files:
        if os.path.isdir(path):
            files += sorted(os.path.join(path, n) for n in os.listdir(path) if n.endswith(".md"))
        else:
            files.append(path)

    problems = []
    counts = {"c": 0, "c-only": 0, "cpp": 0, "other": 0}
    # Scratch sources in the working directory (the build directory under meson
    # test), so that the check reads nothing outside the tree but headers.
    with tempfile.TemporaryDirectory(prefix="zero-doc-blocks-", dir=os.getcwd()) as tmpdir:
        for path in files:
            for block in read_blocks(path, problems):
                if not block.lang:
                    problems.append(f"{block.where()}: fenced block without a language: mark code ```c, "
                                    "```c c-only or ```cpp, and anything else ```text (or sh, json, ...)")
                    continue
                if block.lang not in COMPILED:
                    counts["other"] += 1
                    continue
                if block.lang == "cpp" and "c-only" in block.attrs:
                    problems.append(f"{block.where()}: c-only on a ```cpp block")
                    continue
                if block.lang == "cpp":
                    modes, key = [True], "cpp"
                elif "c-only" in block.attrs:
                    modes, key = [False], "c-only"
                else:
                    modes, key = [False, True], "c"
                counts[key] += 1
                for as_cxx in modes:
                    ok, out = compile_block(block, as_cxx, args, tmpdir)
                    what = "C++17" if as_cxx else "C11"
                    if not ok:
                        hint = ""
                        if as_cxx and block.lang == "c":
                            hint = " (valid C only? mark it ```c c-only and add a ```cpp twin)"
                        problems.append(f"{block.where()}: ```{block.lang} block does not compile as {what}{hint}:\n"
                                        + out.rstrip())
                    elif not args.quiet:
                        print(f"{block.where()}: ok as {what}")
    print(f"code blocks: {counts['c']} C and C++, {counts['c-only']} C only, {counts['cpp']} C++ only compiled; "
          f"{counts['other']} in other languages not compiled")
    for p in problems:
        print(p, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in the documentation's code blocks", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
