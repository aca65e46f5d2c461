"""Stored rows the runtime cannot decode never block the messages behind them and are never silently consumed.

Such rows are written here with raw SQL, as another client or an older version of the message type
would have written them: a payload that is not a valid ``Note``, or (for an untyped runtime) a number
too long for any JSON reader. The unread-queue readers dead-letter them with the reason and leave them
unread; the history reads leave them out; the healthy messages behind them are delivered.
"""

from __future__ import annotations

import uuid
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from agent_messaging import AgentMessaging, Config, InvalidMessage, MessageContext
from agent_messaging._app import internals
from agent_messaging.actors.news import remote_key
from agent_messaging.persistence._rows import as_uuid
from tests._helpers import eventually


class Note(BaseModel):
    text: str


NOT_A_NOTE = '{"title": "written by an older version"}'
#: Valid jsonb that no JSON reader turns into a Python int (over Python's 4,300-digit limit).
HUGE_NUMBER = '{"n": 1' + "0" * 5000 + "}"


async def setup(am: AgentMessaging[Any], *names: str) -> None:
    await am.register_organization("acme", "Acme")
    for name in names:
        await am.register_agent(name, "acme", name.title())


async def insert_raw(am: AgentMessaging[Any], sender: str, recipient: str, payload_json: str) -> uuid.UUID:
    """A one-way message written straight into the table (as another client would)."""
    s, r = await am.get_agent(sender), await am.get_agent(recipient)
    message_id = uuid.uuid4()
    await internals(am).database.execute(
        "INSERT INTO messages (id, organization_id, kind, sender_id, recipient_id, payload) "
        "VALUES ($1, $2, 'one_way', $3, $4, $5::text::jsonb)",
        [message_id, s.organization_id, s.id, r.id, payload_json],
    )
    return message_id


async def row_state(am: AgentMessaging[Any], message_id: uuid.UUID) -> tuple[bool, bool]:
    """(read, dead) of a message row."""
    row = await internals(am).database.fetch_row(
        "SELECT read_at IS NOT NULL AS read, dead_at IS NOT NULL AS dead FROM messages WHERE id = $1", [message_id]
    )
    assert row is not None
    return bool(row["read"]), bool(row["dead"])


async def test_unread_claim_dead_letters_an_undecodable_row_and_returns_the_rest(config: Config) -> None:
    async with AgentMessaging[Note](config) as am:
        await setup(am, "alice", "bob")
        await am.one_way.send("alice", "bob", Note(text="before"))
        poison = await insert_raw(am, "alice", "bob", NOT_A_NOTE)
        await am.one_way.send("alice", "bob", Note(text="after"))

        got = await am.conversation.get_unread_messages("bob")
        assert [m.payload for m in got] == [Note(text="before"), Note(text="after")]
        assert await row_state(am, poison) == (False, True)  # not consumed: dead-lettered, still unread
        [letter] = await am.get_dead_letters("bob")
        assert letter.message_id == poison
        assert "cannot be decoded" in letter.error
        assert "Note" in letter.error
        assert await am.conversation.get_unread_messages("bob") == []
        dead_letter_id = letter.id

    # another version of the program (here: an untyped runtime) can read it once its dead letter is retried
    async with AgentMessaging[Any](config) as am:
        await am.retry_dead_letter(dead_letter_id)
        [message] = await am.conversation.get_unread_messages("bob")
        assert message.id == poison
        assert message.payload == {"title": "written by an older version"}


async def test_a_claim_with_a_limit_still_fills_it_from_behind_the_poison(config: Config) -> None:
    async with AgentMessaging[Note](config) as am:
        await setup(am, "alice", "bob")
        for _ in range(3):
            await insert_raw(am, "alice", "bob", NOT_A_NOTE)
        for text in ("one", "two"):
            await am.one_way.send("alice", "bob", Note(text=text))
        got = await am.conversation.get_unread_messages("bob", limit=2)
        assert [m.payload.text for m in got] == ["one", "two"]
        assert len(await am.get_dead_letters("bob")) == 3


async def test_wait_for_message_skips_an_undecodable_row(config: Config) -> None:
    async with AgentMessaging[Any](config) as am:
        await setup(am, "alice", "bob")
        poison = await insert_raw(am, "alice", "bob", HUGE_NUMBER)
        async with anyio.create_task_group() as tg:

            async def later() -> None:
                await anyio.sleep(0.05)
                await am.one_way.send("alice", "bob", {"healthy": True})

            tg.start_soon(later)
            message = await am.conversation.wait_for_message("bob", timeout=10)
        assert message.payload == {"healthy": True}
        assert await row_state(am, poison) == (False, True)
        [letter] = await am.get_dead_letters("bob")
        assert "cannot be decoded" in letter.error


