"""Drive real ``agent-messaging mcp`` server processes with the SDK's own client.

``connect(*agents)`` starts the server over stdio (on the test's backend) and
yields an initialized ``ClientSession``; leaving it closes the client, which
ends the server. ``spawn`` starts other processes (``agent-messaging run``, an
HTTP server) that are killed at the end of the test whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from tests._processes import ROOT, STEP, Child, child_env

__all__ = ["ROOT", "STEP", "Child", "call", "refused", "server_env", "text_of"]


server_env = child_env


@pytest.fixture
def connect(dsn: str, tmp_path: Path, anyio_backend: str) -> Callable[..., Any]:
    """``async with connect("alice", "bob") as client:``: a stdio server acting as those agents, initialized."""

    @contextlib.asynccontextmanager
    async def open_client(*agents: str, extra: tuple[str, ...] = ()) -> AsyncIterator[ClientSession]:
        args = ["-m", "agent_messaging", "mcp", "--backend", anyio_backend, "--max-wait", "10", *extra]
        for agent in agents:
            args += ["--agent", agent]
        params = StdioServerParameters(command=sys.executable, args=args, env=server_env(dsn), cwd=str(ROOT))
        errors = tmp_path / f"mcp-{'-'.join(agents)}.err"
        with errors.open("w") as errlog:
            try:
                async with stdio_client(params, errlog=errlog) as (read, write), ClientSession(read, write) as client:
                    with anyio.fail_after(STEP):
                        await client.initialize()
                    yield client
            except BaseException as exc:
                errlog.flush()
                sys.stderr.write(f"--- server stderr ---\n{errors.read_text()[-5000:]}\n")
                leaf = _only_leaf(exc)
                if leaf is not exc:  # the test's own failure, not wrapped in the SDK's task groups
                    raise leaf from None
                raise

    return open_client


def _only_leaf(exc: BaseException) -> BaseException:
    """The one exception inside nested exception groups, if there is exactly one (else ``exc``)."""
    leaf = exc
    while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
        leaf = leaf.exceptions[0]
    return leaf if isinstance(leaf, Exception) and not isinstance(leaf, BaseExceptionGroup) else exc


async def call(client: ClientSession, tool: str, **arguments: Any) -> Any:
    """Call a tool that must succeed; its JSON result (or text)."""
    with anyio.fail_after(STEP):
        result = await client.call_tool(tool, arguments)
    assert not result.is_error, f"{tool} failed: {text_of(result)}"
    text = text_of(result)
    try:
        return json.loads(text)
    except ValueError:
        return text


async def refused(client: ClientSession, tool: str, **arguments: Any) -> str:
    """Call a tool that must fail; the error text (never a traceback)."""
    with anyio.fail_after(STEP):
        result = await client.call_tool(tool, arguments)
    text = text_of(result)
    assert result.is_error, f"{tool} should have failed, returned {text}"
    assert "Traceback" not in text
    return text


def text_of(result: CallToolResult) -> str:
    return "".join(part.text for part in result.content if isinstance(part, TextContent))
