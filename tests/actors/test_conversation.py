"""Conversations: calls (send_and_wait, reply, end, deadlocks) and chats (send, unread, wait_for_message)."""

from __future__ import annotations

import contextlib
import itertools
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest

from agent_messaging import AgentMessaging, Config
from agent_messaging._app import internals
from agent_messaging.errors import (
    AgentNotFound,
    AlreadyExists,
    ConversationEnded,
    CrossOrganization,
    DeadlockDetected,
    InvalidArgument,
    InvalidOperation,
    ReplyTimeout,
    WaitTimeout,
)
from agent_messaging.models import MessageKind
from tests._helpers import eventually

AM = AgentMessaging[Any]


async def until(check: Callable[[], Awaitable[bool]], limit: float = 10) -> None:
    """Wait (polling) until ``check()`` is true."""
    with anyio.fail_after(limit):
        for _ in itertools.count():
            if await check():
                return
            await anyio.sleep(0.01)


async def hosted(am: AM, name: str) -> bool:
    """Whether ``name`` is hosted by ``am``."""
    return name in am.conversation.host.hosted


async def requests_to_bob(am: AM, n: int) -> bool:
    """Whether ``n`` requests from alice reached bob."""
    return len(await am.conversation.get_messages_from_agent("bob", "alice")) >= n


async def setup(am: AM, *names: str, org: str = "acme") -> None:
    """Register the organization (once) and the agents."""
    with contextlib.suppress(AlreadyExists):
        await am.register_organization(org, org.title())
    for name in names:
        await am.register_agent(name, org, name.title())


async def echo(message: Any, ctx: Any) -> Any:
    """A handler that answers every call at once."""
    return {"echo": message, "from": ctx.agent}


async def test_send_and_wait_gets_the_handler_return_value(am: AM) -> None:
    await setup(am, "alice", "bob")
    am.register_handler("bob")(echo)
    with anyio.fail_after(10):
        assert await am.conversation.send_and_wait("alice", "bob", "hi") == {"echo": "hi", "from": "bob"}
        assert await am.conversation.send_and_wait("alice", "bob", "again") == {"echo": "again", "from": "bob"}
    history = await am.conversation.get_conversation_history("alice", "bob")
    assert [m.kind for m in history] == [MessageKind.REQUEST, MessageKind.REPLY] * 2
    assert history[1].in_reply_to == history[0].id
    assert history[3].in_reply_to == history[2].id
    assert len({m.conversation_id for m in history}) == 1
    assert [m.seq for m in history] == sorted(m.seq for m in history)
    # the consumed replies are not unread for alice
    assert await am.conversation.get_unread_messages("alice") == []
    rows = await internals(am).database.fetch("SELECT replied_at FROM messages WHERE kind = 'request'")
    assert all(r["replied_at"] is not None for r in rows)


async def test_reply_from_another_task_matches_by_id(am: AM) -> None:
    await setup(am, "alice", "bob")
    results: dict[str, Any] = {}

    async def call(text: str) -> None:
        results[text] = await am.conversation.send_and_wait("alice", "bob", text, timeout=10)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call, "first")
        await until(lambda: requests_to_bob(am, 1))
        tg.start_soon(call, "second")
        await until(lambda: requests_to_bob(am, 2))
        requests = await am.conversation.get_messages_from_agent("bob", "alice")
        # answer the second explicitly by id, then the oldest unanswered (the first)
        await am.conversation.reply("bob", "alice", "answer-2", request_id=requests[1].id)
        await am.conversation.reply("bob", "alice", "answer-1")
    assert results == {"first": "answer-1", "second": "answer-2"}
    with pytest.raises(InvalidOperation, match="no unanswered request"):
        await am.conversation.reply("bob", "alice", "nothing left")
    with pytest.raises(InvalidOperation, match="already answered"):
        await am.conversation.reply("bob", "alice", "twice", request_id=requests[0].id)
    with pytest.raises(InvalidOperation, match="not a request"):
        await am.conversation.reply("bob", "alice", "unknown", request_id=uuid.uuid4())
    with pytest.raises(InvalidArgument, match="request_id must be a UUID"):
        await am.conversation.reply("bob", "alice", "bad", request_id="nope")
    with pytest.raises(InvalidArgument, match="request_id must be a UUID"):
        await am.conversation.reply("bob", "alice", "bad", request_id=7)  # type: ignore[arg-type]
    with pytest.raises(InvalidOperation, match="not a request"):  # a UUID spelled as a str is taken
        await am.conversation.reply("bob", "alice", "unknown", request_id=str(uuid.uuid4()))


