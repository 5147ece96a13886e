#!/usr/bin/env python3
"""The shape of agent/: no file over MAX_LINES lines, and no include cycle between its files.

A file here is a module: name.c, name.h and name-private.h count as one, so
"a.c includes b.h and b.c includes a.h" is a cycle of a and b.  Only quoted includes of
files under agent/ count.  Prints each cycle found and each file over the limit, then one
summary line; exits non-zero when there is either.

    tests/layout/check_rooms.py [ROOT]     (default: the repository this file is in)
"""
import os
import re
import sys

MAX_LINES = 620
INCLUDE = re.compile(r'^\s*#\s*include\s+"(agent/[^"]+)"', re.M)


def module(path):
    """name.c, name.h and name-private.h are one module."""
    base = os.path.splitext(path)[0]
    return base[: -len("-private")] if base.endswith("-private") else base


def graph(root):
    edges = {}
    sizes = {}
    for dirpath, _, files in os.walk(os.path.join(root, "agent")):
        for f in files:
            if not f.endswith((".c", ".h")):
                continue
            full = os.path.join(dirpath, f)
            rel = os.path.relpath(full, root)
            text = open(full, encoding="utf-8").read()
            sizes[rel] = text.count("\n")
            m = module(rel)
            edges.setdefault(m, set())
            for inc in INCLUDE.findall(text):
                target = module(inc)
                if target != m:
                    edges[m].add(target)
    return edges, sizes


def cycles(edges):
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, on, stack, out = {}, {}, set(), [], []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in sorted(edges):
        if v not in index:
            visit(v)
    return out


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    edges, sizes = graph(root)
    found = cycles(edges)
    for comp in found:
        print("include cycle: " + " <-> ".join(comp))
    big = sorted((n, p) for p, n in sizes.items() if n > MAX_LINES)
    for n, p in big:
        print(f"too long: {p} has {n} lines (at most {MAX_LINES})")
    print(f"rooms: {len(sizes)} files in agent/, {len(found)} include cycles, "
          f"{len(big)} files over {MAX_LINES} lines")
    return 1 if found or big else 0


if __name__ == "__main__":
    sys.exit(main())
