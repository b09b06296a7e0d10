#!/usr/bin/env python3
"""Import circles between the files of each crate: prints every group of modules that
reach each other through `crate::...` paths (tests and a module's own children aside).
No output means no circle. Usage: scripts/import-cycles.py [crate dir ...]"""
import collections
import os
import re
import sys


def modules(src):
    out = {}
    for dp, _, fs in os.walk(src):
        for fn in fs:
            if fn.endswith(".rs"):
                path = os.path.join(dp, fn)
                parts = os.path.relpath(path, src)[:-3].split("/")
                if parts[-1] in ("mod", "lib", "main"):
                    parts = parts[:-1]
                out[tuple(parts)] = path
    return out


def edges(files):
    g = collections.defaultdict(set)
    for m, path in files.items():
        text = open(path).read()
        cut = text.find("#[cfg(test)]")
        if cut >= 0:
            text = text[:cut]
        for ref in set(re.findall(r"crate::([a-z_][a-z0-9_]*(?:::[a-z_][a-z0-9_]*)*)", text)):
            parts = tuple(ref.split("::"))
            for k in range(len(parts), 0, -1):
                t = parts[:k]
                if t in files:
                    if m[: len(t)] != t and t[: len(m)] != m:
                        g[m].add(t)
                    break
    return g


def circles(files, g):
    index, low, stack, on, found = {}, {}, [], set(), []
    counter = [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
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
                found.append(comp)

    sys.setrecursionlimit(10000)
    for v in files:
        if v not in index:
            visit(v)
    return found


root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
crates = sys.argv[1:] or sorted(
    d for d in os.listdir(root) if os.path.isfile(os.path.join(root, d, "Cargo.toml")) and d != "src"
)
bad = 0
for c in crates:
    files = modules(os.path.join(root, c, "src"))
    for comp in circles(files, edges(files)):
        bad += 1
        print(f"{c}: " + " <-> ".join("/".join(m) for m in comp))
sys.exit(1 if bad else 0)
