"""Fixtures of the multi-process tests: ``agent-messaging run`` children and script children on the test's database."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agent_messaging import AgentMessaging, Config
from tests._processes import ROOT, Child
from tests.multiprocess._app import setup

APP = "tests.multiprocess._app:am"
SCRIPT = str(ROOT / "tests" / "multiprocess" / "_script.py")


@pytest.fixture
def run_child(spawn: Callable[..., Child], anyio_backend: str) -> Callable[..., Any]:
    """``await run_child(host="alice", turns="p1,p2")``: an ``agent-messaging run`` child, serving once it printed
    its start line (on the test's backend)."""

    async def start(*, host: str = "", turns: str = "", **env: str) -> Child:
        child = spawn(
            "-m", "agent_messaging", "run", APP, "--backend", anyio_backend, "--log-level", "warning",
            AM_HOST=host, AM_TURNS=turns, **env,
        )  # fmt: skip
        await child.line(f"agent-messaging run {APP}:")
        return child

    return start


@pytest.fixture
def script(spawn: Callable[..., Child], anyio_backend: str) -> Callable[..., Child]:
    """``script("attend", "p3", meeting_id)``: a script child (see ``_script.py``) on the test's backend."""

    def start(*args: str, **env: str) -> Child:
        return spawn(SCRIPT, *args, AM_BACKEND=anyio_backend, **env)

    return start


async def reported(child: Child, key: str) -> Any:
    """The value of ``key`` in the next JSON line of ``child`` that has it."""
    while True:
        line = await child.line("{")
        data = json.loads(line)
        if key in data:
            return data[key]


@pytest.fixture
async def local(dsn: str) -> AsyncIterator[AgentMessaging[Any]]:
    """The test's own runtime (hosting nothing), with the organization and agents registered."""
    async with AgentMessaging[Any](Config(dsn=dsn, pool_size=5, poll_interval=0.2, connect_timeout=10)) as am:
        await setup(am)
        yield am
