"""One-way messages: sending, every error, queries, hosting, retries, dead letters, ordering, logging."""

from __future__ import annotations

import math
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import pytest
from pydantic import BaseModel
from structlog.testing import capture_logs

from agent_messaging import AgentMessaging, Config
from agent_messaging._app import internals
from agent_messaging.actors.agent import Agent, MessageContext
from agent_messaging.errors import (
    AgentNotFound,
    CrossOrganization,
    DeadLetterNotFound,
    InvalidArgument,
    InvalidMessage,
)
from agent_messaging.models import MessageKind
from tests._helpers import eventually


class Note(BaseModel):
    text: str
    n: int = 0


async def setup_agents(am: AgentMessaging[Any], *names: str, organization: str = "acme") -> None:
    """Register ``organization`` (if needed) and agents ``names`` in it."""
    try:
        await am.get_organization(organization)
    except LookupError:
        await am.register_organization(organization, organization.title())
    for name in names:
        await am.register_agent(name, organization, name.title())


async def message_count(am: AgentMessaging[Any]) -> int:
    return int(await internals(am).database.fetch_val("SELECT count(*) FROM messages"))


class Inbox:
    """A handler that records what it handled: ``(payload, ctx)`` per message."""

    def __init__(self) -> None:
        self.seen: list[tuple[Any, MessageContext[Any]]] = []

    async def __call__(self, message: Any, ctx: MessageContext[Any]) -> None:
        self.seen.append((message, ctx))

    @property
    def payloads(self) -> list[Any]:
        return [p for p, _ in self.seen]

    async def wait(self, count: int, within: float = 10) -> None:
        await eventually(lambda: len(self.seen) >= count, within)


# ---------------------------------------------------------------- sending


async def test_send_to_one_and_to_many(am: AgentMessaging[Any]) -> None:
    await setup_agents(am, "alice", "bob", "carol", "dave")
    [one] = await am.one_way.send("alice", "bob", {"hello": "bob"}, metadata={"trace": "t-1"})
    many = await am.one_way.send("alice", ["bob", "carol", "dave"], {"hello": "all"})
    assert isinstance(one, uuid.UUID)
    assert len(many) == 3
    assert len({one, *many}) == 4
    rows = await internals(am).database.fetch(
        "SELECT m.id, r.external_id AS recipient, s.external_id AS sender, m.kind, m.payload, m.metadata, m.read_at "
        "FROM messages m JOIN agents r ON r.id = m.recipient_id JOIN agents s ON s.id = m.sender_id ORDER BY m.seq"
    )
    assert [uuid.UUID(str(r["id"])) for r in rows] == [one, *many]
    assert [r["recipient"] for r in rows] == ["bob", "bob", "carol", "dave"]
    assert {r["sender"] for r in rows} == {"alice"}
    assert {r["kind"] for r in rows} == {"one_way"}
    assert rows[0]["metadata"] == {"trace": "t-1"}
    assert all(r["read_at"] is None for r in rows)


async def test_recipients_are_de_duplicated(am: AgentMessaging[Any]) -> None:
    await setup_agents(am, "alice", "bob", "carol")
    ids = await am.one_way.send("alice", ["bob", "carol", "bob", "carol", "bob"], "hi")
    assert len(ids) == 2
    assert [m.recipient for m in await am.one_way.get_sent_messages("alice")] == ["carol", "bob"]
    assert await message_count(am) == 2


async def test_all_recipients_commit_together_or_none(am: AgentMessaging[Any]) -> None:
    await setup_agents(am, "alice", "bob", "carol")
    await internals(am).services.directory.get("bob")  # cached: the row vanishing below is only seen by the database
    await internals(am).database.execute("DELETE FROM agents WHERE external_id = 'bob'")
    with pytest.raises(AgentNotFound, match="bob"):  # the database refuses a recipient that is not live
        await am.one_way.send("alice", ["carol", "bob"], "one row of two cannot be written")
    assert await message_count(am) == 0  # carol's row was not committed either
    await am.one_way.send("alice", "carol", "still works")
    assert await message_count(am) == 1


# ----------------------------------------------------------------- errors


