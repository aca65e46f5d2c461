"""Helper process for the conversation SIGKILL test (not a test module).

Usage: ``python _conv_sender_proc.py DSN BACKEND``

Opens a runtime (hosting nobody), then calls bob from alice twice at once: one
call with a 1 s timeout and one with 600 s. It prints ``WAITING`` (flushed)
once both requests are committed; the test then kills it with SIGKILL.
"""

from __future__ import annotations

import functools
import sys
from typing import Any

import anyio

from agent_messaging import AgentMessaging, Config
from agent_messaging._app import internals


async def main(dsn: str) -> None:
    config = Config(dsn=dsn, pool_size=4, connect_timeout=5, persistence_timeout=5)
    async with AgentMessaging[Any](config) as am, anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(am.conversation.send_and_wait, "alice", "bob", "short", timeout=1.0))
        tg.start_soon(functools.partial(am.conversation.send_and_wait, "alice", "bob", "long", timeout=600.0))
        for _ in range(500):
            if (
                len(internals(am).calls.by_id) == 2
                and len(await am.conversation.get_messages_from_agent("bob", "alice")) == 2
            ):
                break
            await anyio.sleep(0.01)
        print("WAITING", flush=True)
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], backend=sys.argv[2])