async def test_a_hosted_agent_gets_the_healthy_messages_behind_an_undecodable_one(config: Config) -> None:
    seen: list[str] = []
    done = anyio.Event()
    async with AgentMessaging[Note](config) as am:
        await setup(am, "alice", "bob")
        await am.one_way.send("alice", "bob", Note(text="first"))
        poison = await insert_raw(am, "alice", "bob", NOT_A_NOTE)
        await am.one_way.send("alice", "bob", Note(text="second"))

        @am.register_handler("bob")  # hosted after the fact: the catch-up read finds all three
        async def bob(note: Note, ctx: MessageContext[Note]) -> None:
            seen.append(note.text)
            if note.text == "third":
                done.set()

        await eventually(lambda: "second" in seen)
        await am.one_way.send("alice", "bob", Note(text="third"))  # and later ones still arrive
        with anyio.fail_after(10):
            await done.wait()
        assert seen == ["first", "second", "third"]
        assert await row_state(am, poison) == (False, True)
        [letter] = await am.get_dead_letters("bob")
        assert letter.message_id == poison


async def test_history_reads_leave_an_undecodable_row_out_and_fill_the_page(config: Config) -> None:
    async with AgentMessaging[Note](config) as am:
        await setup(am, "alice", "bob")
        await am.one_way.send("alice", "bob", Note(text="old"))
        poison = await insert_raw(am, "alice", "bob", NOT_A_NOTE)
        await am.one_way.send("alice", "bob", Note(text="new"))
        newest_first = await am.one_way.get_received_messages("bob", limit=2)
        assert [m.payload.text for m in newest_first] == ["new", "old"]  # the page is filled past the poison
        sent = await am.one_way.get_sent_messages("alice")
        assert [m.payload.text for m in sent] == ["new", "old"]
        oldest_first = await am.conversation.get_messages_from_agent("bob", "alice")
        assert [m.payload.text for m in oldest_first] == ["old", "new"]
        assert await row_state(am, poison) == (False, False)  # a history read consumes nothing


async def test_meeting_history_keeps_an_undecodable_entry_without_its_message(config: Config) -> None:
    async with AgentMessaging[Note](config) as am:
        await setup(am, "host", "guest")
        mid = await am.meeting.create_meeting("host", ["guest"])
        await internals(am).database.execute(
            "UPDATE meeting_events SET payload = $2::text::jsonb WHERE meeting_id = $1 AND seq = 1",
            [mid, NOT_A_NOTE],
        )
        [first] = await am.meeting.get_meeting_history(mid)
        assert first.message is None
        assert "Note" in first.data["undecodable"]


async def test_a_reply_stored_in_a_form_the_caller_cannot_decode_fails_the_call_at_once(config: Config) -> None:
    async with AgentMessaging[Note](config) as am:
        await setup(am, "alice", "bob")
        result: list[BaseException] = []

        async def call() -> None:
            try:
                await am.conversation.send_and_wait("alice", "bob", Note(text="question"), timeout=30)
            except InvalidMessage as exc:
                result.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(call)
            db = internals(am).database

            async def has_request() -> bool:
                return bool(await db.fetch_val("SELECT count(*) FROM messages WHERE kind = 'request'"))

            await eventually(has_request)
            # another client answers with a payload that is no Note, and wakes the caller's watch
            request = await db.fetch_row("SELECT id, conversation_id, sender_id, recipient_id FROM messages")
            assert request is not None
            alice = await am.get_agent("alice")
            await db.execute(
                "INSERT INTO messages (id, organization_id, kind, sender_id, recipient_id, conversation_id, "
                "in_reply_to, payload) VALUES ($1, $2, 'reply', $3, $4, $5, $6, $7::text::jsonb)",
                [
                    uuid.uuid4(),
                    alice.organization_id,
                    as_uuid(request["recipient_id"]),
                    as_uuid(request["sender_id"]),
                    as_uuid(request["conversation_id"]),
                    as_uuid(request["id"]),
                    NOT_A_NOTE,
                ],
            )
            internals(am).services.signals.fire([remote_key(alice.id)])
        [error] = result
        assert "reply" in str(error)
        assert "Note" in str(error)


@pytest.mark.parametrize("payload", [NOT_A_NOTE, HUGE_NUMBER])
async def test_the_cli_and_dead_letters_show_undecodable_rows(config: Config, payload: str) -> None:
    async with AgentMessaging[Note](config) as am:
        await setup(am, "alice", "bob")
        poison = await insert_raw(am, "alice", "bob", payload)
        assert await am.conversation.get_unread_messages("bob") == []
        [letter] = await am.one_way.get_dead_letters()
        assert letter.message_id == poison
        assert letter.agent == "bob"
        assert letter.sender == "alice"