async def test_unknown_sender_or_recipient(am: AgentMessaging[Any]) -> None:
    await setup_agents(am, "alice", "bob")
    with pytest.raises(AgentNotFound) as caught:
        await am.one_way.send("nobody", "bob", "hi")
    assert caught.value.external_id == "nobody"
    with pytest.raises(AgentNotFound) as caught:
        await am.one_way.send("alice", ["bob", "ghost"], "hi")
    assert caught.value.external_id == "ghost"
    with pytest.raises(AgentNotFound):
        await am.one_way.send("alice", "ghost", "hi")
    await am.deregister_agent("bob")
    with pytest.raises(AgentNotFound):
        await am.one_way.send("alice", "bob", "hi")
    assert await message_count(am) == 0


async def test_cross_organization(am: AgentMessaging[Any]) -> None:
    await setup_agents(am, "alice", "bob")
    await setup_agents(am, "mallory", organization="evil")
    with pytest.raises(CrossOrganization):
        await am.one_way.send("alice", ["bob", "mallory"], "hi")
    with pytest.raises(CrossOrganization):
        await am.one_way.send("mallory", "alice", "hi")
    assert await message_count(am) == 0


async def test_payload_must_be_a_valid_message(config: Config) -> None:
    async with AgentMessaging[Note](config) as am:
        await setup_agents(am, "alice", "bob")
        for bad in ({"text": 5, "n": "x"}, {"n": 1}, "just text", None):
            with pytest.raises(InvalidMessage):
                await am.one_way.send("alice", "bob", bad)  # type: ignore[arg-type]
        assert await message_count(am) == 0
        await am.one_way.send("alice", "bob", Note(text="ok"))
        await am.one_way.send("alice", "bob", {"text": "a dict is validated as a Note", "n": 2})  # type: ignore[arg-type]
        assert await message_count(am) == 2


async def test_payload_size_limit(dsn: str) -> None:
    config = Config(dsn=dsn, pool_size=4, connect_timeout=5, max_message_bytes=100)
    async with AgentMessaging[Any](config) as am:
        await setup_agents(am, "alice", "bob")
        with pytest.raises(InvalidMessage, match="100"):
            await am.one_way.send("alice", "bob", "x" * 200)
        with pytest.raises(InvalidMessage):
            await am.one_way.send("alice", "bob", {"k": "y" * 99})
        assert await message_count(am) == 0
        await am.one_way.send("alice", "bob", "x" * 50)
        assert await message_count(am) == 1


INVALID_SENDS: list[tuple[Any, Any, Any]] = [
    ("alice", [], None),
    ("alice", (), None),
    ("alice", "", None),
    ("alice", "   ", None),
    ("alice", ["bob", ""], None),
    ("alice", ["bob", 7], None),
    ("alice", "bob\x00", None),
    ("alice", "x" * 256, None),
    ("alice", b"bob", None),
    ("alice", None, None),
    ("", "bob", None),
    (None, "bob", None),
    ("alice", "bob", {"when": object()}),
    ("alice", "bob", {1: "not a str key"}),
    ("alice", "bob", {"nan": math.nan}),
    ("alice", "bob", ["not", "a", "mapping"]),
]


async def test_invalid_arguments(am: AgentMessaging[Any]) -> None:
    await setup_agents(am, "alice", "bob")
    for sender, recipients, metadata in INVALID_SENDS:
        with pytest.raises(InvalidArgument):
            await am.one_way.send(sender, recipients, "hi", metadata=metadata)
    assert await message_count(am) == 0


async def test_invalid_query_arguments(am: AgentMessaging[Any]) -> None:
    await setup_agents(am, "alice")
    for limit in (0, -1, 10_001, True, "5"):
        with pytest.raises(InvalidArgument):
            await am.one_way.get_sent_messages("alice", limit=limit)  # type: ignore[arg-type]
    for before in ("5", 1.5, True):
        with pytest.raises(InvalidArgument):
            await am.one_way.get_received_messages("alice", before=before)  # type: ignore[arg-type]
    with pytest.raises(AgentNotFound):
        await am.one_way.get_received_messages("ghost")
    with pytest.raises(InvalidArgument):
        await am.retry_dead_letter("1")  # type: ignore[arg-type]


# ---------------------------------------------------------------- queries


