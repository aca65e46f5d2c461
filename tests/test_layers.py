"""The dependency rule of the package, checked on the source (every import, at any depth, counts).

``cli -> integrations (mcp, llm) -> app (AgentMessaging, AgentSession) -> actors (the domain) ->
{runtime (the kernel), persistence} -> leaves``:
a module may import only from its own layer or the layers below; the kernel and persistence never
import each other; the leaves (errors, models, config, _validation) import no other layer; nothing
imports the CLI, and only the CLI imports the optional integrations (not the package's ``__init__``:
they need their extras); and no two modules import each other, directly or through others.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import repo_root

PACKAGE = "agent_messaging"
SOURCE = repo_root() / "src" / PACKAGE

#: Layer of a module by its dotted name's first part below the package (longest prefix wins).
LAYERS: dict[str, str] = {
    "errors": "leaf",
    "models": "leaf",
    "config": "leaf",
    "_validation": "leaf",
    "_log": "leaf",
    "runtime": "kernel",
    "persistence": "persistence",
    "actors": "domain",
    "_app": "app",
    "": "api",  # the package itself: the public face
    "cli": "cli",
    "__main__": "cli",
    # AgentSession: the operations of one agent, on the app's facades; public (exported by the package) and
    # free of optional dependencies, so it sits with the app, below the API that exports it
    "_acting": "app",
    # the optional integrations (extras [mcp], [llm]) and what only they use: the public API and anything below
    "mcp": "integration",
    "llm": "integration",
    "_agent_tools": "integration",  # the messaging operations as model tools (one catalog for both)
    "_tool_views": "integration",  # the tools' JSON results
    "_on_asyncio": "integration",  # asyncio-only code (pydantic-ai) from trio
    "_tracing": "leaf",
    "schema": "leaf",  # package data: the migrations
}

#: What each layer may import (besides itself).
ALLOWED: dict[str, set[str]] = {
    "leaf": set(),
    "kernel": {"leaf"},
    "persistence": {"leaf"},
    "domain": {"kernel", "persistence", "leaf"},
    "app": {"domain", "kernel", "persistence", "leaf"},
    "api": {"app", "domain", "kernel", "persistence", "leaf"},
    "integration": {"api", "app", "domain", "kernel", "persistence", "leaf"},
    "cli": {"integration", "api", "app", "domain", "kernel", "persistence", "leaf"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SOURCE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(SOURCE.rglob("*.py"))}


def layer_of(module: str) -> str:
    rest = module[len(PACKAGE) + 1 :] if module != PACKAGE else ""
    first = rest.split(".", 1)[0]
    if first not in LAYERS:
        raise AssertionError(f"module {module} is in no layer: add it to LAYERS in {__file__}")
    return LAYERS[first]


def imports_of(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of this package that ``module`` imports, anywhere in its body."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_package else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                prefix = ".".join([*base, node.module] if node.module else base)
            else:
                prefix = node.module or ""
            targets = [prefix, *(f"{prefix}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                # the deepest known module this names (a name imported from a module is not a module)
                while target not in known and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in known and target != module:
                    found.add(target)
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def test_every_module_is_in_a_layer() -> None:
    for name in modules():
        layer_of(name)


def test_no_module_imports_upward_or_sideways() -> None:
    bad = []
    for module, targets in graph().items():
        mine = layer_of(module)
        for target in targets:
            theirs = layer_of(target)
            if theirs != mine and theirs not in ALLOWED[mine]:
                bad.append(f"{module} ({mine}) imports {target} ({theirs})")
    assert bad == [], "imports against the dependency rule:\n" + "\n".join(sorted(bad))


def test_no_import_cycles() -> None:
    edges = graph()
    # Tarjan's strongly connected components
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    cycles: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(edges.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    # a package's __init__ re-exporting its submodules is not a cycle with them when they import each other
    # directly; any other strongly connected group is
    assert cycles == [], f"import cycles: {cycles}"


@pytest.mark.parametrize("layer", ["leaf", "kernel", "persistence"])
def test_lower_layers_are_independent_of_the_domain(layer: str) -> None:
    edges = graph()
    for module, targets in edges.items():
        if layer_of(module) == layer:
            assert {layer_of(t) for t in targets} <= {layer} | ALLOWED[layer], module


def test_sql_lives_under_persistence() -> None:
    """Every SQL statement is in the persistence layer (the stores, the writer, presence, migrations)."""
    keywords = ("SELECT ", "INSERT INTO", "UPDATE ", "DELETE FROM", "pg_notify", "pg_advisory")
    offenders = []
    for name, path in modules().items():
        if layer_of(name) == "persistence":
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            text = node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else ""
            if any(k in text for k in keywords) and not _is_docstring_like(text):
                offenders.append(f"{name}: {text[:60]!r}")
    assert offenders == []


def _is_docstring_like(text: str) -> bool:
    # prose that mentions SQL (a docstring explaining a claim) is not a statement
    return "\n" in text and not text.lstrip().upper().startswith(("SELECT", "INSERT", "UPDATE", "DELETE", "WITH"))
