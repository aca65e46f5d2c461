"""Small helpers shared by the tests."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio


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
