"""What is acknowledged reads back the same; what PostgreSQL cannot round-trip is refused at the door.

The rules are in ``docs/limits.md``; each test here pins one of them on a real runtime.
"""

from __future__ import annotations

import math
import uuid
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from agent_messaging import (
    AgentMessaging,
    AgentMessagingError,
    Config,
    HandlerError,
    InvalidArgument,
    InvalidMessage,
    InvalidOperation,
    MessageContext,
    NotYourTurn,
)
from agent_messaging._app import internals
from agent_messaging._validation import MAX_CURSOR, MAX_DEPTH, MAX_METADATA_BYTES, MAX_NAME_LENGTH
from agent_messaging.actors.meeting.types import Command, Op
from agent_messaging.models import MeetingEventType
from tests._helpers import attend_all

AM = AgentMessaging[Any]

#: Values beyond what psqlpy's jsonb conversion keeps: integers past 64 bits, floats jsonb would print as integers.
EXACT = {
    "big": 10**400,
    "past_64_bits": 2**70 + 1,
    "negative": -(2**63) - 1,
    "float_with_exponent": 1e23,
    "huge_float": -1.7976931348623157e308,
    "tiny_float": 5e-324,
    "spelled": 1e16,
    "text": "Ünïcødé 🤖 \\u0000 is only a backslash here, 'quotes' \"too\"",
    "nested": [[{"a": [1.5, None, True]}]],
}


async def setup(am: AM, *names: str) -> None:
    await am.register_organization("acme", "Acme")
    for name in names:
        await am.register_agent(name, "acme", name.title())


async def table_counts(am: AM) -> dict[str, int]:
    db = internals(am).database
    return {
        table: int(await db.fetch_val(f"SELECT count(*) FROM {table}"))
        for table in ("organizations", "agents", "messages", "conversations", "meetings", "meeting_events")
    }


