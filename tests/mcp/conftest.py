"""Drive real ``agent-messaging mcp`` server processes with the SDK's own client.

``connect(*agents)`` starts the server over stdio (on the test's backend) and
yields an initialized ``ClientSession``; leaving it closes the client, which
ends the server. ``spawn`` starts other processes (``agent-messaging run``, an
HTTP server) that are killed at the end of the test whatever happened.
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.types import CallToolResult, TextContent

from tests.conftest import repo_root

ROOT = repo_root()
#: Bound on anything one step of a test waits for.
STEP = 60


def server_env(dsn: str) -> dict[str, str]:
    """The environment of a child process: the test's database, the source tree first on the path."""
    env = {**os.environ, "AGENT_MESSAGING_DSN": dsn, "PYTHONPATH": str(ROOT / "src")}
    env.pop("AGENT_MESSAGING_LOG_LEVEL", None)
    return env


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


class Child:
    """A child process whose output lines are collected by threads (so reads can time out)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self.threads = [threading.Thread(target=self._pump, args=(s,), daemon=True) for s in self._streams()]
        for thread in self.threads:
            thread.start()

    def _streams(self) -> list[Any]:
        return [self.proc.stdout, self.proc.stderr]

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.output.append(line)
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, prefix: str, timeout: float = STEP) -> str:
        """The first output line (stdout or stderr) starting with ``prefix`` (blocking: run it in a thread)."""
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                output = "".join(self.output)[-4000:]
                raise AssertionError(f"no line {prefix!r} within {timeout}s; output:\n{output}") from None
            if line.startswith(prefix):
                return line

    async def line(self, prefix: str, timeout: float = STEP) -> str:  # noqa: ASYNC109 - a thread waits
        """:meth:`wait_for_line` without blocking the event loop."""
        return await anyio.to_thread.run_sync(self.wait_for_line, prefix, timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for thread in self.threads:
            thread.join(timeout=10)
        for stream in self._streams():
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn(dsn: str, tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """``spawn(*args, **env)``: ``python *args`` on the test's database; killed at the end of the test."""
    started: list[Child] = []
    env = {**server_env(dsn), "AM_HANDLED_FILE": str(tmp_path / "handled")}

    def start(*args: str, **extra: str) -> Child:
        child = Child(list(args), {**env, **extra})
        started.append(child)
        return child

    yield start
    for child in started:
        child.stop()
