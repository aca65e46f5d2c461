"""examples/app.py served by ``agent-messaging run examples.app:am``: a client calls and notifies its agents."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import anyio

from agent_messaging import AgentMessaging, Config
from tests.conftest import repo_root


async def test_app_served_by_run(dsn: str, config: Config, anyio_backend: str) -> None:
    root = repo_root()
    env = {**os.environ, "AGENT_MESSAGING_DSN": dsn, "PYTHONPATH": str(root / "src")}
    args = [sys.executable, "-m", "agent_messaging", "run", "examples.app:am", "--log-level", "warning"]
    proc = subprocess.Popen(  # noqa: ASYNC220 - started once; its output is read in a worker thread
        [*args, "--backend", anyio_backend],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        with anyio.fail_after(60):
            start = await anyio.to_thread.run_sync(proc.stdout.readline)
        assert start.startswith("agent-messaging run examples.app:am:"), start
        assert "hosting 2 agent(s): auditor, greeter" in start

        async with AgentMessaging[Any](config) as client:
            reply = await client.conversation.send_and_wait("visitor", "greeter", "Ada", timeout=30)
            assert reply == "Hello, Ada!"
            await client.one_way.send("visitor", "auditor", "checked in")
        with anyio.fail_after(30):
            line = await anyio.to_thread.run_sync(proc.stdout.readline)
        assert line.startswith("auditor: visitor says 'checked in'"), line

        proc.send_signal(signal.SIGTERM)
        assert await anyio.to_thread.run_sync(lambda: proc.wait(30)) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        assert proc.stdout is not None
        assert proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()
