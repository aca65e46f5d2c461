"""The app that ``agent-messaging run`` children serve in the fault suite (``tests.faults._fault_app:am``).

Not a test module. Environment:

- ``FAULT_AGENTS``: agents hosted here (comma-separated); ``FAULT_TURNS``: agents whose meeting turns are taken here
- ``FAULT_RECORDS``: a directory; every handler run appends JSON lines to ``<pid>.jsonl`` in it
- ``FAULT_LEASE``, ``FAULT_POLL``: ``Config.ownership_lease`` and ``Config.poll_interval``

Each run of a handler writes a ``start`` line when it begins and an ``end`` (or ``cancelled``) line when it
stops, with ``time.monotonic()`` (one clock for every process of the machine), so the test can check that no
two runs of one agent ever overlapped, in any processes. A process killed with SIGKILL leaves a ``start``
without an end: the test ends it at the moment of the kill.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import anyio

from agent_messaging import AgentMessaging, Config, MessageContext, Turn

ORG = "faults"
WORK = 0.005  # seconds a handler works: long enough for two overlapping runs to show
_records = Path(os.environ.get("FAULT_RECORDS", "."))  # set by the tests (examples/imports only import it)
_fd = os.open(_records / f"{os.getpid()}.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND)

am = AgentMessaging[Any](
    Config(
        poll_interval=float(os.environ.get("FAULT_POLL", "0.2")),
        ownership_lease=float(os.environ.get("FAULT_LEASE", "1.0")),
        persistence_timeout=120,
        shutdown_grace=2,
        restart_backoff_initial=0.01,
        restart_backoff_max=0.05,
    )
)


def record(event: str, agent: str, key: str) -> None:
    """Append one record line (one ``write`` of an ``O_APPEND`` file: lines of several processes never mix)."""
    line = json.dumps({"ev": event, "agent": agent, "key": key, "pid": os.getpid(), "t": time.monotonic()})
    os.write(_fd, (line + "\n").encode())


async def _work(agent: str, key: str) -> None:
    """Work a little, recording when it started and how it ended."""
    record("start", agent, key)
    try:
        await anyio.sleep(WORK)
    except BaseException:
        record("cancelled", agent, key)
        raise
    record("end", agent, key)


async def handle(message: Any, ctx: MessageContext[Any]) -> Any:
    """Work a little; answer calls with who handled them."""
    await _work(ctx.agent, str(ctx.message_id))
    return {"by": os.getpid(), "n": message.get("n") if isinstance(message, dict) else None}


async def take_turn(turn: Turn[Any]) -> Any:
    """Speak: who, which turn, from which process."""
    await _work(turn.agent, f"{turn.meeting_id}:{turn.turn_number}")
    return {"said": turn.agent, "turn": turn.turn_number, "pid": os.getpid()}


_hosted = [name for name in os.environ.get("FAULT_AGENTS", "").split(",") if name]
_turns = [name for name in os.environ.get("FAULT_TURNS", "").split(",") if name]
if _hosted:
    am.register_handler(*_hosted)(handle)
if _turns:
    am.register_turn_handler(*_turns)(take_turn)
