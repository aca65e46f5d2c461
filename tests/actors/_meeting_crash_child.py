"""Child process of the recovery tests: runs a meeting until agent ``b`` holds the floor, then waits to be killed.

Usage: ``python _meeting_crash_child.py <dsn> <turn_duration>``. Agents ``host``,
``a``, ``b`` and ``h`` of organization ``acme`` must exist; ``h`` is hosted here
with a turn handler. Prints one JSON line (meeting id, turn number, deadline)
once ``b`` holds the floor.
"""

from __future__ import annotations

import json
import sys
from typing import Any

import anyio

from agent_messaging import AgentMessaging, Config
from agent_messaging.models import Turn


async def main(dsn: str, turn_duration: float) -> None:
    am = AgentMessaging[Any](Config(dsn=dsn, pool_size=4))

    @am.register_turn_handler("h")
    async def on_turn(turn: Turn[Any]) -> str:
        return "h before the crash"

    async with am, anyio.create_task_group() as tg:
        mid = await am.meeting.create_meeting("host", ["a", "b", "h"], turn_duration=turn_duration)

        async def a() -> None:
            await am.meeting.attend_meeting("a", mid)
            await am.meeting.speak("a", mid, "a before the crash")

        async def b() -> None:
            turn = await am.meeting.attend_meeting("b", mid)
            deadline = turn.deadline.isoformat() if turn.deadline else None
            print(json.dumps({"meeting": str(mid), "turn": turn.turn_number, "deadline": deadline}), flush=True)

        async def host() -> None:
            await am.meeting.start_meeting("host", mid, "opening")

        tg.start_soon(a)
        tg.start_soon(b)
        while len(await am.meeting.get_meeting_history(mid)) < 4:  # noqa: ASYNC110 - a and b have joined
            await anyio.sleep(0.01)
        tg.start_soon(host)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], float(sys.argv[2]))