async def test_reply_from_a_handler_of_another_agent(am: AM) -> None:
    await setup(am, "alice", "bob", "carol")

    @am.register_handler("carol")
    async def carol(message: Any, ctx: Any) -> None:
        await am.conversation.reply("bob", "alice", f"carol answers for bob: {message}")

    async def relay() -> None:
        await am.one_way.send("dispatcher", "carol", "ping")

    await am.register_agent("dispatcher", "acme", "Dispatcher")
    async with anyio.create_task_group() as tg:

        async def later() -> None:
            await until(lambda: requests_to_bob(am, 1))
            await relay()

        tg.start_soon(later)
        assert await am.conversation.send_and_wait("alice", "bob", "q", timeout=10) == "carol answers for bob: ping"


async def test_reply_from_a_second_runtime_on_the_same_database(am: AM, config: Config) -> None:
    await setup(am, "alice", "bob")
    async with AgentMessaging[Any](config) as other:

        @other.register_handler("bob")
        async def bob(message: Any, ctx: Any) -> Any:
            return f"other process: {message}"

        with anyio.fail_after(15):
            assert await am.conversation.send_and_wait("alice", "bob", "x") == "other process: x"
    async with AgentMessaging[Any](config) as third, anyio.create_task_group() as tg:

        async def answer() -> None:
            with anyio.fail_after(10):
                while True:
                    try:
                        await third.conversation.reply("bob", "alice", "explicit from elsewhere")
                        return
                    except InvalidOperation:
                        await anyio.sleep(0.02)

        tg.start_soon(answer)
        with anyio.fail_after(15):
            assert await am.conversation.send_and_wait("alice", "bob", "y") == "explicit from elsewhere"
    assert await am.conversation.get_unread_messages("alice") == []


async def test_timeout_then_late_reply_lands_in_unread(am: AM) -> None:
    await setup(am, "alice", "bob")
    with pytest.raises(ReplyTimeout) as info:
        await am.conversation.send_and_wait("alice", "bob", "slow?", timeout=0.2)
    err = info.value
    assert isinstance(err, TimeoutError)
    assert err.sender == "alice"
    assert err.recipient == "bob"
    assert str(err.request_id) in str(err)
    assert not err.hosted  # nobody hosts bob: the error says so, and what to do
    assert "no running runtime hosts 'bob'" in str(err)
    row = await internals(am).database.fetch_row(
        "SELECT timed_out_at, reply_deadline FROM messages WHERE id = $1", [err.request_id]
    )
    assert row is not None
    assert row["reply_deadline"] is not None

    async def timed_out() -> bool:
        sql = "SELECT timed_out_at FROM messages WHERE id = $1"
        row = await internals(am).database.fetch_row(sql, [err.request_id])
        return row is not None and row["timed_out_at"] is not None

    await until(timed_out)
    reply_id = await am.conversation.reply("bob", "alice", "late")
    unread = await am.conversation.get_unread_messages("alice")
    assert [(m.id, m.payload, m.in_reply_to, m.kind) for m in unread] == [
        (reply_id, "late", err.request_id, MessageKind.REPLY)
    ]


async def test_cancelled_caller_leaves_request_answerable(am: AM) -> None:
    await setup(am, "alice", "bob")
    with anyio.move_on_after(0.2) as scope:
        await am.conversation.send_and_wait("alice", "bob", "cancel me", timeout=None)
    assert scope.cancelled_caught
    await am.conversation.reply("bob", "alice", "answered later")
    unread = await am.conversation.get_unread_messages("alice")
    assert [m.payload for m in unread] == ["answered later"]
    assert internals(am).calls.by_id == {}


