"""Fencing against the races around it: a restart, a sweep, a takeover or a queued transition that meets a
lost presence; runtimes with different leases. Each would let two runtimes handle one agent or meeting, or
strand one that nobody runs."""

from __future__ import annotations

import contextlib
import functools
import itertools
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any, ClassVar
from urllib.parse import urlsplit

import anyio

from agent_messaging import AgentMessaging, AgentStatus, Config, RunnerMoved
from agent_messaging._app import Internals, internals
from agent_messaging.actors.agent import Agent
from tests._helpers import eventually, holding

_TERMINATE = (
    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = 'agent-messaging-presence' "
    "AND pid IN (SELECT pid FROM pg_locks WHERE locktype = 'advisory' "
    "AND ((classid::bigint << 32) | objid::bigint) = $1)"
)


def _config(dsn: str, **extra: Any) -> Config:
    options: dict[str, Any] = {"pool_size": 5, "poll_interval": 0.1, "connect_timeout": 5, "ownership_lease": 1.0}
    return Config(dsn=dsn, **(options | extra))


async def _setup(am: AgentMessaging[Any], *agents: str) -> None:
    await am.register_organization("acme", "Acme", exist_ok=True)
    for name in agents:
        await am.register_agent(name, "acme", name, exist_ok=True)


async def _drop_presence(parts: Internals[Any], through: Any = None) -> None:
    """The database drops the runtime's presence connection (and so its lock); the process lives on."""
    await (through or parts.database).execute(_TERMINATE, [parts.services.presence.key])


@asynccontextmanager
async def _fenced(dsn: str, parts: Internals[Any]) -> AsyncIterator[None]:
    """Drop the runtime's presence and keep it from reconnecting (the database takes no new connections) for
    the block; then it reconnects and restores."""
    name = await parts.database.fetch_val("SELECT current_database()")
    door = f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS'
    hold: tuple[tuple[str, list[Any]], ...] = ((f"{door} false", []), (_TERMINATE, [parts.services.presence.key]))
    admin = urlsplit(dsn)._replace(path="/postgres").geturl()  # no database can shut its own door
    outages = parts.services.presence.outages
    async with holding(admin, *hold, release=((f"{door} true", []),)):
        await eventually(lambda: parts.services.presence.outages == outages + 1)
        yield


async def _failed_in_db(am: AgentMessaging[Any], agent: str) -> bool:
    return (await am.get_agent(agent)).status is AgentStatus.FAILED


class _Bob(Agent[Any]):
    """Fails its first message; starts slowly once ``slow`` is set."""

    fail = True
    slow = False
    seen: ClassVar[list[Any]] = []

    async def on_start(self) -> None:
        if _Bob.slow:
            await anyio.sleep(1.5)

    async def on_message(self, message: Any, ctx: Any) -> None:
        if _Bob.fail:
            _Bob.fail = False
            raise RuntimeError("boom")
        _Bob.seen.append(message)


async def test_a_restart_racing_a_fence_leaves_the_agent_hosted_once_the_presence_is_back(dsn: str) -> None:
    _Bob.fail, _Bob.slow, _Bob.seen = True, False, []
    am = AgentMessaging[Any](_config(dsn, agent_max_restarts=0))
    am.host("bob", _Bob)
    async with am:
        await _setup(am, "alice", "bob")
        parts = internals(am)
        await eventually(lambda: "bob" in parts.host.hosted)
        await am.one_way.send("alice", "bob", "one")
        await eventually(lambda: _failed_in_db(am, "bob"))  # restart_agent restarts what is stored failed
        _Bob.slow = True
        async with anyio.create_task_group() as tg:
            tg.start_soon(am.restart_agent, "bob")
            await anyio.sleep(0.3)  # the restart is inside the actor's on_start
            await _drop_presence(parts)
            await eventually(lambda: parts.services.presence.outages == 1)
        await eventually(lambda: parts.services.presence.held and "bob" in parts.host.hosted, 15)
        # the watch still works: a second loss is noticed and recovered from
        await _drop_presence(parts)
        await eventually(lambda: parts.services.presence.outages == 2)
        await eventually(lambda: parts.services.presence.held and "bob" in parts.host.hosted, 15)
        await am.one_way.send("alice", "bob", "two")
        await eventually(lambda: "two" in _Bob.seen, 15)


