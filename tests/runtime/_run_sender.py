"""Load for the ``agent-messaging run`` tests (not a test module).

Usage: ``python _run_sender.py DSN WORKDIR [COUNT]``

Registers the ``ops`` organization and agents, touches ``WORKDIR/ready``, then
sends one-way messages from ``client`` to ``worker`` (appending each acknowledged
id to ``WORKDIR/acked``) until ``WORKDIR/stop`` exists, or just COUNT messages
if given. Without COUNT it also calls ``worker`` one call after another
(``send_and_wait``; answered/timed-out counts in ``WORKDIR/calls``).
"""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path
from typing import Any

import anyio

from agent_messaging import AgentMessaging, AlreadyExists, Config, ReplyTimeout

AGENTS = ("worker", "client", "chair", "p1", "p2")


async def main(dsn: str, workdir: Path, count: int | None) -> None:
    am = AgentMessaging[Any](Config(dsn=dsn, pool_size=4, poll_interval=0.2))
    done = anyio.Event()
    calls = {"answered": 0, "timed_out": 0}

    async def one_way() -> None:
        with (workdir / "acked").open("a") as acked:
            for n in range(count if count is not None else 1_000_000):
                if (workdir / "stop").exists():
                    break
                [message_id] = await am.one_way.send("client", "worker", {"n": n})
                acked.write(f"{message_id}\n")
                acked.flush()
                await anyio.sleep(0.003)
        done.set()

    async def caller() -> None:
        n = 0
        while not done.is_set():
            try:
                reply = await am.conversation.send_and_wait("client", "worker", {"n": n}, timeout=20)
                assert reply == {"n": n}, reply
                calls["answered"] += 1
            except ReplyTimeout:
                calls["timed_out"] += 1
            n += 1
            (workdir / "calls").write_text(f"{calls['answered']} {calls['timed_out']}\n")

    async with am:
        with contextlib.suppress(AlreadyExists):
            await am.register_organization("ops", "Ops")
        for name in AGENTS:
            with contextlib.suppress(AlreadyExists):
                await am.register_agent(name, "ops", name)
        (workdir / "ready").touch()
        async with anyio.create_task_group() as tg:
            tg.start_soon(one_way)
            if count is None:
                tg.start_soon(caller)


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]) if len(sys.argv) > 3 else None)
    # psqlpy's threads can rarely abort interpreter finalization (PyGILState_Release); the work is done
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
