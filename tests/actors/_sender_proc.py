"""Helper process for the SIGKILL test (not a test module).

Usage: ``python _sender_proc.py DSN HANDLED_FILE BACKEND``

Hosts "bob" with a slow handler that appends each handled message id to
HANDLED_FILE, and sends one-way messages from "alice" to "bob" forever,
printing ``ACK <id>`` to stdout (flushed) each time ``send`` returned. The
test kills it with SIGKILL.
"""

from __future__ import annotations

import sys
from typing import Any

import anyio
import structlog

from agent_messaging import AgentMessaging, Config
from agent_messaging.actors.agent import MessageContext


async def main(dsn: str, handled_file: str) -> None:
    config = Config(dsn=dsn, pool_size=4, connect_timeout=5, persistence_timeout=5)
    am = AgentMessaging[Any](config)

    @am.register_handler("bob")
    async def bob(message: Any, ctx: MessageContext[Any]) -> None:
        await anyio.sleep(0.05)
        async with await anyio.open_file(handled_file, "a") as f:
            await f.write(f"{ctx.message_id}\n")

    async with am:
        i = 0
        while True:
            [message_id] = await am.one_way.send("alice", "bob", {"i": i})
            sys.stdout.write(f"ACK {message_id}\n")
            sys.stdout.flush()
            i += 1


if __name__ == "__main__":
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))
    anyio.run(main, sys.argv[1], sys.argv[2], backend=sys.argv[3])
