"""The package's imports go down the layers of docs/design.md, and no modules import in a circle.

Every module of ``fastopen`` is read with ``ast`` (module-level and function-level imports alike,
relative ones resolved). An import of a module in a higher layer fails, type-only ones (under
``if TYPE_CHECKING:``) included; a circle of imports that run fails (a type-only import runs
never, so it closes no circle: a socket's events may name the socket's type).
"""

from __future__ import annotations

import ast
from pathlib import Path

import fastopen

ROOT = Path(fastopen.__file__).parent

#: docs/design.md, top to bottom; modules of one layer may import each other (without circles).
LAYERS: tuple[tuple[str, ...], ...] = (
    ("",),  # the package itself: ``import fastopen`` gives the public API
    ("cli",),
    ("lab", "probe", "packetdrill"),
    ("http", "replay", "ops"),
    ("streams",),
    ("runtime", "kernel"),
    ("engine",),
    ("wire", "cookies", "report", "constants", "errors", "pcap"),
)
RANK = {name: rank for rank, names in enumerate(LAYERS) for name in names}

#: The streams <-> runtime circle is broken on the pyversions branch; removed at merge when
#: pyversions lands. No other import may be allowed here.
PENDING_PYVERSIONS_EDGE = ("fastopen.runtime.stack", "fastopen.streams")


def module_name(path: Path) -> str:
    parts = ["fastopen", *path.relative_to(ROOT).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(name: str) -> list[tuple[str, bool]]:
    """(module imported, type-only) for every import statement of module ``name``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text(), str(path))
    found: list[tuple[str, bool]] = []

    def target(base: str, names: list[str]) -> None:
        for alias in names:
            sub = f"{base}.{alias}"
            found.append((sub if sub in MODULES else base, type_only))

    def visit(node: ast.AST) -> None:
        nonlocal type_only
        if isinstance(node, ast.If) and _type_checking(node):
            before, type_only = type_only, True
            for child in node.body:
                visit(child)
            type_only = before
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((a.name, type_only) for a in node.names if a.name.startswith("fastopen"))
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{base}.{node.module}" if node.module else base
            else:
                base = node.module or ""
            if base == "fastopen" or base.startswith("fastopen."):
                target(base, [a.name for a in node.names])
        for child in ast.iter_child_nodes(node):
            visit(child)

    type_only = False
    visit(tree)
    return [(m, t) for m, t in found if m in MODULES and m != name]


GRAPH = {name: imports(name) for name in MODULES}


def layer(name: str) -> str:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_every_module_has_a_layer() -> None:
    assert MODULES, "no modules found"
    unplaced = sorted({layer(n) for n in MODULES} - set(RANK))
    assert not unplaced, f"modules outside the layers of docs/design.md: {unplaced}"


def test_no_import_goes_up() -> None:
    upward = [
        f"{name} imports {dep} ({layer(name) or 'fastopen'} is below {layer(dep) or 'fastopen'})"
        for name, deps in GRAPH.items()
        for dep, _ in deps
        if RANK[layer(dep)] < RANK[layer(name)] and (name, dep) != PENDING_PYVERSIONS_EDGE
    ]
    assert not upward, "\n".join(upward)


def circles(graph: dict[str, list[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), and self-loops."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = 0

    def connect(v: str) -> None:
        nonlocal counter
        index[v] = low[v] = counter
        counter += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
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
            if len(component) > 1 or v in graph[v]:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return found


def test_no_circles() -> None:
    runtime = {
        name: sorted(
            {
                dep
                for dep, type_only in deps
                if not type_only and (name, dep) != PENDING_PYVERSIONS_EDGE
            }
        )
        for name, deps in GRAPH.items()
    }
    found = circles(runtime)
    assert not found, "modules importing each other: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_checks_can_fail() -> None:
    """The circle finder finds one; the parser sees function-level and type-only imports."""
    assert circles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]
    assert ("fastopen.packetdrill.kernel", False) in GRAPH["fastopen.packetdrill.run"]  # in a def
    assert ("fastopen.engine.socket", True) in GRAPH["fastopen.engine.events"]
