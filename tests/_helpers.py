"""Small helpers shared by the tests."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
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


@asynccontextmanager
async def holding(
    dsn: str, *hold: tuple[str, list[Any]], release: tuple[tuple[str, list[Any]], ...] = ()
) -> AsyncIterator[None]:
    """Run the ``hold`` statements (sql, params) on a connection of another process and keep it open for the
    block, then run ``release`` there: ``("BEGIN", []), ("LOCK ...", [])`` holds a lock (closing the
    connection ends the transaction). A test on either backend can make its runtime wait behind a lock."""
    script = Path(__file__).with_name("_lock_holder.py")
    command = [sys.executable, str(script), dsn, json.dumps(hold), json.dumps(release)]
    async with await anyio.open_process(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None) as process:
        assert process.stdin is not None
        assert process.stdout is not None
        with anyio.fail_after(30):
            assert (await process.stdout.receive()).startswith(b"ready")
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):
                await process.stdin.aclose()
                with anyio.move_on_after(10):
                    await process.wait()
