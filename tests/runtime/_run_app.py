"""The app the ``agent-messaging run`` tests serve: ``agent-messaging run tests.runtime._run_app:am``.

Not a test module.

Environment: ``AM_HANDLED_FILE`` (each handled message id is appended, one per line),
``AM_HANDLER_DELAY`` (seconds each message takes, default 0.002), ``AM_MEETING``
(if set, ``setup`` starts a meeting of hosted agents unless one is active).
Organization ``ops``: ``worker`` (hosted; answers calls with ``{"n": n}``), ``client``,
``chair`` (meeting host), ``p1``/``p2`` (hosted meeting participants).
"""

from __future__ import annotations

import contextlib
import os
from typing import Any

import anyio

from agent_messaging import AgentMessaging, AlreadyExists, Config, MessageContext, Turn

ORG = "ops"
AGENTS = ("worker", "client", "chair", "p1", "p2")
am = AgentMessaging[Any](Config(poll_interval=0.2, shutdown_grace=5))


@am.register_handler("worker")
async def work(message: Any, ctx: MessageContext[Any]) -> Any:
    """Takes a little while, records the message id, answers calls."""
    await anyio.sleep(float(os.environ.get("AM_HANDLER_DELAY", "0.002")))
    with open(os.environ["AM_HANDLED_FILE"], "a") as f:  # noqa: ASYNC230 - a tiny append in a test app
        f.write(f"{ctx.message_id}\n")
    return {"n": message.get("n")} if ctx.kind.value == "request" else None


@am.register_turn_handler("p1", "p2")
async def speak(turn: Turn[Any]) -> Any:
    """Meeting participants say something short each turn."""
    await anyio.sleep(0.05)
    return {"said": turn.agent, "turn": turn.turn_number}


async def setup(am: AgentMessaging[Any]) -> None:
    """Register the organization and agents; with AM_MEETING, start a meeting unless one is active."""
    with contextlib.suppress(AlreadyExists):
        await am.register_organization(ORG, "Ops")
    for name in AGENTS:
        with contextlib.suppress(AlreadyExists):
            await am.register_agent(name, ORG, name)
    if os.environ.get("AM_MEETING") and not await am.meeting.list_meetings(active=True):
        meeting = await am.meeting.create_meeting("chair", ["p1", "p2"], turn_duration=0.5)
        # returns when the floor is back with the chair; then the chair lets its turns time out
        await am.meeting.start_meeting("chair", meeting, {"agenda": "keep talking"})