async def test_a_meeting_sweep_during_a_fence_does_not_strand_the_meeting(dsn: str) -> None:
    async with AgentMessaging[Any](_config(dsn)) as runner, AgentMessaging[Any](_config(dsn)) as other:
        await _setup(runner, "chair", "guest")
        meeting = await runner.meeting.create_meeting("chair", ["guest"])
        parts = internals(runner)
        async with _fenced(dsn, parts):
            await anyio.sleep(0.5)  # a few meeting sweeps while fenced
        await eventually(lambda: parts.services.presence.held and meeting in parts.runners.handles, 15)
        async with anyio.create_task_group() as tg:  # a caller in another runtime reaches it
            tg.start_soon(other.meeting.attend_meeting, "guest", meeting)
            await eventually(lambda: _present(parts, meeting, "guest"))
            tg.cancel_scope.cancel()


async def test_a_meeting_claimed_before_a_fence_and_loaded_after_it_does_not_run_fenced(dsn: str) -> None:
    async with AgentMessaging[Any](_config(dsn)) as creator:
        await _setup(creator, "chair", "guest")
        meeting = await creator.meeting.create_meeting("chair", ["guest"])
    # the creator closed: the meeting is an orphan, and the next caller's runtime takes it over
    async with AgentMessaging[Any](_config(dsn)) as am, anyio.create_task_group() as tg, AsyncExitStack() as fence:
        parts = internals(am)

        async def attend() -> None:
            with contextlib.suppress(RunnerMoved):
                await am.meeting.attend_meeting("guest", meeting)

        async with holding(dsn, ("BEGIN", []), ("LOCK TABLE meeting_events IN ACCESS EXCLUSIVE MODE", [])):
            tg.start_soon(attend)  # claims the meeting; its load waits behind the lock
            await anyio.sleep(0.5)
            await fence.enter_async_context(_fenced(dsn, parts))
        await anyio.sleep(0.5)  # the load completes now, in a fenced runtime
        assert meeting not in parts.runners.handles
        await fence.aclose()
        await eventually(lambda: parts.services.presence.held and meeting in parts.runners.handles, 15)
        tg.cancel_scope.cancel()


async def test_a_transition_queued_before_a_fence_agrees_with_the_restored_runner(dsn: str) -> None:
    async with AgentMessaging[Any](_config(dsn)) as am:
        await _setup(am, "chair", "guest")
        meeting = await am.meeting.create_meeting("chair", ["guest"])
        parts = internals(am)
        got: dict[str, Any] = {}

        async def call(name: str, fn: Any, *args: Any) -> None:
            try:
                got[name] = await fn(*args)
            except RunnerMoved as exc:
                got[name] = exc

        async with anyio.create_task_group() as tg:
            tg.start_soon(call, "attend", am.meeting.attend_meeting, "guest", meeting)
            await eventually(lambda: meeting in parts.runners.handles and _present(parts, meeting, "guest"))
            start = functools.partial(am.meeting.start_meeting, next_speaker="guest")
            tg.start_soon(call, "start", start, "chair", meeting, "opening")
            await eventually(lambda: "attend" in got)
            # hold the meeting's row: the guest's transition waits in the writer, as it would through an outage
            row_lock = ("SELECT 1 FROM meetings WHERE id::text = $1 FOR UPDATE", [str(meeting)])
            async with holding(dsn, ("BEGIN", []), row_lock):
                speak = functools.partial(am.meeting.speak, next_speaker="chair")
                tg.start_soon(call, "speak", speak, "guest", meeting, "first")
                await anyio.sleep(0.3)
                await _drop_presence(parts)
                await eventually(lambda: parts.services.presence.outages == 1)
                await anyio.sleep(0.5)
            # released: the queued transition commits now, or is refused
            await eventually(lambda: parts.services.presence.held and meeting in parts.runners.handles, 15)
            await eventually(lambda: parts.runners.handles[meeting].actor is not None)
            await eventually(lambda: "speak" in got)
            actor = parts.runners.handles[meeting].actor
            assert actor is not None
            row = await parts.database.fetch_row(  # the database's own account of the meeting
                "SELECT floor_holder, turn_number, last_seq FROM meetings WHERE id = $1", [meeting]
            )
            assert row is not None
            # the restored runner's memory is the database's state: no write landed behind its back
            assert (actor.turn_number, actor.seq) == (row["turn_number"], row["last_seq"])
            assert (actor.floor_holder is None) == (row["floor_holder"] is None)
            history = [e.message for e in await am.meeting.get_meeting_history(meeting)]
            assert history.count("first") <= 1
            tg.cancel_scope.cancel()