async def test_end_conversation_wakes_waiters_and_next_message_starts_a_new_session(am: AM) -> None:
    await setup(am, "alice", "bob")
    errors: list[BaseException] = []

    async def call() -> None:
        try:
            await am.conversation.send_and_wait("alice", "bob", "are you there?", timeout=10)
        except ConversationEnded as exc:
            errors.append(exc)

    async with anyio.create_task_group() as tg:
        tg.start_soon(call)
        tg.start_soon(call)
        await until(lambda: requests_to_bob(am, 2))
        await am.conversation.end_conversation("bob", "alice", message="goodbye")
    assert len(errors) == 2
    assert all(isinstance(e, ConversationEnded) for e in errors)
    assert all(getattr(e, "message", None) == "goodbye" for e in errors)
    first = (await am.conversation.get_conversation_history("alice", "bob"))[0].conversation_id
    with pytest.raises(InvalidOperation, match="no active conversation"):
        await am.conversation.end_conversation("alice", "bob")
    await am.conversation.send("alice", "bob", "new day")
    history = await am.conversation.get_conversation_history("alice", "bob")
    assert [m.kind for m in history] == [MessageKind.REQUEST, MessageKind.REQUEST, MessageKind.END, MessageKind.CHAT]
    assert history[2].payload == "goodbye"
    assert history[2].conversation_id == first
    assert history[3].conversation_id not in (None, first)
    rows = await internals(am).database.fetch("SELECT status FROM conversations ORDER BY created_at")
    assert [r["status"] for r in rows] == ["ended", "active"]


async def test_deadlock_two_cycle_is_detected_and_named(am: AM) -> None:
    await setup(am, "alice", "bob", "user")
    seen: list[DeadlockDetected] = []

    @am.register_handler("alice")
    async def alice(message: Any, ctx: Any) -> Any:
        if ctx.kind is MessageKind.REQUEST and ctx.sender == "user":
            return await am.conversation.send_and_wait("alice", "bob", "help?", timeout=10)
        return None

    @am.register_handler("bob")
    async def bob(message: Any, ctx: Any) -> Any:
        try:
            return await am.conversation.send_and_wait("bob", "alice", "what do you mean?", timeout=10)
        except DeadlockDetected as exc:
            seen.append(exc)
            return "bob gives up"

    with anyio.fail_after(5):
        assert await am.conversation.send_and_wait("user", "alice", "start") == "bob gives up"
    assert seen[0].cycle == ["bob", "alice", "bob"]
    assert "bob -> alice -> bob" in str(seen[0])


async def test_deadlock_three_cycle_is_detected_and_named(am: AM) -> None:
    await setup(am, "a", "b", "c", "user")
    seen: list[DeadlockDetected] = []
    nxt = {"a": "b", "b": "c", "c": "a"}

    async def handler(message: Any, ctx: Any) -> Any:
        if ctx.kind is not MessageKind.REQUEST:
            return None
        try:
            return await am.conversation.send_and_wait(ctx.agent, nxt[ctx.agent], f"{ctx.agent} asks", timeout=10)
        except DeadlockDetected as exc:
            seen.append(exc)
            return f"{ctx.agent} stops"

    am.register_handler("a", "b", "c")(handler)
    with anyio.fail_after(5):
        assert await am.conversation.send_and_wait("user", "a", "go") == "c stops"
    assert seen[0].cycle == ["c", "a", "b", "c"]


async def test_each_call_times_out_at_its_own_deadline(am: AM) -> None:
    """The runtime keeps the deadlines of all waiting calls together: a short one made after a long one
    still ends on time, one pending while many calls come and go (their entries are let go) ends at its
    own, and the long one waits on and still gets its reply."""
    await setup(am, "alice", "bob")
    await setup(am, "carol", "dave")
    await setup(am, "erin", "frank")

    @am.register_handler("dave")
    async def echo(message: Any, ctx: Any) -> Any:
        return message

    outcome: dict[str, Any] = {}

    async def call(name: str, sender: str, recipient: str, limit: float) -> None:
        try:
            outcome[name] = await am.conversation.send_and_wait(sender, recipient, name, timeout=limit)
        except ReplyTimeout as exc:
            outcome[name] = exc

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "long", "alice", "bob", 120)
            await eventually(lambda: len(internals(am).calls.by_id) == 1)
            for timeout in (0.3, 0.1):  # each sooner than every deadline before it
                with anyio.fail_after(10), pytest.raises(ReplyTimeout):
                    await am.conversation.send_and_wait("erin", "frank", "short", timeout=timeout)
            tg.start_soon(call, "pending", "erin", "frank", 5)
            await eventually(lambda: len(internals(am).calls.by_id) == 2)
            for i in range(300):  # calls that end long before their deadlines
                assert await am.conversation.send_and_wait("carol", "dave", i, timeout=60) == i
            with anyio.fail_after(10), pytest.raises(ReplyTimeout):
                await am.conversation.send_and_wait("erin", "frank", "short again", timeout=0.2)
            await eventually(lambda: "pending" in outcome, within=15)
            await am.conversation.reply("bob", "alice", "at last")
    assert isinstance(outcome["pending"], ReplyTimeout)
    assert outcome["long"] == "at last"


