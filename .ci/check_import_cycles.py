"""Fail on any import cycle between the package's modules, listing every one.

import-linter's acyclic_siblings contract (pyproject.toml) forbids cycles between the children of
each package, but not a cycle that goes through a package's own __init__ (pkg/__init__.py imports
pkg.a, which imports pkg back). This script checks the whole module graph: every strongly connected
component of more than one module is a cycle, printed with one shortest chain around it and every
import inside it (file and line).

The graph is grimp's (import-linter's), built with the options of pyproject.toml's
[tool.importlinter] section: the same root package(s), and TYPE_CHECKING imports excluded or not as
exclude_type_checking_imports says. Function-level imports count, like every import that can run.

    python .ci/check_import_cycles.py   # exit status 1 if there is a cycle
"""

from __future__ import annotations

import sys
import tomllib
from collections import deque
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def settings(pyproject: Path = ROOT / "pyproject.toml") -> tuple[list[str], bool]:
    """(root packages, whether TYPE_CHECKING imports are excluded), from [tool.importlinter]."""
    section = tomllib.loads(pyproject.read_text())["tool"]["importlinter"]
    roots = section.get("root_packages") or [section["root_package"]]
    return list(roots), str(section.get("exclude_type_checking_imports", False)).lower() == "true"


def build_graph() -> grimp.ImportGraph:
    roots, exclude_type_checking = settings()
    return grimp.build_graph(
        *roots, exclude_type_checking_imports=exclude_type_checking, cache_dir=None
    )


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """Every strongly connected component of more than one module, each sorted, in name order
    (Tarjan's algorithm, iterative). External packages are leaves here: they import nothing."""
    modules = sorted(graph.modules)
    edges = {m: sorted(graph.find_modules_directly_imported_by(m)) for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for start in modules:
        if start in index:
            continue
        work = [(start, iter(edges[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = len(index)
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(edges[succ])))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return sorted(found)


def shortest_loop(graph: grimp.ImportGraph, component: list[str]) -> list[str]:
    """The shortest chain from the component's first module back to itself, inside the component."""
    start, members = component[0], set(component)
    previous: dict[str, str] = {}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        for succ in sorted(graph.find_modules_directly_imported_by(node) & members):
            if succ == start:
                chain = [node]
                while chain[-1] != start:
                    chain.append(previous[chain[-1]])
                return [start, *reversed(chain[:-1]), start] if node != start else [start, start]
            if succ not in previous:
                previous[succ] = node
                queue.append(succ)
    raise AssertionError(f"{component} is not a cycle")


def describe(graph: grimp.ImportGraph, component: list[str]) -> list[str]:
    lines = [f"cycle of {len(component)} modules: " + " -> ".join(shortest_loop(graph, component))]
    members = set(component)
    for importer in component:
        for imported in sorted(graph.find_modules_directly_imported_by(importer) & members):
            for detail in graph.get_import_details(importer=importer, imported=imported):
                lines.append(
                    f"    {importer} -> {imported} "
                    f"(l.{detail['line_number']}: {detail['line_contents'].strip()})"
                )
    return lines


def main() -> int:
    graph = build_graph()
    found = cycles(graph)
    roots, exclude_type_checking = settings()
    scope = f"{', '.join(roots)} ({len(graph.modules)} modules, " + (
        "TYPE_CHECKING imports excluded)" if exclude_type_checking else "TYPE_CHECKING imports included)"
    )
    if not found:
        print(f"no import cycles in {scope}")
        return 0
    print(f"{len(found)} import cycle(s) in {scope}:")
    for component in found:
        print("\n".join(describe(graph, component)))
    return 1


if __name__ == "__main__":
    sys.exit(main())
