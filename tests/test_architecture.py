"""The layout's rules, from the source: no import cycle, imports point down the rooms, every
import at the top of its module, no module outside a room, no two modules of one name.

The rules are written down in docs/architecture.md; this test is what keeps them true.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("hub", "handlers", "db", "generated")

# The rooms, top to bottom: a module may import its own room and the rooms below it, never
# one above. (``hub.app`` and ``hub.cli`` compose everything; ``hub.settings`` is below all.)
LAYERS = (
    ("hub.app", "hub.cli"),
    ("handlers", "hub.http"),
    ("hub.runtime",),
    ("hub.engine",),
    ("hub.services",),
    ("hub.events",),
    ("hub.llm",),
    ("db", "generated"),
    ("hub.core",),
    ("hub", "hub.settings"),
)
HUB_TOP_LEVEL = {"__init__.py", "app.py", "cli.py", "settings.py"}


def module_files() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            parts = path.relative_to(ROOT).with_suffix("").parts
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = module_files()


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _parse(path: Path) -> ast.Module:
    """``ast.parse``, once more after CPython 3.11.7's ``SystemError: AST constructor recursion
    depth mismatch`` (a bug of the interpreter, reported as gh-106905): it struck this test
    twice on 2026-12-04 under pytest-xdist, never twice in a row."""
    try:
        return ast.parse(path.read_text(), str(path))
    except SystemError:
        return ast.parse(path.read_text(), str(path))


def imports_of(name: str) -> list[tuple[str, int, bool]]:
    """``(imported module, line, at module level)`` for each project import of ``name``,
    wherever it is (a function, a class, a try); ``if TYPE_CHECKING:`` blocks are skipped."""
    path = MODULES[name]
    tree = _parse(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno, top) for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:
                    anchor = package.split(".")[: len(package.split(".")) - child.level + 1]
                    base = ".".join([*anchor, base] if base else anchor)
                for alias in child.names:
                    candidate = f"{base}.{alias.name}"
                    found.append((candidate if candidate in MODULES else base, child.lineno, top))
            nested = isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            visit(child, top and not nested)

    visit(tree, True)
    return [(module, line, top) for module, line, top in found if _ours(module)]


def _ours(module: str) -> bool:
    return module.split(".")[0] in PACKAGES


def _known(module: str) -> str:
    while module not in MODULES:
        module = module.rpartition(".")[0]
    return module


GRAPH = {name: {_known(m) for m, _, _ in imports_of(name)} - {name} for name in MODULES}


def layer_of(name: str) -> int:
    best, depth = None, -1
    for index, members in enumerate(LAYERS):
        for member in members:
            matches = name == member or name.startswith(member + ".")
            if matches and len(member) > depth and not (member == "hub" and name != "hub"):
                best, depth = index, len(member)
    assert best is not None, f"{name} is in no room of LAYERS"
    return best


def cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(GRAPH[v]):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(GRAPH):
        if v not in index:
            connect(v)
    return found


def test_the_walker_sees_the_imports_it_must():
    """The checks below are only as good as this walk: it finds known imports of every kind."""
    assert "hub.core.problems" in GRAPH["hub.services.agents"]
    assert "hub.engine.loop" in GRAPH["hub.runtime.worker"]  # ``from hub.engine.loop import``
    assert "hub.core.aio" in GRAPH["hub.events.bus"]
    assert layer_of("hub.http.sse") < layer_of("hub.services.tasks") < layer_of("db.tasks")


def test_there_is_no_import_cycle():
    assert cycles() == []


def test_imports_are_made_at_the_top_of_a_module():
    """No project import inside a function or class: a deferred import hides a cycle (an
    optional third-party dependency may still load lazily; this checks our modules only)."""
    deferred = [
        f"{MODULES[name].relative_to(ROOT)}:{line} imports {module}"
        for name in MODULES
        for module, line, top in imports_of(name)
        if not top
    ]
    assert deferred == []


def test_imports_point_down_the_rooms():
    upward = [
        f"{name} imports {target}"
        for name, targets in GRAPH.items()
        for target in targets
        if layer_of(target) < layer_of(name)
    ]
    assert upward == []


def test_hub_has_no_module_outside_a_room():
    top = {path.name for path in (ROOT / "hub").glob("*.py")}
    assert top <= HUB_TOP_LEVEL, f"modules outside a room: {sorted(top - HUB_TOP_LEVEL)}"


def test_no_two_modules_of_the_hub_share_a_name():
    """Within ``hub/`` a module's name says which one it is: ``tools`` is in one room only."""
    by_name = defaultdict(list)
    for name in MODULES:
        if name.startswith("hub.") and name.count(".") >= 1:
            by_name[name.rpartition(".")[2]].append(name)
    shared = {leaf: names for leaf, names in by_name.items() if len(names) > 1}
    assert shared == {}


@pytest.mark.parametrize("room", ["http", "services", "engine", "events", "llm", "runtime", "core"])
def test_every_room_says_what_it_is_for(room):
    init = ROOT / "hub" / room / "__init__.py"
    assert ast.get_docstring(ast.parse(init.read_text())), f"hub/{room}/__init__.py"