async def test_a_call_that_outlives_its_runtime_still_times_out(config: Config) -> None:
    """A caller in a task of its own, still waiting when the runtime closes: nothing can answer it any more,
    and it gets ReplyTimeout at its deadline, not a wait without end."""
    outcome: list[BaseException] = []

    async def call(am: AM) -> None:
        try:
            await am.conversation.send_and_wait("alice", "bob", "hi", timeout=1)
        except ReplyTimeout as exc:
            outcome.append(exc)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            async with AgentMessaging[Any](config) as am:
                await setup(am, "alice", "bob")
                tg.start_soon(call, am)
                await eventually(lambda: len(internals(am).calls.by_id) == 1)
            await eventually(lambda: bool(outcome))
    assert isinstance(outcome[0], ReplyTimeout)


async def test_calls_outside_handlers_never_count_as_blocking(am: AM) -> None:
    await setup(am, "alice", "bob")

    @am.register_handler("bob")
    async def bob(message: Any, ctx: Any) -> Any:
        if message == "call back":
            # alice is waiting on bob from a script, not from her handler: no deadlock
            with pytest.raises(ReplyTimeout):
                await am.conversation.send_and_wait("bob", "alice", "question", timeout=0.2)
            return "no deadlock"
        return None

    with anyio.fail_after(5):
        assert await am.conversation.send_and_wait("alice", "bob", "call back") == "no deadlock"


async def test_bad_input_raises_typed_errors_and_writes_nothing(am: AM) -> None:
    await setup(am, "alice", "bob")
    await setup(am, "mallory", org="evil")
    conv = am.conversation
    with pytest.raises(InvalidOperation, match="itself"):
        await conv.send_and_wait("alice", "alice", "me")
    with pytest.raises(InvalidOperation, match="itself"):
        await conv.send("alice", "alice", "me")
    with pytest.raises(AgentNotFound):
        await conv.send_and_wait("alice", "nobody", "x")
    with pytest.raises(CrossOrganization):
        await conv.send_and_wait("alice", "mallory", "x")
    with pytest.raises(CrossOrganization):
        await conv.send("alice", "mallory", "x")
    with pytest.raises(InvalidArgument):
        await conv.send_and_wait("alice", "bob", "x", timeout=-1)
    with pytest.raises(InvalidArgument):
        await conv.send_and_wait("", "bob", "x")
    with pytest.raises(InvalidArgument):
        await conv.send("alice", "bob", "x", metadata={"bad": float("nan")})
    with pytest.raises(InvalidArgument):
        await conv.get_unread_messages("alice", limit=0)
    with pytest.raises(InvalidArgument):
        await conv.get_conversation_history("alice", "bob", after_seq=-3)
    with pytest.raises(AgentNotFound):
        await conv.wait_for_message("ghost", timeout=0.1)
    with pytest.raises(InvalidOperation, match="no active conversation"):
        await conv.end_conversation("alice", "bob")
    with pytest.raises(InvalidOperation, match="no running handler"):
        await conv.resume_agent_handler("alice")
    rows = await internals(am).database.fetch(
        "SELECT (SELECT count(*) FROM messages) AS m, (SELECT count(*) FROM conversations) AS c"
    )
    assert rows == [{"m": 0, "c": 0}]


async def test_invalid_payload_is_refused_before_writing(config: Config) -> None:
    async with AgentMessaging[int](config) as am:
        await setup(am, "alice", "bob")
        from agent_messaging.errors import InvalidMessage

        with pytest.raises(InvalidMessage):
            await am.conversation.send_and_wait("alice", "bob", "not an int")  # type: ignore[arg-type]
        with pytest.raises(InvalidMessage):
            await am.conversation.send("alice", "bob", "nope")  # type: ignore[arg-type]
        assert await internals(am).database.fetch("SELECT id FROM messages") == []