def same(a: Any, b: Any) -> bool:
    """Equal, and of the same types all the way down (``1e16`` is not ``10**16``)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# ------------------------------------------------------------------ exact round trips


async def test_numbers_beyond_64_bits_and_exponent_floats_read_back_exactly(am: AM) -> None:
    await setup(am, "alice", "bob")
    await am.one_way.send("alice", "bob", EXACT, metadata={"also": EXACT})
    [received] = await am.one_way.get_received_messages("bob")
    assert same(received.payload, EXACT)
    assert same(received.metadata, {"also": EXACT})
    [claimed] = await am.conversation.get_unread_messages("bob")
    assert same(claimed.payload, EXACT)


async def test_metadata_of_agents_and_organizations_reads_back_exactly(am: AM) -> None:
    organization = await am.register_organization("acme", "Acme", metadata=EXACT)
    assert same(organization.metadata, EXACT)
    assert same((await am.get_organization("acme")).metadata, EXACT)
    agent = await am.register_agent("alice", "acme", "Alice", metadata={"n": 2**64})
    assert same(agent.metadata, {"n": 2**64})
    assert same((await am.get_agent("alice")).metadata, {"n": 2**64})
    [listed] = await am.list_agents("acme")
    assert same(listed.metadata, {"n": 2**64})


async def test_a_hosted_handler_gets_the_same_value_on_first_delivery_and_on_redelivery(config: Config) -> None:
    payload = {"pair": (1, 2), "n": 2**70 + 1, "f": 1e23}  # a tuple: JSON has only lists
    first: list[Any] = []
    again: list[Any] = []
    async with AgentMessaging[Any](config) as am:
        await setup(am, "alice", "bob")
        delivered = anyio.Event()

        @am.register_handler("bob")
        async def bob_first(message: Any, ctx: MessageContext[Any]) -> None:
            first.append(message)
            delivered.set()
            raise RuntimeError("not handled: delivered again by the next runtime")

        await anyio.sleep(0.1)  # let bob be hosted, so the send delivers straight after its commit
        await am.one_way.send("alice", "bob", payload)
        with anyio.fail_after(10):
            await delivered.wait()
    async with AgentMessaging[Any](config) as am:
        redelivered = anyio.Event()

        @am.register_handler("bob")
        async def bob_again(message: Any, ctx: MessageContext[Any]) -> None:
            again.append(message)
            redelivered.set()

        with anyio.fail_after(10):
            await redelivered.wait()
    assert same(first[0], again[0])
    assert same(first[0], {"pair": [1, 2], "n": 2**70 + 1, "f": 1e23})


class Point(BaseModel):
    x: float
    tags: list[str] = []


async def test_a_typed_runtime_stores_the_model_and_reads_it_back_equal(config: Config) -> None:
    async with AgentMessaging[Point](config) as am:
        await setup(am, "alice", "bob")
        await am.one_way.send("alice", "bob", Point(x=1e23, tags=["a"]))
        [message] = await am.conversation.get_unread_messages("bob")
        assert message.payload == Point(x=1e23, tags=["a"])
        assert type(message.payload.x) is float
        with pytest.raises(InvalidMessage, match=r"message\.x is nan"):
            await am.one_way.send("alice", "bob", Point(x=math.nan))


# ------------------------------------------------------------------ refusals name the field and the path


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ({"items": [0, 1, 2, {"text": "a\x00b"}]}, r"message\.items\[3\]\.text contains a NUL"),
        ({"items": [{"text": "lone \ud800"}]}, r"message\.items\[0\]\.text contains a lone surrogate"),
        ({"key\x00": 1}, r"the key message\['key\\x00'\] contains a NUL"),
        ({"n": math.nan}, r"message\.n is nan"),
        ([math.inf], r"message\[0\] is inf"),
        ({"n": 10**4001}, r"message\.n is an integer of more than 4000 digits"),
        ({"when": object()}, r"message\.when is of type object"),
    ],
)
async def test_unstorable_payloads_are_refused_naming_the_path(am: AM, payload: Any, words: str) -> None:
    await setup(am, "alice", "bob")
    before = await table_counts(am)
    with pytest.raises(InvalidMessage, match=words):
        await am.one_way.send("alice", "bob", payload)
    with pytest.raises(InvalidMessage, match=words):
        await am.conversation.send("alice", "bob", payload)
    assert await table_counts(am) == before


async def test_nesting_is_bounded(am: AM) -> None:
    await setup(am, "alice", "bob")

    def nest(levels: int) -> Any:
        value: Any = "bottom"
        for _ in range(levels):
            value = [value]
        return value

    await am.one_way.send("alice", "bob", nest(MAX_DEPTH))
    for levels in (MAX_DEPTH + 1, 5_000):
        with pytest.raises(InvalidMessage, match=f"nested deeper than {MAX_DEPTH}"):
            await am.one_way.send("alice", "bob", nest(levels))
        with pytest.raises(InvalidArgument, match=f"nested deeper than {MAX_DEPTH}"):
            await am.one_way.send("alice", "bob", "x", metadata={"deep": nest(levels)})
    # brackets inside strings are no nesting
    await am.one_way.send("alice", "bob", {"text": "[" * 500 + "{" * 500})


async def test_an_oversized_payload_names_the_setting_to_raise(dsn: str) -> None:
    config = Config(dsn=dsn, pool_size=4, connect_timeout=5, max_message_bytes=1000)
    async with AgentMessaging[Any](config) as am:
        await setup(am, "alice", "bob")
        with pytest.raises(InvalidMessage, match="max_message_bytes") as caught:
            await am.one_way.send("alice", "bob", "x" * 2000)
        assert "AGENT_MESSAGING_MAX_MESSAGE_BYTES" in str(caught.value)


async def test_names_and_metadata_are_bounded(am: AM) -> None:
    with pytest.raises(InvalidArgument, match="1001 characters"):
        await am.register_organization("acme", "x" * (MAX_NAME_LENGTH + 1))
    with pytest.raises(InvalidArgument, match=r"metadata is \d+ bytes as JSON"):
        await am.register_organization("acme", "Acme", metadata={"blob": "x" * MAX_METADATA_BYTES})
    with pytest.raises(InvalidArgument, match="lone surrogate"):
        await am.register_organization("acme\ud800", "Acme")
    with pytest.raises(InvalidArgument, match="lone surrogate"):
        await am.register_organization("acme", "Acme \udfff")
    with pytest.raises(InvalidArgument, match=r"metadata\.tags\[1\] contains a NUL"):
        await am.register_organization("acme", "Acme", metadata={"tags": ["ok", "\x00"]})
    assert await table_counts(am) == dict.fromkeys(await table_counts(am), 0)


# ------------------------------------------------------------------ bounds on numbers


async def test_timeouts_and_turn_durations_are_at_most_30_days(am: AM) -> None:
    await setup(am, "alice", "bob")
    for bad in (1e300, 2**63, 30 * 24 * 3600 + 1, math.inf, -1, 0):
        with pytest.raises(InvalidArgument, match="30 days"):
            await am.conversation.send_and_wait("alice", "bob", "hi", timeout=bad)
        with pytest.raises(InvalidArgument, match="30 days"):
            await am.conversation.wait_for_message("bob", timeout=bad)
        with pytest.raises(InvalidArgument, match="turn_duration"):
            await am.meeting.create_meeting("alice", ["bob"], turn_duration=bad)
    assert await table_counts(am) == {**dict.fromkeys(await table_counts(am), 0), "organizations": 1, "agents": 2}
    mid = await am.meeting.create_meeting("alice", ["bob"], turn_duration=30 * 24 * 3600)
    assert (await am.meeting.get_meeting_status(mid)).turn_duration == 30 * 24 * 3600


async def test_cursors_are_bigints(am: AM) -> None:
    await setup(am, "alice", "bob")
    await am.one_way.send("alice", "bob", "hi")
    assert [m.payload for m in await am.one_way.get_received_messages("bob", before=MAX_CURSOR)] == ["hi"]
    assert await am.conversation.get_messages_from_agent("bob", "alice", after_seq=MAX_CURSOR) == []
    mid = await am.meeting.create_meeting("alice", ["bob"])
    assert await am.meeting.get_meeting_history(mid, after_seq=MAX_CURSOR) == []
    for bad in (2**63, 2**64, -1, 1.5, "3", True):
        with pytest.raises(InvalidArgument, match="before"):
            await am.one_way.get_received_messages("bob", before=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="after_seq"):
            await am.conversation.get_conversation_history("alice", "bob", after_seq=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="after_seq"):
            await am.meeting.get_meeting_history(mid, after_seq=bad)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="dead_letter_id"):
            await am.retry_dead_letter(bad)  # type: ignore[arg-type]


async def test_reply_takes_a_request_id_spelled_as_a_string(am: AM) -> None:
    await setup(am, "alice", "bob")
    with pytest.raises(TimeoutError):
        await am.conversation.send_and_wait("alice", "bob", "question", timeout=0.05)
    [request] = await am.conversation.get_unread_messages("bob")
    await am.conversation.reply("bob", "alice", "answer", request_id=str(request.id))
    [reply] = await am.conversation.get_unread_messages("alice")
    assert (reply.payload, reply.in_reply_to) == ("answer", request.id)


# ------------------------------------------------------------------ failures after the door


async def test_a_hosted_reply_that_cannot_be_stored_reaches_the_caller_at_once(am: AM) -> None:
    await setup(am, "alice", "bob")

    @am.register_handler("bob")
    async def bob(message: Any, ctx: MessageContext[Any]) -> Any:
        return {"answer": "a\x00b"}

    with anyio.fail_after(10):  # well before the call's own timeout
        with pytest.raises(HandlerError, match=r"reply\.answer contains a NUL") as caught:
            await am.conversation.send_and_wait("alice", "bob", "question", timeout=60)
    # the request is answered with that error, durably: a caller in any process would get it
    assert caught.value.error_type == "InvalidMessage"


async def test_a_handler_error_with_a_nul_is_dead_lettered(dsn: str) -> None:
    config = Config(dsn=dsn, pool_size=4, connect_timeout=5, max_attempts=1)
    async with AgentMessaging[Any](config) as am:
        await setup(am, "alice", "bob")

        @am.register_handler("bob")
        async def bob(message: Any, ctx: MessageContext[Any]) -> None:
            raise ValueError("bad\x00byte \ud800")

        await am.one_way.send("alice", "bob", "hi")
        with anyio.fail_after(10):
            while not await am.get_dead_letters("bob"):  # noqa: ASYNC110 - the agent actor writes it
                await anyio.sleep(0.01)
        [letter] = await am.get_dead_letters("bob")
        assert "bad\\x00byte" in letter.error


async def test_a_meeting_command_the_database_refuses_fails_only_its_caller(am: AM) -> None:
    await setup(am, "host", "a", "b")
    mid = await am.meeting.create_meeting("host", ["a", "b"])
    results: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        turns = attend_all(tg, am, mid, "a", "b")
        with anyio.fail_after(10):
            while len((await am.meeting.get_meeting_status(mid)).participants) < 3 or any(  # noqa: ASYNC110
                p.status.value != "present" for p in (await am.meeting.get_meeting_status(mid)).participants
            ):
                await anyio.sleep(0.01)

        async def host_starts() -> None:
            results["host"] = await am.meeting.start_meeting("host", mid, "hello", next_speaker="a")

        tg.start_soon(host_starts)
        with anyio.fail_after(10):
            while "a" not in turns:  # noqa: ASYNC110 - a's attend returns when it gets the floor
                await anyio.sleep(0.01)
        handle = internals(am).runners.handles[mid]
        # past the door: a payload whose JSON text the database refuses
        bad = Command[Any](Op.SPEAK, "a", "x", '"x\\u0000y"')
        with pytest.raises(InvalidMessage, match="database refused"):
            await internals(am).runners.submit(handle, bad)
        status = await am.meeting.get_meeting_status(mid)
        assert (status.state.value, status.floor_holder) == ("active", "a")  # nothing changed
        assert "b" not in turns  # b still waits, untouched
        with pytest.raises(NotYourTurn):
            await am.meeting.speak("b", mid, "not yet")

        async def a_speaks() -> None:
            results["a"] = await am.meeting.speak("a", mid, "fine now", next_speaker="host")

        tg.start_soon(a_speaks)
        with anyio.fail_after(10):
            while "host" not in results:  # noqa: ASYNC110 - the host's start returns when it has the floor again
                await anyio.sleep(0.01)
        await am.meeting.end_meeting("host", mid)
    assert results["host"].agent == "host"
    assert results["a"].ended
    history = await am.meeting.get_meeting_history(mid)
    assert [e.message for e in history if e.type is MeetingEventType.AGENT_SPOKE] == ["hello", "fine now"]


async def test_end_meeting_with_a_nul_is_refused_and_the_meeting_goes_on(am: AM) -> None:
    await setup(am, "host", "guest")
    mid = await am.meeting.create_meeting("host", ["guest"])
    with anyio.fail_after(10):
        with pytest.raises(InvalidMessage, match="ending message contains a NUL"):
            await am.meeting.end_meeting("host", mid, message="a\x00b")
    assert (await am.meeting.get_meeting_status(mid)).state.value == "created"
    await am.meeting.end_meeting("host", mid, message="bye")
    assert (await am.meeting.get_meeting_status(mid)).state.value == "ended"


async def test_meeting_ids_and_request_ids_refuse_junk_alike(am: AM) -> None:
    await setup(am, "alice", "bob")
    for junk in ("nope", "\ud800", 42, b"x" * 16, str(uuid.uuid4()) + "x", object()):
        with pytest.raises(InvalidArgument):
            await am.meeting.get_meeting_status(junk)  # type: ignore[arg-type]
        with pytest.raises(InvalidArgument, match="request_id"):
            await am.conversation.reply("bob", "alice", "x", request_id=junk)  # type: ignore[arg-type]
    with pytest.raises(InvalidOperation):
        await am.conversation.reply("bob", "alice", "x", request_id=str(uuid.uuid4()))


async def test_a_meeting_actor_that_dies_of_a_driver_error_fails_its_callers_typed(dsn: str) -> None:
    config = Config(dsn=dsn, pool_size=4, agent_max_restarts=0)  # the meeting supervisor gives up at once
    async with AgentMessaging[str](config) as am:
        await setup(am, "h", "p1", "p2")
        mid = await am.meeting.create_meeting("h", ["p1", "p2"], turn_duration=0.2)
        errors: dict[str, BaseException] = {}

        async def call(name: str, fn: Any, *args: Any) -> None:
            try:
                await fn(*args)
            except Exception as exc:
                errors[name] = exc

        async with anyio.create_task_group() as tg:
            for name in ("p1", "p2"):
                tg.start_soon(call, name, am.meeting.attend_meeting, name, mid)
            with anyio.fail_after(10):
                while any(  # noqa: ASYNC110 - the attends are in the meeting actor's hands
                    p.status.value != "present" for p in (await am.meeting.get_meeting_status(mid)).participants
                ):
                    await anyio.sleep(0.01)
            # the database refuses the timeout's history row: the actor cannot go on and dies of a driver error
            await internals(am).database.execute(
                "ALTER TABLE meeting_events ADD CONSTRAINT no_timeouts CHECK (type <> 'agent_timed_out') NOT VALID"
            )
            tg.start_soon(call, "h", am.meeting.start_meeting, "h", mid, "opening")
        assert set(errors) == {"h", "p2"}  # p1 got its turn; the others were still waiting when it died
        for error in errors.values():
            assert isinstance(error, AgentMessagingError)
            assert "failed" in str(error)
