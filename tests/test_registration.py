"""Registration that can run twice: ``exist_ok=True`` returns a matching record, refuses a different one, and is
safe when several runtimes register the same ids at the same instant."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from agent_messaging import AgentMessaging, AlreadyExists, Config
from agent_messaging._app import internals

pytestmark = pytest.mark.anyio

AM = AgentMessaging[Any]


async def count(am: AM, table: str) -> int:
    value: int = await internals(am).database.fetch_val(f"SELECT count(*) FROM {table}")
    return value


async def test_organization_exist_ok_returns_the_matching_record(am: AM) -> None:
    first = await am.register_organization("acme", "Acme", {"plan": "pro", "seats": 3})
    again = await am.register_organization("acme", "Acme", {"seats": 3, "plan": "pro"}, exist_ok=True)
    assert again == first
    assert await count(am, "organizations") == 1
    # a first registration with exist_ok creates it
    created = await am.register_organization("globex", "Globex", exist_ok=True)
    assert created == await am.get_organization("globex")


async def test_organization_without_exist_ok_says_how_to_reuse(am: AM) -> None:
    await am.register_organization("acme", "Acme")
    with pytest.raises(AlreadyExists, match="exist_ok=True") as caught:
        await am.register_organization("acme", "Acme")
    assert caught.value.differences == []


async def test_organization_exist_ok_that_differs_says_what_differs(am: AM) -> None:
    await am.register_organization("acme", "Acme", {"plan": "pro", "seats": 3})
    with pytest.raises(AlreadyExists) as caught:
        await am.register_organization("acme", "Acme Corp", {"plan": "pro", "seats": 4, "new": True}, exist_ok=True)
    text = str(caught.value)
    assert "name 'Acme' (asked: 'Acme Corp')" in text
    assert "metadata (keys that differ: 'new', 'seats')" in text
    assert len(caught.value.differences) == 2
    # nothing changed
    organization = await am.get_organization("acme")
    assert (organization.name, organization.metadata) == ("Acme", {"plan": "pro", "seats": 3})


async def test_agent_exist_ok_returns_the_matching_record(am: AM) -> None:
    await am.register_organization("acme", "Acme")
    first = await am.register_agent("alice", "acme", "Alice", {"role": "buyer"})
    again = await am.register_agent("alice", "acme", "Alice", {"role": "buyer"}, exist_ok=True)
    assert again == first
    assert await count(am, "agents") == 1


async def test_agent_exist_ok_that_differs_says_what_differs(am: AM) -> None:
    await am.register_organization("acme", "Acme")
    await am.register_organization("globex", "Globex")
    await am.register_agent("alice", "acme", "Alice", {"role": "buyer"})
    with pytest.raises(AlreadyExists) as caught:
        await am.register_agent("alice", "globex", "Alice", {"role": "buyer"}, exist_ok=True)
    assert "organization 'acme' (asked: 'globex')" in str(caught.value)
    assert caught.value.differences == ["organization 'acme' (asked: 'globex')"]
    with pytest.raises(AlreadyExists, match=r"metadata \(keys that differ: 'role'\)"):
        await am.register_agent("alice", "acme", "Alice", {"role": "seller"}, exist_ok=True)
    with pytest.raises(AlreadyExists, match="name 'Alice' \\(asked: 'Alicia'\\)"):
        await am.register_agent("alice", "acme", "Alicia", {"role": "buyer"}, exist_ok=True)
    assert await count(am, "agents") == 1


async def test_agent_exist_ok_after_deregistration_registers_a_new_agent(am: AM) -> None:
    await am.register_organization("acme", "Acme")
    gone = await am.register_agent("alice", "acme", "Alice")
    await am.deregister_agent("alice")
    fresh = await am.register_agent("alice", "acme", "Alice", exist_ok=True)
    assert fresh.id != gone.id
    assert await am.register_agent("alice", "acme", "Alice", exist_ok=True) == fresh


async def test_exist_ok_is_safe_when_runtimes_register_at_the_same_instant(config: Config) -> None:
    """Two runtimes (two pools, so concurrent database sessions) register the same ids many times at once."""
    organizations: list[Any] = []
    agents: dict[str, list[Any]] = {}
    async with AgentMessaging[Any](config) as one, AgentMessaging[Any](config) as two:

        async def register(runtime: AM) -> None:
            organizations.append(await runtime.register_organization("acme", "Acme", {"n": 1}, exist_ok=True))
            for name in ("alice", "bob", "carol"):
                agent = await runtime.register_agent(name, "acme", name.title(), exist_ok=True)
                agents.setdefault(name, []).append(agent)

        async with anyio.create_task_group() as tg:
            for i in range(10):
                tg.start_soon(register, one if i % 2 else two)
        assert await count(one, "organizations") == 1
        assert await count(one, "agents") == 3
    assert len(organizations) == 10
    assert len({o.id for o in organizations}) == 1
    for name, records in agents.items():
        assert len(records) == 10
        assert len({a.id for a in records}) == 1, name