async def test_send_unread_and_queries(am: AM) -> None:
    await setup(am, "alice", "bob", "carol")
    ids = [await am.conversation.send("alice", "bob", f"m{i}", metadata={"i": i}) for i in range(3)]
    await am.conversation.send("carol", "bob", "from carol")
    from_alice = await am.conversation.get_messages_from_agent("bob", "alice")
    assert [m.id for m in from_alice] == ids
    assert [m.metadata["i"] for m in from_alice] == [0, 1, 2]
    assert all(m.kind is MessageKind.CHAT for m in from_alice)
    page = await am.conversation.get_messages_from_agent("bob", "alice", limit=2)
    rest = await am.conversation.get_messages_from_agent("bob", "alice", after_seq=page[-1].seq)
    assert [m.id for m in page + rest] == ids
    claimed = await am.conversation.get_unread_messages("bob", from_agent="alice", limit=2)
    assert [m.payload for m in claimed] == ["m0", "m1"]
    assert all(m.is_read for m in claimed)
    unread_only = await am.conversation.get_messages_from_agent("bob", "alice", include_read=False)
    assert [m.payload for m in unread_only] == ["m2"]
    assert [m.payload for m in await am.conversation.get_unread_messages("bob")] == ["m2", "from carol"]
    assert await am.conversation.get_unread_messages("bob") == []
    history = await am.conversation.get_conversation_history("bob", "alice", limit=2)
    more = await am.conversation.get_conversation_history("alice", "bob", after_seq=history[-1].seq)
    assert [m.payload for m in history + more] == ["m0", "m1", "m2"]


async def test_recent_messages_of_a_pair_newest_first_every_kind(am: AM) -> None:
    await setup(am, "alice", "bob", "carol")
    am.register_handler("bob")(echo)
    note = (await am.one_way.send("alice", "bob", "a note"))[0]
    await am.one_way.send("alice", "carol", "not between alice and bob")
    with anyio.fail_after(10):
        assert await am.conversation.send_and_wait("alice", "bob", "a call") == {"echo": "a call", "from": "bob"}
    line = await am.conversation.send("bob", "alice", "a chat line")
    await am.conversation.send("carol", "bob", "nor this one")

    recent = await am.conversation.get_recent_messages("bob", "alice")  # either order of the pair
    assert [(m.kind, m.sender, m.payload) for m in recent] == [
        (MessageKind.CHAT, "bob", "a chat line"),
        (MessageKind.REPLY, "bob", {"echo": "a call", "from": "bob"}),
        (MessageKind.REQUEST, "alice", "a call"),
        (MessageKind.ONE_WAY, "alice", "a note"),
    ]
    assert recent[0].id == line
    assert recent[-1].id == note
    # the last two; then page back from the last one's id (a str id works too); nothing is claimed
    first = await am.conversation.get_recent_messages("alice", "bob", limit=2)
    older = await am.conversation.get_recent_messages("alice", "bob", before=str(first[-1].id))
    assert [m.id for m in first + older] == [m.id for m in recent]
    assert await am.conversation.get_recent_messages("alice", "bob", before=note) == []
    assert await am.conversation.get_recent_messages("alice", "bob", before=uuid.uuid4()) == []
    assert [m.payload for m in await am.conversation.get_unread_messages("alice")] == ["a chat line"]
    with pytest.raises(InvalidArgument, match="before must be a UUID"):
        await am.conversation.get_recent_messages("alice", "bob", before="yesterday")
    with pytest.raises(InvalidArgument, match="limit"):
        await am.conversation.get_recent_messages("alice", "bob", limit=0)
    with pytest.raises(AgentNotFound):
        await am.conversation.get_recent_messages("alice", "nobody")


async def test_ten_concurrent_readers_split_the_queue(am: AM) -> None:
    await setup(am, "alice", "bob")
    sent = set()
    for i in range(200):
        sent.add(await am.conversation.send("alice", "bob", i))
    got: list[list[Any]] = []

    async def reader() -> None:
        mine = []
        while batch := await am.conversation.get_unread_messages("bob", limit=7):
            mine.extend(batch)
        got.append(mine)

    async with anyio.create_task_group() as tg:
        for _ in range(10):
            tg.start_soon(reader)
    ids = [m.id for batch in got for m in batch]
    assert len(ids) == len(set(ids)) == 200
    assert set(ids) == sent


async def test_wait_for_message_local_and_timeout(am: AM) -> None:
    await setup(am, "alice", "bob", "carol")
    with pytest.raises(WaitTimeout) as info:
        await am.conversation.wait_for_message("bob", timeout=0.1)
    assert isinstance(info.value, TimeoutError)
    await am.conversation.send("carol", "bob", "already there")
    assert (await am.conversation.wait_for_message("bob", timeout=1)).payload == "already there"
    async with anyio.create_task_group() as tg:

        async def later() -> None:
            await anyio.sleep(0.1)
            await am.conversation.send("carol", "bob", "not this one")
            await am.conversation.send("alice", "bob", "this one")

        tg.start_soon(later)
        with anyio.fail_after(5):
            got = await am.conversation.wait_for_message("bob", from_agent="alice")
    assert (got.sender, got.payload) == ("alice", "this one")
    assert [m.payload for m in await am.conversation.get_unread_messages("bob")] == ["not this one"]


