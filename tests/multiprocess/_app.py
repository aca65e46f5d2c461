"""The app that ``agent-messaging run`` children serve in the multi-process tests (``tests.multiprocess._app:am``).

Not a test module. Environment:

- ``AM_HOST``: agents hosted here with :func:`handle` (comma-separated)
- ``AM_TURNS``: agents whose meeting turns are taken here by :func:`take_turn`
- ``AM_FLAGS``: a directory; the file ``fixed`` in it makes the ``flaky`` operation succeed
- ``AM_MAX_ATTEMPTS``: ``Config.max_attempts`` (default 3)
- ``AM_TRACE_FILE``: export every finished span to this file, one JSON line each (with
  ``AGENT_MESSAGING_TRACING=true``, the runtime's spans; see ``tests/_tracing.py``); through a
  ``BatchSpanProcessor`` if ``AM_TRACE_BATCH`` is ``1``

Messages are dicts with an ``op``: ``echo`` answers ``{"echo": ..., "by": agent, "pid": pid}``; ``fail``
raises ``ValueError``; ``call`` calls ``to`` with ``then`` from inside the handler and answers with the
reply; ``flaky`` raises until the ``fixed`` flag exists, then records that it was handled.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from agent_messaging import AgentMessaging, AlreadyExists, Config, MessageContext, Turn

ORG = "multi"
AGENTS = ("user", "alice", "bob", "carol", "chair", "p1", "p2", "p3", "flaky")
if os.environ.get("AM_TRACE_FILE"):  # before the runtime opens: its spans go to this provider
    from tests._tracing import install_file_exporter

    install_file_exporter(os.environ["AM_TRACE_FILE"], batch=os.environ.get("AM_TRACE_BATCH") == "1")

HOSTED = [name for name in os.environ.get("AM_HOST", "").split(",") if name]
TURNS = [name for name in os.environ.get("AM_TURNS", "").split(",") if name]

am = AgentMessaging[Any](
    Config(
        poll_interval=0.2,
        shutdown_grace=2,
        agent_max_restarts=2,
        agent_restart_window=60,
        restart_backoff_initial=0.01,
        restart_backoff_max=0.05,
        max_attempts=int(os.environ.get("AM_MAX_ATTEMPTS", "3")),
    )
)


async def handle(message: Any, ctx: MessageContext[Any]) -> Any:
    """The behaviour the message asks for (see the module docstring)."""
    op = message.get("op") if isinstance(message, dict) else None
    if op == "echo":
        return {"echo": message.get("text"), "by": ctx.agent, "pid": os.getpid()}
    if op == "fail":
        raise ValueError(f"{ctx.agent} was asked to fail")
    if op == "call":
        return await am.conversation.send_and_wait(ctx.agent, message["to"], message["then"], timeout=30)
    if op == "flaky":
        flags = Path(os.environ["AM_FLAGS"])
        if not (flags / "fixed").exists():
            raise RuntimeError("not fixed yet")
        (flags / f"handled-{ctx.message_id}").touch()
    return None


async def take_turn(turn: Turn[Any]) -> Any:
    """Say who speaks, at which turn, from which process."""
    return {"said": turn.agent, "turn": turn.turn_number, "pid": os.getpid()}


if HOSTED:
    am.register_handler(*HOSTED)(handle)
if TURNS:
    am.register_turn_handler(*TURNS)(take_turn)


async def setup(am: AgentMessaging[Any]) -> None:
    """Register the organization and every agent of the tests (any process may be first)."""
    with contextlib.suppress(AlreadyExists):
        await am.register_organization(ORG, "Multi")
    for name in AGENTS:
        with contextlib.suppress(AlreadyExists):
            await am.register_agent(name, ORG, name)