async def test_sent_and_received_messages_are_typed_and_paged(config: Config) -> None:
    async with AgentMessaging[Note](config) as am:
        await setup_agents(am, "alice", "bob", "carol")
        ids = []
        for i in range(7):
            ids += await am.one_way.send("alice", "bob", Note(text=f"note {i}", n=i), metadata={"i": i})
        await am.one_way.send("carol", "bob", Note(text="from carol"))
        await am.one_way.send("bob", "alice", Note(text="reply"))

        sent = await am.one_way.get_sent_messages("alice")
        assert [m.id for m in sent] == ids[::-1]  # newest first
        first = sent[-1]
        assert isinstance(first.payload, Note)
        assert first.payload == Note(text="note 0", n=0)
        assert (first.sender, first.recipient, first.kind) == ("alice", "bob", MessageKind.ONE_WAY)
        assert first.metadata == {"i": 0}
        assert first.read_at is None
        assert first.handled_at is None
        assert first.created_at is not None

        pages: list[uuid.UUID] = []
        before = None
        while True:
            page = await am.one_way.get_sent_messages("alice", limit=3, before=before)
            assert len(page) <= 3
            if not page:
                break
            pages += [m.id for m in page]
            before = page[-1].seq
        assert pages == ids[::-1]

        received = await am.one_way.get_received_messages("bob", limit=2)
        assert [m.payload.text for m in received] == ["from carol", "note 6"]
        older = await am.one_way.get_received_messages("bob", limit=100, before=received[-1].seq)
        assert [m.payload.n for m in older] == [5, 4, 3, 2, 1, 0]
        assert [m.payload.text for m in await am.one_way.get_received_messages("alice")] == ["reply"]
        assert await am.one_way.get_sent_messages("carol", before=1) == []


async def test_include_read_filters_handled_messages(am: AgentMessaging[Any]) -> None:
    await setup_agents(am, "alice", "bob")
    gate = anyio.Event()
    handled: list[str] = []

    @am.register_handler("bob")
    async def bob(message: str, ctx: MessageContext[Any]) -> None:
        if message == "block":
            await gate.wait()
        handled.append(message)

    for text in ("one", "two", "block", "four"):
        await am.one_way.send("alice", "bob", text)

    async def first_two_read() -> bool:
        return [m.payload for m in await am.one_way.get_received_messages("bob", include_read=False)] == [
            "four",
            "block",
        ]

    await eventually(first_two_read)
    everything = await am.one_way.get_received_messages("bob")
    assert [m.payload for m in everything] == ["four", "block", "two", "one"]
    assert all(m.read_at is not None and m.handled_at is not None for m in everything[2:])
    assert all(m.read_at is None for m in everything[:2])
    gate.set()
    await eventually(lambda: handled == ["one", "two", "block", "four"])

    async def all_read() -> bool:
        return await am.one_way.get_received_messages("bob", include_read=False) == []

    await eventually(all_read)


# ---------------------------------------------------------------- hosting


async def test_unhosted_recipient_keeps_the_message_until_hosted(am: AgentMessaging[Any]) -> None:
    await setup_agents(am, "alice", "bob")
    [mid] = await am.one_way.send("alice", "bob", "wait for me")
    await anyio.sleep(0.1)
    [unread] = await am.one_way.get_received_messages("bob", include_read=False)
    assert unread.id == mid
    assert unread.read_at is None
    assert unread.handled_at is None

    inbox = Inbox()
    am.register_handler("bob")(inbox)
    await inbox.wait(1)
    [(payload, ctx)] = inbox.seen
    assert payload == "wait for me"
    assert (ctx.message_id, ctx.sender, ctx.agent, ctx.attempt, ctx.kind) == (
        mid,
        "alice",
        "bob",
        1,
        MessageKind.ONE_WAY,
    )

    async def handled() -> bool:
        [m] = await am.one_way.get_received_messages("bob")
        return m.handled_at is not None

    await eventually(handled)


async def test_hosting_before_entering_the_context(config: Config) -> None:
    async with AgentMessaging[Any](config) as setup:
        await setup_agents(setup, "alice", "bob", "carol")

    inbox = Inbox()
    seen_by_class: list[tuple[str, str]] = []

    class Carol(Agent[Any]):
        async def on_message(self, message: Any, ctx: MessageContext[Any]) -> None:
            seen_by_class.append((ctx.sender, message))

    am = AgentMessaging[Any](config)
    am.register_handler("bob")(inbox)
    am.host("carol", Carol)
    async with am:
        await am.one_way.send("alice", ["bob", "carol"], "hello")
        await inbox.wait(1)
        await eventually(lambda: seen_by_class == [("alice", "hello")])
    assert inbox.payloads == ["hello"]