async def test_wait_for_message_across_instances_with_notify(config: Config) -> None:
    await _across_instances(config, notify=True)


async def test_wait_for_message_across_instances_without_notify(config: Config) -> None:
    await _across_instances(config, notify=False)


async def _across_instances(config: Config, *, notify: bool) -> None:
    cfg = config.model_copy(update={"notify": notify, "poll_interval": 0.2})
    async with AgentMessaging[Any](cfg) as waiter_side, AgentMessaging[Any](cfg) as sender_side:
        await setup(waiter_side, "alice", "bob")
        async with anyio.create_task_group() as tg:

            async def later() -> None:
                await anyio.sleep(0.3)
                await sender_side.conversation.send("alice", "bob", "across")

            tg.start_soon(later)
            start = anyio.current_time()
            with anyio.fail_after(5):
                got = await waiter_side.conversation.wait_for_message("bob", timeout=5)
            elapsed = anyio.current_time() - start
        assert got.payload == "across"
        assert elapsed < 1.5


async def test_resume_agent_handler_runs_unread_in_order(config: Config) -> None:
    from agent_messaging.actors.envelope import insert_write, new_envelope

    quiet = config.model_copy(update={"notify": False, "poll_interval": 60})
    async with AgentMessaging[Any](quiet) as am:
        await setup(am, "alice", "bob")
        seen: list[Any] = []

        @am.register_handler("bob")
        async def bob(message: Any, ctx: Any) -> None:
            seen.append(message)

        await until(lambda: hosted(am, "bob"))
        with pytest.raises(InvalidOperation, match="no running handler"):
            await am.conversation.resume_agent_handler("alice")
        # written behind the host's back (as another process would, with its NOTIFY lost)
        alice, bob_agent = await am.get_agent("alice"), await am.get_agent("bob")
        envs = [new_envelope(MessageKind.CHAT, alice, bob_agent, i, str(i)) for i in range(3)]
        await internals(am).services.writer.write([insert_write(e) for e in envs])
        with anyio.fail_after(10):
            assert await am.conversation.resume_agent_handler("bob") == 3
        assert seen == [0, 1, 2]
        assert await am.conversation.resume_agent_handler("bob") == 0


async def test_a_timeout_from_a_hosted_recipient_does_not_blame_hosting(am: AM) -> None:
    await setup(am, "alice", "bob")

    @am.register_handler("bob")
    async def bob(message: Any, ctx: Any) -> Any:
        await anyio.sleep(1)

    await until(lambda: hosted(am, "bob"))
    with pytest.raises(ReplyTimeout) as info:
        await am.conversation.send_and_wait("alice", "bob", "slow", timeout=0.2)
    assert info.value.hosted
    assert "no running runtime" not in str(info.value)


async def test_a_reply_from_another_runtime_reaches_the_waiting_call_not_the_handler(dsn: str) -> None:
    """A reply written by another process is unread when its NOTIFY wakes both the waiting call and the
    catch-up of the caller's hosted agent: the call gets it, the agent's handler never does."""
    seen: list[Any] = []
    here = AgentMessaging[Any](Config(dsn=dsn, pool_size=5, poll_interval=0.05, connect_timeout=5))
    there = AgentMessaging[Any](Config(dsn=dsn, pool_size=5, poll_interval=0.05, connect_timeout=5))

    @here.register_handler("bob")
    async def bob(message: Any, ctx: Any) -> Any:
        seen.append(message)
        return await here.conversation.send_and_wait("bob", "carol", message, timeout=10)

    @there.register_handler("carol")
    async def carol(message: Any, ctx: Any) -> Any:
        return f"carol read {message}"

    async with here, there:
        await setup(here, "alice", "bob", "carol")
        await until(lambda: hosted(here, "bob"))
        for n in range(30):
            assert await there.conversation.send_and_wait("alice", "bob", f"q{n}", timeout=10) == f"carol read q{n}"
        assert seen == [f"q{n}" for n in range(30)]
