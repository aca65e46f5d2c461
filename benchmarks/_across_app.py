"""The app ``agent-messaging run`` children serve in ``benchmarks/across_processes.py`` (not a benchmark itself).

Environment: ``AM_BENCH_HOST`` (agents hosted here, answering calls with the message itself) and
``AM_BENCH_TURNS`` (agents whose meeting turns are taken here: each turn says its number, at once).
"""

from __future__ import annotations

import os
import time
from typing import Any

from agent_messaging import AgentMessaging, Config, MessageContext, Turn

HOSTED = [name for name in os.environ.get("AM_BENCH_HOST", "").split(",") if name]
TURNS = [name for name in os.environ.get("AM_BENCH_TURNS", "").split(",") if name]

am = AgentMessaging[Any](Config(pool_size=10, poll_interval=5.0))


async def echo(message: Any, ctx: MessageContext[Any]) -> Any:
    """Answer a call with the message itself."""
    return message


async def speak(turn: Turn[Any]) -> Any:
    """Say something small, with the wall-clock time it was said (to time the hand-off)."""
    return {"turn": turn.turn_number, "at": time.time()}


if HOSTED:
    am.register_handler(*HOSTED)(echo)
if TURNS:
    am.register_turn_handler(*TURNS)(speak)
