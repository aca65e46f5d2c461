"""SIGKILL of a sender's process mid-wait: after a restart the request is handled and the reply is unread."""

from __future__ import annotations

import itertools
import os
import signal
import sys
from typing import Any

import anyio

from agent_messaging import AgentMessaging, Config
from agent_messaging._app import internals
from agent_messaging.models import MessageKind
from tests.conftest import repo_root


async def test_sigkill_of_waiting_sender_then_restart(config: Config, dsn: str, anyio_backend: str) -> None:
    async with AgentMessaging[Any](config) as am:
        await am.register_organization("acme", "Acme")
        await am.register_agent("alice", "acme", "Alice")
        await am.register_agent("bob", "acme", "Bob")
    root = repo_root()
    env = {**os.environ, "PYTHONPATH": str(root / "src")}
    script = str(root / "tests" / "actors" / "_conv_sender_proc.py")
    async with await anyio.open_process([sys.executable, script, dsn, anyio_backend], env=env) as proc:
        try:
            assert proc.stdout is not None
            output = b""
            with anyio.fail_after(60):
                while b"WAITING\n" not in output:  # (the runtime's log lines come first)
                    try:
                        output += await proc.stdout.receive()
                    except anyio.EndOfStream:
                        assert proc.stderr is not None
                        raise AssertionError((await proc.stderr.receive(65536)).decode()) from None
        finally:
            proc.send_signal(signal.SIGKILL)
            await proc.wait()
    assert proc.returncode == -signal.SIGKILL
    await anyio.sleep(1.2)  # the short request's deadline passes while nobody runs

    # a restart hosting nobody: the expired wait is marked timed out, the other one is left open
    async with AgentMessaging[Any](config) as am:
        rows = await internals(am).database.fetch(
            "SELECT payload #>> '{}' AS text, timed_out_at IS NOT NULL AS timed_out, replied_at FROM messages "
            "WHERE kind = 'request' ORDER BY seq"
        )
        assert sorted((r["text"], r["timed_out"]) for r in rows) == [("long", False), ("short", True)]
        assert all(r["replied_at"] is None for r in rows)

    # a runtime hosting bob handles both requests; the replies are unread messages for alice
    async with AgentMessaging[Any](config) as am:

        @am.register_handler("bob")
        async def bob(message: Any, ctx: Any) -> Any:
            return f"answer to {message}"

        with anyio.fail_after(15):
            for _ in itertools.count():
                replies = await am.conversation.get_messages_from_agent("alice", "bob")
                if len(replies) == 2:
                    break
                await anyio.sleep(0.05)
        unread = await am.conversation.get_unread_messages("alice")
        assert sorted(m.payload for m in unread) == ["answer to long", "answer to short"]
        assert all(m.kind is MessageKind.REPLY and m.in_reply_to is not None for m in unread)
        pairs = await internals(am).database.fetch("SELECT count(*) AS n FROM conversations WHERE status = 'active'")
        assert pairs == [{"n": 1}]
        # the pair is not locked: a new call works at once
        with anyio.fail_after(10):
            assert await am.conversation.send_and_wait("alice", "bob", "again") == "answer to again"
