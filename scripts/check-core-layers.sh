#!/usr/bin/env bash
# Prints the dependency graph between the top-level modules of owamp-core (owamp-core/src/X.rs
# or owamp-core/src/X/) and exits non-zero if it has a cycle.
#
# An edge M -> N is a path into N used in code inside M: `crate::N::...`, `$crate::N`, a
# member of a grouped import (`use crate::{N::A, O::{B, C}}`), or a `super::` path that climbs
# out of M to the crate root. Comments (`//`, `///`, `//!`, `/* */`), so doc links too, and
# string literals are not code and are skipped.
#
# Each module is printed with its layer: 0 for a module that uses no other, else one more than
# the highest layer it uses. Only the import graph counts, not what is `pub`.
#
# Usage: scripts/check-core-layers.sh [-v] [SRC_DIR]
#   -v       also print the file and line of every use behind each edge
#   SRC_DIR  the crate's src directory (default: owamp-core/src)
set -euo pipefail
cd "$(dirname "$0")/.."

exec python3 - "$@" <<'PY'
import os
import re
import sys

args = sys.argv[1:]
verbose = "-v" in args
rest = [a for a in args if a != "-v"]
src = rest[0] if rest else "owamp-core/src"

RAW_STRING = re.compile(r'b?r(#*)"')
CHAR = re.compile(r"'(\\(u\{[0-9a-fA-F]*\}|x..|.)|[^\\'])'")


def strip(text):
    """The text with comments and string/char literals blanked (newlines kept)."""
    out = []
    i, n = 0, len(text)

    def blank(s):
        return re.sub(r"[^\n]", " ", s)

    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(text[i:j]))
            i = j
        elif text.startswith("/*", i):
            depth, j = 1, i + 2
            while j < n and depth:
                if text.startswith("/*", j):
                    depth, j = depth + 1, j + 2
                elif text.startswith("*/", j):
                    depth, j = depth - 1, j + 2
                else:
                    j += 1
            out.append(blank(text[i:j]))
            i = j
        elif (m := RAW_STRING.match(text, i)) and (
            i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")
        ):
            end = text.find('"' + m.group(1), m.end())
            j = n if end < 0 else end + 1 + len(m.group(1))
            out.append(blank(text[i:j]))
            i = j
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(blank(text[i : j + 1]))
            i = j + 1
        elif c == "'":
            # A char literal ('a', '\n', '\u{..}'), or else a lifetime / label.
            m = CHAR.match(text, i)
            j = m.end() if m else i + 1
            out.append(blank(text[i:j]) if m else c)
            i = j
        else:
            out.append(c)
            i += 1
    return "".join(out)


def group_heads(code, start):
    """(first path segment, offset) of each member of the `{...}` group opening at `start`."""
    heads, depth, member, at, i = [], 0, "", start + 1, start
    while i < len(code):
        c = code[i]
        if c == "{":
            depth += 1
            if depth == 1:
                i += 1
                continue
        elif c == "}":
            depth -= 1
            if depth == 0:
                heads.append((member, at))
                break
        if depth == 1 and c == ",":
            heads.append((member, at))
            member, at = "", i + 1
        elif depth >= 1:
            member += c
        i += 1
    out = []
    for h, at in heads:
        m = re.match(r"\s*([A-Za-z_][A-Za-z0-9_]*|\*)", h)
        if m and m.group(1) != "self":
            out.append((m.group(1), at + m.start(1)))
    return out


PATH = re.compile(
    r"(?<![A-Za-z0-9_])(\$crate|crate|super)((?:\s*::\s*super)*)\s*::\s*(\{|\*|[A-Za-z_][A-Za-z0-9_]*)"
)
INLINE_MOD = re.compile(r"(?<![A-Za-z0-9_])mod\s+[A-Za-z_][A-Za-z0-9_]*\s*\{")