async def test_hosting_after_entering_the_context(am: AgentMessaging[Any]) -> None:
    await setup_agents(am, "alice", "bob", "carol")
    inbox = Inbox()
    instances: list[Any] = []

    class Carol(Agent[Any]):
        def __init__(self) -> None:
            instances.append(self)
            self.seen: list[Any] = []

        async def on_message(self, message: Any, ctx: MessageContext[Any]) -> None:
            self.seen.append(message)

    am.register_handler("bob")(inbox)
    am.host("carol", Carol)
    await am.one_way.send("alice", ["bob", "carol"], "hello")
    await inbox.wait(1)
    await eventually(lambda: len(instances) == 1 and instances[0].seen == ["hello"])


async def test_handler_registered_before_the_agent_exists(am: AgentMessaging[Any]) -> None:
    await setup_agents(am, "alice")
    inbox = Inbox()
    am.register_handler("bob")(inbox)
    await anyio.sleep(0.05)
    await am.register_agent("bob", "acme", "Bob")  # now hosted
    await am.one_way.send("alice", "bob", "hi bob")
    await inbox.wait(1)
    assert inbox.payloads == ["hi bob"]


async def test_handler_registered_before_opening_for_an_agent_registered_later(config: Config) -> None:
    inbox = Inbox()
    am = AgentMessaging[Any](config)
    am.register_handler("bob")(inbox)
    async with am:
        await setup_agents(am, "alice", "bob")
        await am.one_way.send("alice", "bob", "hi")
        await inbox.wait(1)
    assert inbox.payloads == ["hi"]


# ------------------------------------------------- crashes and dead letters


async def test_crash_retry_dead_letter_and_retry_dead_letter(dsn: str) -> None:
    config = Config(dsn=dsn, pool_size=4, connect_timeout=5, max_attempts=3, restart_backoff_initial=0.001)
    instances: list[Flaky] = []
    attempts: list[tuple[str, int, int]] = []  # (payload, ctx.attempt, instance number)
    fixed = False

    class Flaky(Agent[Any]):
        def __init__(self) -> None:
            self.number = len(instances)
            instances.append(self)

        async def on_message(self, message: Any, ctx: MessageContext[Any]) -> None:
            attempts.append((message, ctx.attempt, self.number))
            if message == "poison" and not fixed:
                raise RuntimeError("cannot digest poison")

    with capture_logs() as logs:
        async with AgentMessaging[Any](config) as am:
            await setup_agents(am, "alice", "bob")
            am.host("bob", Flaky)
            [poison] = await am.one_way.send("alice", "bob", "poison")
            for i in range(4):  # queued behind the poison while bob crashes and restarts
                await am.one_way.send("alice", "bob", f"healthy {i}")
            await eventually(lambda: bool(attempts) and attempts[-1][0] == "healthy 3")
            # after the dead letter, bob moves on: the queued messages follow, in order, once each, first try
            assert [(p, a) for p, a, _ in attempts if p != "poison"] == [(f"healthy {i}", 1) for i in range(4)]

            poison_attempts = [(a, n) for p, a, n in attempts if p == "poison"]
            assert [a for a, _ in poison_attempts] == [1, 2, 3]
            assert len({n for _, n in poison_attempts}) == 3  # a fresh instance for each restart
            assert len(instances) == 3

            [letter] = await am.get_dead_letters("bob")
            assert letter.message_id == poison
            assert (letter.agent, letter.sender, letter.attempts) == ("bob", "alice", 3)
            assert "cannot digest poison" in letter.error
            assert "RuntimeError" in letter.error
            assert letter.retried_at is None
            assert await am.get_dead_letters() == [letter]
            assert await am.get_dead_letters("alice") == []
            sql = "SELECT dead_at, handled_at FROM messages WHERE id = $1"
            [dead] = await internals(am).database.fetch(sql, [poison])
            assert dead["dead_at"] is not None
            assert dead["handled_at"] is None

            fixed = True
            await am.retry_dead_letter(letter.id)
            await eventually(lambda: attempts[-1][0] == "poison")
            assert attempts[-1][1] == 1  # a fresh attempt count
            [again] = await am.get_dead_letters("bob")
            assert again.retried_at is not None

            async def poison_handled() -> bool:
                sql = "SELECT handled_at, dead_at FROM messages WHERE id = $1"
                row = await internals(am).database.fetch_row(sql, [poison])
                return row is not None and row["handled_at"] is not None and row["dead_at"] is None

            await eventually(poison_handled)
            with pytest.raises(DeadLetterNotFound):
                await am.retry_dead_letter(letter.id)  # already retried
            with pytest.raises(DeadLetterNotFound):
                await am.retry_dead_letter(letter.id + 1000)
    dead_letters = [e for e in logs if e["event"] == "agent.dead_letter"]
    assert len(dead_letters) == 1
    assert dead_letters[0]["log_level"] == "warning"
    assert dead_letters[0]["agent"] == "bob"
    assert dead_letters[0]["message_id"] == str(poison)
    assert "cannot digest poison" in dead_letters[0]["error"]


