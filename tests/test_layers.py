"""The import graph keeps the architecture's layers: every module's imports (at the top or
inside functions) point from the stage that uses to the stage that is used, and no two
modules or components import each other, directly or through others."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "masksearch"

FOUNDATION = {"errors", "ranges", "parallel", "kernels"}
ENGINE = FOUNDATION | {"index", "store", "lang", "plan", "exec"}
# Component -> the components it may import. A component is a subpackage or a top-level
# module of masksearch; "masksearch" is the package's __init__ (the public names).
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "ranges": set(),
    "parallel": set(),
    "kernels": set(),
    "synth": set(),
    "format": set(),
    "index": {"kernels", "parallel", "ranges", "errors"},
    "store": {"index", "kernels", "parallel", "ranges", "errors"},
    "lang": {"ranges", "errors"},
    "plan": {"lang", "ranges", "errors"},
    "exec": ENGINE - {"exec"},
    "result": {"exec", "format", "errors", "render"},
    "ingest": {"store", "errors"},
    "render": ENGINE | {"format"},
    "mutate": ENGINE | {"ingest"},
    "api": ENGINE | {"result", "format", "ingest", "render", "mutate"},
    "masksearch": {"api", "result", "errors", "duckdb_ext", "ingest"},
    "duckdb_ext": ENGINE | {"api", "result"},
    "repl": ENGINE | {"api", "result", "format"},
    "cli": ENGINE | {"api", "result", "format", "repl", "demo", "masksearch", "web", "warmup"},
    "demo": {"api", "format", "synth", "masksearch", "warmup"},
    "warmup": {"api", "exec"},
    "__main__": {"cli"},
    "web": ENGINE | {"api", "result", "format", "render"},
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """masksearch modules imported anywhere in ``path`` (relative imports resolved)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[:len(package.split(".")) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.add(module)
            # `from . import ast` imports a module, not a name.
            found.update(f"{module}.{a.name}" for a in node.names)
    modules = _all_modules()
    return {m for m in found if m in modules and m != name}


def _all_modules() -> dict[str, Path]:
    return {_module_name(p): p for p in ROOT.rglob("*.py")}


def _component(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "masksearch"


def _graph() -> dict[str, set[str]]:
    return {m: _imports(p) for m, p in _all_modules().items()}


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph``, or None (depth-first search)."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt):], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_every_component_has_a_place_in_the_layers():
    components = {_component(m) for m in _all_modules()}
    assert components <= set(ALLOWED), f"not in ALLOWED: {components - set(ALLOWED)}"


def test_imports_point_down_the_layers():
    wrong = []
    for module, imported in sorted(_graph().items()):
        mine = _component(module)
        for other in sorted(imported):
            theirs = _component(other)
            if theirs != mine and theirs not in ALLOWED[mine]:
                wrong.append(f"{module} imports {other}")
    assert not wrong, "\n".join(wrong)


def test_no_module_imports_itself_through_others():
    cycle = _cycle(_graph())
    assert cycle is None, " -> ".join(cycle)


def test_no_component_imports_itself_through_others():
    graph: dict[str, set[str]] = {}
    for module, imported in _graph().items():
        graph.setdefault(_component(module), set()).update(
            c for c in map(_component, imported) if c != _component(module))
    cycle = _cycle(graph)
    assert cycle is None, " -> ".join(cycle)


def test_the_checker_sees_cycles_and_relative_imports():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
    assert "masksearch.lang.ast" in _imports(ROOT / "lang" / "binder.py")
    assert "masksearch.errors" in _imports(ROOT / "lang" / "binder.py")