def deps_of_file(path, file_depth):
    """(target, line) for every top-level module a file's code names."""
    code = strip(open(path, encoding="utf-8").read())
    # Depth of the module at each offset: the file's own, plus inline `mod x { ... }` blocks.
    depth_at = [file_depth] * (len(code) + 1)
    stack, brace, opens = [], 0, {m.end() - 1 for m in INLINE_MOD.finditer(code)}
    for i, c in enumerate(code):
        if c == "{":
            brace += 1
            if i in opens:
                stack.append(brace)
        elif c == "}":
            if stack and stack[-1] == brace:
                stack.pop()
            brace -= 1
        depth_at[i] = file_depth + len(stack)
    found = []
    for m in PATH.finditer(code):
        root, head = m.group(1), m.group(3)
        if root == "super":
            ups = 1 + m.group(2).count("super")
            if depth_at[m.start()] - ups > 0:
                continue  # stays inside the top-level module
        elif m.group(2):
            continue  # crate::super is not a path
        if head == "{":
            names = group_heads(code, m.end() - 1)
        else:
            names = [(head, m.start())]
        found += [(name, code.count("\n", 0, at) + 1) for name, at in names]
    return found


modules = sorted(
    {
        e[:-3] if e.endswith(".rs") else e
        for e in os.listdir(src)
        if (e.endswith(".rs") and e not in ("lib.rs", "main.rs"))
        or os.path.isdir(os.path.join(src, e))
    }
)
graph, where = {m: set() for m in modules}, {}
for m in modules:
    files = []
    if os.path.isfile(os.path.join(src, m + ".rs")):
        files.append((os.path.join(src, m + ".rs"), 1))
    if os.path.isdir(os.path.join(src, m)):
        for root, _, names in os.walk(os.path.join(src, m)):
            for f in names:
                if f.endswith(".rs"):
                    p = os.path.join(root, f)
                    rel = os.path.relpath(p, src).split(os.sep)
                    depth = len(rel) - (1 if f == "mod.rs" else 0)
                    files.append((p, depth))
    for path, depth in sorted(files):
        for target, line in deps_of_file(path, depth):
            for t in modules if target == "*" else [target]:
                if t in graph and t != m:
                    graph[m].add(t)
                    where.setdefault((m, t), []).append(f"{os.path.relpath(path, src)}:{line}")

# Strongly connected components (Tarjan); any with more than one module is a cycle.
index, low, on_stack, stack, sccs = {}, {}, set(), [], []


def visit(v):
    index[v] = low[v] = len(index)
    stack.append(v)
    on_stack.add(v)
    for w in sorted(graph[v]):
        if w not in index:
            visit(w)
            low[v] = min(low[v], low[w])
        elif w in on_stack:
            low[v] = min(low[v], index[w])
    if low[v] == index[v]:
        comp = []
        while True:
            w = stack.pop()
            on_stack.discard(w)
            comp.append(w)
            if w == v:
                break
        sccs.append(sorted(comp))


for v in modules:
    if v not in index:
        visit(v)

# Tarjan emits a component after every component it uses, so one pass gives the layers
# (a cycle's modules share one layer).
comp_of = {m: i for i, c in enumerate(sccs) for m in c}
layer = {}
for i, comp in enumerate(sccs):
    below = [layer[comp_of[t]] for m in comp for t in graph[m] if comp_of[t] != i]
    layer[i] = 1 + max(below) if below else 0

print(f"top-level modules of {src}, bottom to top (layer  module -> modules it uses):")
for m in sorted(modules, key=lambda m: (layer[comp_of[m]], m)):
    print(f"  {layer[comp_of[m]]:>2}  {m:<11} -> {', '.join(sorted(graph[m])) or '(nothing)'}")
    if verbose:
        for t in sorted(graph[m]):
            print(f"            {t}: {' '.join(where[(m, t)])}")
cycles = [c for c in sccs if len(c) > 1]
sys.stdout.flush()
if cycles:
    for c in cycles:
        print(f"cycle among: {', '.join(c)}", file=sys.stderr)
        for a in c:
            for b in sorted(graph[a] & set(c)):
                print(f"  {a} -> {b}: {' '.join(where[(a, b)])}", file=sys.stderr)
    sys.exit(1)
print("no cycle")
PY