async def test_function_handler_retries_with_increasing_attempt(dsn: str) -> None:
    config = Config(dsn=dsn, pool_size=4, connect_timeout=5, max_attempts=4, restart_backoff_initial=0.001)
    attempts: list[int] = []
    async with AgentMessaging[Any](config) as am:
        await setup_agents(am, "alice", "bob")

        @am.register_handler("bob")
        async def bob(message: Any, ctx: MessageContext[Any]) -> None:
            attempts.append(ctx.attempt)
            if ctx.attempt < 3:
                raise ValueError("not yet")

        [mid] = await am.one_way.send("alice", "bob", "eventually fine")

        async def handled() -> bool:
            sql = "SELECT handled_at, attempts FROM messages WHERE id = $1"
            row = await internals(am).database.fetch_row(sql, [mid])
            return row is not None and row["handled_at"] is not None

        await eventually(handled)
        assert attempts == [1, 2, 3]
        assert await am.get_dead_letters() == []


# --------------------------------------------------------------- ordering


async def test_per_pair_order_under_concurrency(am: AgentMessaging[Any]) -> None:
    senders = ["s1", "s2", "s3", "s4"]
    recipients = ["r1", "r2", "r3"]
    await setup_agents(am, *senders, *recipients)
    per_recipient: dict[str, list[tuple[str, int]]] = {r: [] for r in recipients}

    def handler_for(name: str) -> Callable[[Any, MessageContext[Any]], Awaitable[None]]:
        async def handle(message: Any, ctx: MessageContext[Any]) -> None:
            assert ctx.sender == message["s"]
            per_recipient[name].append((message["s"], message["i"]))
            if message["i"] % 7 == 0:
                await anyio.sleep(0.001)

        return handle

    am.register_handler("r1")(handler_for("r1"))
    count = 30

    async def sender(name: str) -> None:
        for i in range(count):
            if name == "s1" and i == 10:
                am.register_handler("r2")(handler_for("r2"))  # hosted while messages flow
            if name == "s2" and i == 20:
                am.register_handler("r3")(handler_for("r3"))
            await am.one_way.send(name, recipients if i % 2 == 0 else recipients[i % 3], {"s": name, "i": i})

    async with anyio.create_task_group() as tg:
        for name in senders:
            tg.start_soon(sender, name)

    expected = {
        r: {s: [i for i in range(count) if i % 2 == 0 or recipients[i % 3] == r] for s in senders} for r in recipients
    }
    await eventually(lambda: all(len(per_recipient[r]) == sum(map(len, expected[r].values())) for r in recipients))
    for r in recipients:
        for s in senders:
            assert [i for who, i in per_recipient[r] if who == s] == expected[r][s], (r, s)


# ---------------------------------------------------------------- logging


async def test_no_payload_in_info_logs(am: AgentMessaging[Any]) -> None:
    secret = "PAYLOAD-SECRET-7f3a"
    await setup_agents(am, "alice", "bob")
    inbox = Inbox()
    with capture_logs() as logs:
        am.register_handler("bob")(inbox)
        await am.one_way.send("alice", "bob", {"text": secret}, metadata={"note": secret})
        await inbox.wait(1)
        await am.one_way.get_received_messages("bob")
    assert inbox.payloads == [{"text": secret}]
    assert any(e["event"] == "agent.hosted" for e in logs)  # the capture saw the runtime's events
    for event in logs:
        if event["log_level"] in ("debug", "info"):
            assert secret not in repr(event), event
