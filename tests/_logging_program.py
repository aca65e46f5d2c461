"""A program using the library, run by ``tests/test_logging.py`` as ``python _logging_program.py MODE``.

MODE ``plain`` configures no logging at all; ``stdlib`` calls ``logging.basicConfig(level=INFO)``;
``structlog`` configures structlog (JSON lines to stderr). Its hosted handler fails on the first
attempt and succeeds on the second; the program prints ``done`` when it has.
"""

from __future__ import annotations

import logging
import sys

import anyio
import structlog

from agent_messaging import AgentMessaging, Config, MessageContext

mode = sys.argv[1]
if mode == "stdlib":
    logging.basicConfig(level=logging.INFO, format="%(name)s %(levelname)s %(message)s")
elif mode == "structlog":
    structlog.configure(
        processors=[structlog.processors.add_log_level, structlog.processors.JSONRenderer()],
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
    )

am = AgentMessaging[str](Config(restart_backoff_initial=0))
handled = anyio.Event()


@am.register_handler("worker")
async def worker(message: str, ctx: MessageContext[str]) -> None:
    if ctx.attempt == 1:
        raise RuntimeError("the first attempt fails")
    handled.set()


async def main() -> None:
    async with am:
        await am.register_organization("acme", "Acme", exist_ok=True)
        for name in ("boss", "worker"):
            await am.register_agent(name, "acme", name.title(), exist_ok=True)
        await am.one_way.send("boss", "worker", "hello")
        with anyio.fail_after(30):
            await handled.wait()
    print("done")


anyio.run(main)
