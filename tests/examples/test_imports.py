"""Examples are written against the public API: they import only from ``agent_messaging`` itself.

(And from the public modules of the optional extras: ``agent_messaging.llm``, ``agent_messaging.mcp``.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import repo_root

EXAMPLES = sorted((repo_root() / "examples").glob("*.py"))
#: The public modules of the optional extras ([llm], [mcp]): not re-exported by the package (they need the extras).
EXTRAS = {"agent_messaging.llm", "agent_messaging.mcp"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_imports_only_the_public_api(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    private = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("agent_messaging."):
            private.append(node.module)
        elif isinstance(node, ast.Import):
            private += [a.name for a in node.names if a.name.startswith("agent_messaging.")]
    private = [name for name in private if name not in EXTRAS]
    assert private == [], f"{path} imports internals: {private}"
