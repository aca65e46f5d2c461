"""Dead letters in the database: one open dead letter per message, and a retry that always requeues."""

from __future__ import annotations

from typing import Any

import anyio

from agent_messaging import AgentMessaging, Config
from agent_messaging._app import internals
from agent_messaging.persistence.store import messages
from agent_messaging.persistence.writer import Write
from tests._helpers import holding


async def _dead_message(am: AgentMessaging[Any]) -> tuple[Any, Any]:
    """A message from alice to bob (not hosted), dead-lettered as a hosted handler would: (message id, bob's id)."""
    await am.register_organization("acme", "Acme")
    await am.register_agent("alice", "acme", "Alice")
    bob = await am.register_agent("bob", "acme", "Bob")
    [message] = await am.one_way.send("alice", "bob", "poison")
    writer = internals(am).services.writer
    await writer.write([Write(messages.DEAD, (message, 3)), Write(messages.DEAD_LETTER, (message, bob.id, 3, "first"))])
    return message, bob.id


async def test_two_dead_letterings_of_one_message_at_once_leave_one(dsn: str) -> None:
    async with AgentMessaging[Any](Config(dsn=dsn, pool_size=4)) as am:
        message, bob = await _dead_message(am)
        await am.retry_dead_letter((await am.get_dead_letters("bob"))[0].id)  # retried: a new one may be written
        insert = (  # ids are uuids: safe to write into the statement
            "INSERT INTO dead_letters (message_id, agent_id, attempts, error) "
            f"VALUES ('{message}', '{bob}', 1, 'other')"
        )
        # another process dead-letters it in a transaction still open while this one does
        hold: tuple[tuple[str, list[Any]], ...] = (("BEGIN", []), (insert, []))
        with anyio.fail_after(20):
            async with anyio.create_task_group() as tg, holding(dsn, *hold, release=(("COMMIT", []),)):
                row = (message, bob, 1, "this one")
                tg.start_soon(internals(am).services.writer.write, [Write(messages.DEAD_LETTER, row)])
                await anyio.sleep(0.5)  # the write waits for the other transaction, then does nothing
        open_letters = [d for d in await am.get_dead_letters("bob") if d.retried_at is None]
        assert [d.error for d in open_letters] == ["other"]


async def test_retrying_a_dead_letter_requeues_a_message_marked_handled_late(dsn: str) -> None:
    # a previous owner's handled mark, held up in its writer, may land after the dead-lettering
    async with AgentMessaging[Any](Config(dsn=dsn, pool_size=4)) as am:
        message, _ = await _dead_message(am)
        await internals(am).services.writer.write([Write(messages.HANDLED, (message, 1))])
        [letter] = await am.get_dead_letters("bob")
        await am.retry_dead_letter(letter.id)
        assert [m.id for m in await am.conversation.get_unread_messages("bob")] == [message]
