"""Small helpers shared by the tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import anyio
from anyio.abc import TaskGroup

from agent_messaging import AgentMessaging
from agent_messaging.models import Turn


async def eventually(check: Callable[[], Awaitable[bool]] | Callable[[], bool], within: float = 10) -> None:
    """Wait (bounded by ``within`` seconds) until ``check()`` is true, re-checking every few milliseconds.

    For state the runtime keeps in its own tasks or in the database, where no event is exposed.
    """
    with anyio.fail_after(within):
        while True:
            result = check()
            if not isinstance(result, bool):
                result = await result
            if result:
                return
            await anyio.sleep(0.01)


def attend_all(tg: TaskGroup, am: AgentMessaging[Any], meeting_id: Any, *names: str) -> dict[str, Turn[Any]]:
    """Start ``attend_meeting`` for each of ``names`` in ``tg``; each one's Turn lands in the returned dict."""
    turns: dict[str, Turn[Any]] = {}

    async def attend(name: str) -> None:
        turns[name] = await am.meeting.attend_meeting(name, meeting_id)

    for name in names:
        tg.start_soon(attend, name)
    return turns
