"""Organizations and agents through the public API, every error, and the runtime's lifecycle."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Any

import anyio
import pytest
from pydantic import BaseModel

from agent_messaging import (
    AgentInfo,
    AgentMessaging,
    AgentNotFound,
    AgentStatus,
    AlreadyExists,
    Config,
    InvalidArgument,
    Organization,
    OrganizationNotFound,
    RuntimeState,
)
from agent_messaging._app import internals
from agent_messaging.errors import LifecycleError

pytestmark = pytest.mark.anyio

AM = AgentMessaging[Any]

BAD_IDS: list[Any] = ["", "   ", "x" * 256, "bad\x00id", "bad\nid", "bad\x1bid", 42, None, b"bytes"]
BAD_NAMES: list[Any] = ["", "  ", 7, None, "bell\x07"]
BAD_METADATA: list[Any] = [
    {"when": object()},
    {"tags": {"a", "b"}},
    {1: "int key"},
    ["not", "a", "mapping"],
    "{}",
    {"x": math.nan},
    {"x": [math.inf]},
]


async def count(am: AM, table: str) -> int:
    value: int = await internals(am).database.fetch_val(f"SELECT count(*) FROM {table}")
    return value


# -------------------------------------------------------------- organizations


async def test_register_and_get_organization(am: AM) -> None:
    metadata = {"plan": "pro", "seats": 12, "ms": 1_732_480_000_000, "nested": {"ok": [1, None, True]}, "ü": "✓"}
    created = await am.register_organization("acme", "Acme Corp", metadata)

    assert isinstance(created, Organization)
    assert created.external_id == "acme"
    assert created.name == "Acme Corp"
    assert created.metadata == metadata
    assert isinstance(created.created_at, datetime)
    assert created.created_at.tzinfo is not None

    assert await am.get_organization("acme") == created
    other = await am.register_organization("globex", "Globex")
    assert other.metadata == {}
    assert other.id != created.id


async def test_get_unknown_organization(am: AM) -> None:
    with pytest.raises(OrganizationNotFound, match="nowhere") as caught:
        await am.get_organization("nowhere")
    assert caught.value.external_id == "nowhere"
    assert isinstance(caught.value, LookupError)


async def test_register_organization_twice(am: AM) -> None:
    await am.register_organization("acme", "Acme")
    with pytest.raises(AlreadyExists, match="acme") as caught:
        await am.register_organization("acme", "Acme again")
    assert caught.value.external_id == "acme"
    assert (await am.get_organization("acme")).name == "Acme"  # the first one stays untouched
    assert await count(am, "organizations") == 1


async def test_register_organization_bad_input_leaves_no_row(am: AM) -> None:
    for bad in BAD_IDS:
        with pytest.raises(InvalidArgument, match="organization"):
            await am.register_organization(bad, "Name")
    for bad in BAD_NAMES:
        with pytest.raises(InvalidArgument, match="name"):
            await am.register_organization("acme", bad)
    for bad in BAD_METADATA:
        with pytest.raises(InvalidArgument, match="metadata"):
            await am.register_organization("acme", "Acme", bad)
    assert await count(am, "organizations") == 0


# --------------------------------------------------------------------- agents


async def test_register_get_and_list_agents(am: AM) -> None:
    acme = await am.register_organization("acme", "Acme")
    await am.register_organization("globex", "Globex")

    alice = await am.register_agent("alice", "acme", "Alice", {"role": "buyer", "id": 2**40})
    bob = await am.register_agent("bob", "acme", "Bob")
    await am.register_agent("gina", "globex", "Gina")

    assert isinstance(alice, AgentInfo)
    assert alice.external_id == "alice"
    assert alice.name == "Alice"
    assert alice.organization_id == acme.id
    assert alice.organization_external_id == "acme"
    assert alice.metadata == {"role": "buyer", "id": 2**40}
    assert alice.status is AgentStatus.ACTIVE
    assert alice.created_at.tzinfo is not None
    assert bob.metadata == {}

    assert await am.get_agent("alice") == alice
    assert [a.external_id for a in await am.list_agents("acme")] == ["alice", "bob"]  # oldest first
    assert [a.external_id for a in await am.list_agents("globex")] == ["gina"]
    await am.register_organization("empty", "Empty")
    assert await am.list_agents("empty") == []


async def test_register_agent_in_unknown_organization_leaves_no_row(am: AM) -> None:
    with pytest.raises(OrganizationNotFound, match="nowhere"):
        await am.register_agent("alice", "nowhere", "Alice")
    assert await count(am, "agents") == 0


async def test_get_and_list_unknown(am: AM) -> None:
    with pytest.raises(AgentNotFound, match="ghost") as caught:
        await am.get_agent("ghost")
    assert caught.value.external_id == "ghost"
    with pytest.raises(OrganizationNotFound, match="nowhere"):
        await am.list_agents("nowhere")
    with pytest.raises(AgentNotFound, match="ghost"):
        await am.deregister_agent("ghost")


async def test_register_agent_twice(am: AM) -> None:
    await am.register_organization("acme", "Acme")
    await am.register_organization("globex", "Globex")
    first = await am.register_agent("alice", "acme", "Alice")
    with pytest.raises(AlreadyExists, match="alice") as caught:
        await am.register_agent("alice", "acme", "Alice 2")
    assert caught.value.external_id == "alice"
    # agent ids are global: another organization cannot take it either
    with pytest.raises(AlreadyExists, match="alice"):
        await am.register_agent("alice", "globex", "Alice 3")
    assert await am.get_agent("alice") == first
    assert await count(am, "agents") == 1


async def test_register_agent_bad_input_leaves_no_row(am: AM) -> None:
    await am.register_organization("acme", "Acme")
    for bad in BAD_IDS:
        with pytest.raises(InvalidArgument, match="agent"):
            await am.register_agent(bad, "acme", "Name")
        with pytest.raises(InvalidArgument, match="organization"):
            await am.register_agent("alice", bad, "Name")
    for bad in BAD_NAMES:
        with pytest.raises(InvalidArgument, match="name"):
            await am.register_agent("alice", "acme", bad)
    for bad in BAD_METADATA:
        with pytest.raises(InvalidArgument, match="metadata"):
            await am.register_agent("alice", "acme", "Alice", bad)
    assert await count(am, "agents") == 0


async def test_lookups_refuse_bad_ids(am: AM) -> None:
    for method in (am.get_organization, am.get_agent, am.deregister_agent, am.list_agents):
        for bad in BAD_IDS:
            with pytest.raises(InvalidArgument):
                await method(bad)


async def test_deregister_agent(am: AM) -> None:
    await am.register_organization("acme", "Acme")
    alice = await am.register_agent("alice", "acme", "Alice")
    await am.register_agent("bob", "acme", "Bob")

    gone = await am.deregister_agent("alice")
    assert gone.external_id == "alice"
    assert gone.id == alice.id
    assert gone.status is AgentStatus.DEREGISTERED

    with pytest.raises(AgentNotFound, match="alice"):
        await am.get_agent("alice")
    assert [a.external_id for a in await am.list_agents("acme")] == ["bob"]
    with pytest.raises(AgentNotFound, match="alice"):
        await am.deregister_agent("alice")  # only once
    # its history stays: the row is kept, marked deregistered
    sql = "SELECT status FROM agents WHERE id = $1"
    assert await internals(am).database.fetch_val(sql, [alice.id]) == "deregistered"


async def test_a_deregistered_agents_id_can_be_registered_again(am: AM) -> None:
    await am.register_organization("acme", "Acme")
    await am.register_organization("globex", "Globex")
    old = await am.register_agent("alice", "acme", "Old Alice")
    await am.deregister_agent("alice")

    new = await am.register_agent("alice", "globex", "New Alice")

    assert new.id != old.id
    assert new.status is AgentStatus.ACTIVE
    assert await am.get_agent("alice") == new
    assert await am.list_agents("acme") == []
    assert [a.name for a in await am.list_agents("globex")] == ["New Alice"]
    with pytest.raises(AlreadyExists):
        await am.register_agent("alice", "acme", "Third Alice")


async def test_concurrent_registration_of_one_agent_id(am: AM) -> None:
    await am.register_organization("acme", "Acme")
    winners: list[AgentInfo] = []
    losers: list[AlreadyExists] = []

    async def register(i: int) -> None:
        try:
            winners.append(await am.register_agent("alice", "acme", f"Alice {i}"))
        except AlreadyExists as exc:
            losers.append(exc)

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(register, i)

    assert len(winners) == 1
    assert len(losers) == 9
    assert all(exc.external_id == "alice" for exc in losers)
    assert await am.get_agent("alice") == winners[0]
    assert await count(am, "agents") == 1


async def test_concurrent_registration_of_one_organization_id(am: AM) -> None:
    outcomes: list[str] = []

    async def register(i: int) -> None:
        try:
            await am.register_organization("acme", f"Acme {i}")
            outcomes.append("created")
        except AlreadyExists:
            outcomes.append("exists")

    async with anyio.create_task_group() as tg:
        for i in range(10):
            tg.start_soon(register, i)

    assert sorted(outcomes) == ["created"] + ["exists"] * 9
    assert await count(am, "organizations") == 1


# ------------------------------------------------------------------ lifecycle


class Note(BaseModel):
    text: str


def test_message_type_from_the_subscript() -> None:
    assert AgentMessaging[Note](Config(dsn="postgresql://localhost/x")).message_type is Note
    assert AgentMessaging(Config(dsn="postgresql://localhost/x"), message_type=Note).message_type is Note
    assert AgentMessaging(Config(dsn="postgresql://localhost/x")).message_type is Any


async def _every_api_call(runtime: AM) -> list[tuple[str, Any]]:
    return [
        ("register_organization", runtime.register_organization("acme", "Acme")),
        ("get_organization", runtime.get_organization("acme")),
        ("register_agent", runtime.register_agent("alice", "acme", "Alice")),
        ("get_agent", runtime.get_agent("alice")),
        ("list_agents", runtime.list_agents("acme")),
        ("deregister_agent", runtime.deregister_agent("alice")),
    ]


async def test_using_the_runtime_before_entering_it(config: Config) -> None:
    runtime = AM(config)
    assert runtime.state is RuntimeState.NEW
    for _name, call in await _every_api_call(runtime):
        with pytest.raises(LifecycleError, match="new"):
            await call
    with pytest.raises(LifecycleError):
        internals(runtime)


async def test_using_the_runtime_after_closing_it(config: Config) -> None:
    runtime = AM(config)
    async with runtime as am:
        assert am is runtime
        assert runtime.state is RuntimeState.OPEN
        await am.register_organization("acme", "Acme")
    assert runtime.state is RuntimeState.CLOSED
    for _name, call in await _every_api_call(runtime):
        with pytest.raises(LifecycleError, match="closed"):
            await call
    with pytest.raises(LifecycleError):
        internals(runtime)
    # and it cannot be opened again
    with pytest.raises(LifecycleError):
        async with runtime:
            pytest.fail("a closed runtime opened again")


async def test_entering_twice_is_a_lifecycle_error(config: Config) -> None:
    runtime = AM(config)
    async with runtime:
        with pytest.raises(LifecycleError):
            async with runtime:
                pytest.fail("the runtime was entered twice")
        # the failed second entry did not disturb the open runtime
        assert runtime.state is RuntimeState.OPEN
        await runtime.register_organization("acme", "Acme")
    assert runtime.state is RuntimeState.CLOSED


async def test_an_exception_inside_the_block_closes_the_runtime_and_propagates(config: Config) -> None:
    runtime = AM(config)
    with pytest.raises(KeyError, match="boom"):
        async with runtime:
            raise KeyError("boom")
    assert runtime.state is RuntimeState.CLOSED
    with pytest.raises(LifecycleError):
        await runtime.get_organization("acme")
