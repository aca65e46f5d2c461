"""A conversation ended by another runtime: this runtime's next message starts a new session, and a call
that raced the end is told so."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent_messaging import AgentMessaging, Config
from agent_messaging._app import internals
from agent_messaging.errors import ConversationEnded, InvalidOperation
from agent_messaging.persistence.writer import NOTIFY_CHANNEL

from .test_conversation import setup, until

AM = AgentMessaging[Any]


async def _sessions(am: AM) -> list[tuple[Any, str]]:
    rows = await internals(am).database.fetch(
        "SELECT m.conversation_id, c.status FROM messages m JOIN conversations c ON c.id = m.conversation_id "
        "WHERE m.kind IN ('chat', 'request') ORDER BY m.seq"
    )
    return [(r["conversation_id"], r["status"]) for r in rows]


async def test_a_chat_after_another_runtime_ended_the_conversation_starts_a_new_one(config: Config) -> None:
    async with AgentMessaging[Any](config) as here, AgentMessaging[Any](config) as there:
        await setup(here, "alice", "bob")
        await here.conversation.send("alice", "bob", "hello")
        await there.conversation.end_conversation("bob", "alice")
        await here.conversation.send("alice", "bob", "hello again")
        (first, first_status), (second, second_status) = await _sessions(here)
        assert first != second
        assert (first_status, second_status) == ("ended", "active")


async def test_a_call_after_another_runtime_ended_the_conversation_is_answered(config: Config) -> None:
    async with AgentMessaging[Any](config) as here, AgentMessaging[Any](config) as there:
        await setup(here, "alice", "bob")

        @there.register_handler("bob")
        async def bob(message: Any, ctx: Any) -> Any:
            return f"re: {message}"

        assert await here.conversation.send_and_wait("alice", "bob", "one", timeout=10) == "re: one"
        await there.conversation.end_conversation("bob", "alice")
        assert await here.conversation.send_and_wait("alice", "bob", "two", timeout=10) == "re: two"
        (first, _), (second, status) = await _sessions(here)
        assert first != second
        assert status == "active"


async def test_a_request_left_open_in_an_ended_conversation_ends_its_call(config: Config) -> None:
    """The end and a request from another runtime committed at the same instant: the request can land in the
    ended conversation, unclosed. Its caller still gets ConversationEnded, and no reply can claim it."""
    async with AgentMessaging[Any](config) as here, AgentMessaging[Any](config) as there:
        await setup(here, "alice", "bob")
        await here.conversation.send("alice", "bob", "hello")
        db = internals(here).database
        errors: list[BaseException] = []

        async def call() -> None:
            with pytest.raises(ConversationEnded) as caught:
                await here.conversation.send_and_wait("alice", "bob", "are you there?", timeout=20)
            errors.append(caught.value)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)

            async def requested() -> bool:
                return bool(await db.fetch("SELECT id FROM messages WHERE kind = 'request'"))

            await until(requested)
            # what the race leaves: the conversation ended, the request in it still open (and the end's
            # NOTIFY, from another runtime)
            await db.execute("UPDATE conversations SET status = 'ended', ended_at = now()")
            with pytest.raises(InvalidOperation, match="no unanswered request"):
                await there.conversation.reply("bob", "alice", "too late")
            alice = await db.fetch_val("SELECT id::text FROM agents WHERE external_id = 'alice'")
            await db.execute("SELECT 1 FROM pg_notify($1, $2)", [NOTIFY_CHANNEL, f"elsewhere|{alice}"])
        assert len(errors) == 1
        request = await db.fetch_val("SELECT id FROM messages WHERE kind = 'request'")
        with pytest.raises(InvalidOperation, match="conversation ended"):
            await there.conversation.reply("bob", "alice", "too late", request_id=str(request))
        assert await db.fetch_val("SELECT count(*) FROM messages WHERE kind = 'reply'") == 0
