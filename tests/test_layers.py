"""The import graph of src/ipbx keeps the shape docs/architecture.md draws: imports point
down the layers (the contracts in pyproject.toml, checked by import-linter), and no
module imports itself through others. Imports under `if TYPE_CHECKING:` count: a module
that names another's types cannot be read or changed apart from it either."""

from __future__ import annotations

import subprocess
import sys
from collections import deque
from itertools import pairwise
from pathlib import Path

import grimp

ROOT = Path(__file__).resolve().parents[1]


def test_imports_point_down_the_layers() -> None:
    # In a process of its own: import-linter configures logging, which would disable the
    # loggers of modules imported before it in this one (and tests read those logs).
    lint_imports = Path(sys.executable).parent / "lint-imports"
    command = [str(lint_imports), "--no-cache", "--no-logo", str(ROOT / "pyproject.toml")]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


def test_no_import_circles() -> None:
    graph = grimp.build_graph("ipbx", cache_dir=None)
    circles = [_describe(graph, group) for group in _circles(graph)]
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_a_circle_is_reported_by_its_shortest_way_round() -> None:
    graph = grimp.ImportGraph()
    for importer, imported in [("a", "b"), ("b", "c"), ("c", "a"), ("c", "b"), ("d", "a")]:
        graph.add_import(importer=importer, imported=imported, line_number=1, line_contents="")
    assert _circles(graph) == [["a", "b", "c"]]
    assert _shortest_circle(graph, ["a", "b", "c"]) == ["a", "b", "c", "a"]
    assert _describe(graph, ["a", "b", "c"]) == "  a (l.1) -> b (l.1) -> c (l.1) -> a"


def _circles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected groups of two or more modules (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported not in index:
                visit(imported)
                low[module] = min(low[module], low[imported])
            elif imported in stack:
                low[module] = min(low[module], index[imported])
        if low[module] == index[module]:
            group = stack[stack.index(module) :]
            del stack[stack.index(module) :]
            if len(group) > 1:
                groups.append(sorted(group))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return sorted(groups)


def _shortest_circle(graph: grimp.ImportGraph, group: list[str]) -> list[str]:
    """The shortest way from the group's first module back to itself, inside the group."""
    start = group[0]
    came_from: dict[str, str] = {}
    queue = deque([start])
    while queue:
        module = queue.popleft()
        for imported in sorted(graph.find_modules_directly_imported_by(module)):
            if imported == start:
                path = [module]
                while path[-1] != start:
                    path.append(came_from[path[-1]])
                return [*reversed(path), start]
            if imported in group and imported not in came_from:
                came_from[imported] = module
                queue.append(imported)
    raise AssertionError(f"{start} is in a circle but no way back to it was found")


def _describe(graph: grimp.ImportGraph, group: list[str]) -> str:
    circle = _shortest_circle(graph, group)
    steps = []
    for importer, imported in pairwise(circle):
        lines = sorted(d["line_number"] for d in graph.get_import_details(
            importer=importer, imported=imported))  # fmt: skip
        steps.append(f"{importer} (l.{lines[0] if lines else '?'})")
    others = sorted(set(group) - set(circle))
    also = f"\n    (in the same tangle: {', '.join(others)})" if others else ""
    return "  " + " -> ".join([*steps, circle[-1]]) + also