def _present(parts: Internals[Any], meeting: Any, agent: str) -> bool:
    handle = parts.runners.handles.get(meeting)
    return handle is not None and handle.seats[agent].status.value == "present"


async def test_runtimes_with_different_leases_never_run_one_agent_twice(dsn: str) -> None:
    runs: list[tuple[str, float, float]] = []
    started: list[str] = []
    slow = AgentMessaging[Any](_config(dsn, ownership_lease=8.0))
    fast = AgentMessaging[Any](_config(dsn, ownership_lease=0.2))
    for tag, am in (("owner", slow), ("taker", fast)):

        @am.register_handler("bob")
        async def bob(message: Any, ctx: Any, tag: str = tag) -> None:
            start = anyio.current_time()
            started.append(tag)
            try:
                await anyio.sleep(3)
            finally:
                runs.append((tag, start, anyio.current_time()))

    async with slow:
        await _setup(slow, "alice", "bob")
        owner = internals(slow)
        await eventually(lambda: "bob" in owner.host.hosted)
        async with fast:
            taker = internals(fast)
            await eventually(lambda: "bob" in taker.host.standby)
            await slow.one_way.send("alice", "bob", "work")
            await eventually(lambda: started == ["owner"])
            # the owner loses its presence for a moment: the taker, with its short lease, must still wait for
            # the owner's (a claimer waits the longer of the two), so the owner is back before any takeover
            await _drop_presence(owner, taker.database)
            await eventually(lambda: owner.services.presence.outages == 1)
            await anyio.sleep(2.5)
            await eventually(lambda: owner.services.presence.held and "bob" in owner.host.hosted)
            assert "bob" in taker.host.standby
        spans = sorted((start, end) for _, start, end in runs)
        assert all(end <= next_start for (_, end), (next_start, _) in itertools.pairwise(spans))


async def test_a_failed_agent_comes_back_from_a_fence_failed_unless_restarted_meanwhile(dsn: str) -> None:
    _Bob.fail, _Bob.slow, _Bob.seen = True, False, []
    am = AgentMessaging[Any](_config(dsn, agent_max_restarts=0))
    am.host("bob", _Bob)
    async with am, AgentMessaging[Any](_config(dsn)) as other:
        await _setup(am, "alice", "bob")
        parts = internals(am)
        await eventually(lambda: "bob" in parts.host.hosted)
        await am.one_way.send("alice", "bob", "one")
        await eventually(lambda: _failed_in_db(am, "bob"))  # stored: the database is what a restore believes
        async with _fenced(dsn, parts):
            pass
        await eventually(lambda: parts.services.presence.held and "bob" in parts.host.hosted, 15)
        assert parts.host.hosted["bob"].failed  # as the database says
        async with _fenced(dsn, parts):
            await other.restart_agent("bob")  # from another runtime, while this one is cut off
        await eventually(lambda: parts.services.presence.held and "bob" in parts.host.hosted, 15)
        assert not parts.host.hosted["bob"].failed
        await am.one_way.send("alice", "bob", "two")
        await eventually(lambda: "two" in _Bob.seen, 15)
