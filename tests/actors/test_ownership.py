"""Several runtimes on one database: each hosted agent is owned by exactly one of them."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc

from agent_messaging import AgentMessaging, Config
from agent_messaging._app import internals
from tests._helpers import eventually


def _runtime(dsn: str, seen: list[tuple[str, Any]], tag: str) -> AgentMessaging[Any]:
    am = AgentMessaging[Any](Config(dsn=dsn, pool_size=4, poll_interval=0.1, connect_timeout=5))

    @am.register_handler("bob")
    async def bob(message: Any, ctx: Any) -> None:
        seen.append((tag, message))

    return am


async def _until(predicate: Any, limit: float = 10) -> None:
    """Wait for runtime-internal state that exposes no event (hosting happens in the runtime's own tasks)."""
    with anyio.fail_after(limit):
        while not predicate():  # noqa: ASYNC110
            await anyio.sleep(0.02)


async def test_one_owner_and_messages_reach_it_from_another_runtime(dsn: str) -> None:
    seen: list[tuple[str, Any]] = []
    async with _runtime(dsn, seen, "first") as first:
        await first.register_organization("acme", "Acme")
        await first.register_agent("alice", "acme", "Alice")
        await first.register_agent("bob", "acme", "Bob")
        await _until(lambda: "bob" in internals(first).host.hosted)
        async with _runtime(dsn, seen, "second") as second:
            assert "bob" not in internals(second).host.hosted
            assert "bob" in internals(second).host.standby
            await second.one_way.send("alice", "bob", "via second")
            await _until(lambda: len(seen) == 1)
            assert seen == [("first", "via second")]
            rows = await internals(second).database.fetch("SELECT runtime_id FROM agent_hosts")
            assert [r["runtime_id"] for r in rows] == [internals(first).services.runtime_id]


async def test_another_runtime_takes_over_when_the_owner_closes(dsn: str) -> None:
    seen: list[tuple[str, Any]] = []
    owner_ready, owner_stop, owner_closed = anyio.Event(), anyio.Event(), anyio.Event()

    async def run_owner() -> None:
        async with _runtime(dsn, seen, "owner") as owner:
            await owner.register_organization("acme", "Acme")
            await owner.register_agent("alice", "acme", "Alice")
            await owner.register_agent("bob", "acme", "Bob")
            await _until(lambda: "bob" in internals(owner).host.hosted)
            owner_ready.set()
            await owner_stop.wait()
        owner_closed.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run_owner)
        await owner_ready.wait()
        async with _runtime(dsn, seen, "heir") as heir:
            await anyio.sleep(0.3)
            assert "bob" not in internals(heir).host.hosted  # the owner lives
            owner_stop.set()
            await owner_closed.wait()
            await _until(lambda: "bob" in internals(heir).host.hosted)
            await heir.one_way.send("alice", "bob", "after takeover")
            await _until(lambda: ("heir", "after takeover") in seen)
        assert ("owner", "after takeover") not in seen


class _MeetingCreator:
    """A runtime in a task of its own: it creates a meeting of 'host' and 'p1', then lives until closed."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self._stop, self._closed = anyio.Event(), anyio.Event()

    async def run(self, *, task_status: anyio.abc.TaskStatus[Any] = anyio.TASK_STATUS_IGNORED) -> None:
        async with AgentMessaging[Any](Config(dsn=self.dsn, pool_size=4, poll_interval=0.1)) as creator:
            await creator.register_organization("acme", "Acme")
            for name in ("host", "p1"):
                await creator.register_agent(name, "acme", name)
            task_status.started(await creator.meeting.create_meeting("host", ["p1"], turn_duration=30))
            await self._stop.wait()
        self._closed.set()

    async def close(self) -> None:
        self._stop.set()
        await self._closed.wait()


async def test_a_meeting_is_run_by_one_runtime_and_taken_over_when_it_stops(dsn: str) -> None:
    creator = _MeetingCreator(dsn)
    async with anyio.create_task_group() as tg:
        meeting = await tg.start(creator.run)
        async with AgentMessaging[Any](Config(dsn=dsn, pool_size=4, poll_interval=0.1)) as second:
            async with anyio.create_task_group() as meeting_tg:
                turns: list[Any] = []

                async def attend() -> None:
                    turns.append(await second.meeting.attend_meeting("p1", meeting))

                meeting_tg.start_soon(attend)

                # while the first runtime lives, it alone runs the meeting: the call reaches it through the database
                async def present() -> bool:
                    sql = (
                        "SELECT p.status FROM meeting_participants p JOIN agents a ON a.id = p.agent_id "
                        "WHERE p.meeting_id = $1 AND a.external_id = 'p1'"
                    )
                    return bool(await internals(second).database.fetch_val(sql, [meeting]) == "present")

                await eventually(present)
                assert meeting not in internals(second).runners.handles
                await creator.close()
                # the first runtime stopped: the waiting caller's runtime takes the meeting over
                await _until(lambda: meeting in internals(second).runners.handles)
                await _until(lambda: "p1" in _present(second, meeting))
                with anyio.fail_after(10):
                    meeting_tg.start_soon(second.meeting.start_meeting, "host", meeting, "welcome")
                    await _until(lambda: bool(turns))  # p1 got the floor from the recovered actor
                    await second.meeting.end_meeting("host", meeting)
            assert turns[0].turn_number == 1
            history = await second.meeting.get_meeting_history(meeting)
            assert [e.seq for e in history] == list(range(1, len(history) + 1))  # one writer: gap-free


def _present(am: AgentMessaging[Any], meeting: Any) -> set[str]:
    actor = internals(am).runners.handles[meeting]
    return {name for name, seat in actor.seats.items() if seat.status.value == "present"}


async def test_the_sweep_takes_over_an_orphaned_meeting_of_a_hosted_participant(dsn: str) -> None:
    creator = _MeetingCreator(dsn)
    heir = AgentMessaging[Any](Config(dsn=dsn, pool_size=4, poll_interval=0.1))

    @heir.register_turn_handler("p1")
    async def p1(turn: Any) -> Any:
        return "p1 speaks"

    async with anyio.create_task_group() as tg:
        meeting = await tg.start(creator.run)
        async with heir:
            await anyio.sleep(0.3)  # several sweeps: the creator lives, so the meeting stays with it
            assert meeting not in internals(heir).runners.handles
            await creator.close()
            await _until(lambda: meeting in internals(heir).runners.handles)  # taken over by a sweep
            status = await heir.meeting.get_meeting_status(meeting)
            assert "p1" in {p.agent for p in status.participants}


async def test_an_agent_registered_by_another_runtime_is_hosted_at_once(dsn: str) -> None:
    """A runtime waiting for an agent's registration hears of it through NOTIFY, not at its next sweep."""
    seen: list[Any] = []
    waiting = AgentMessaging[Any](Config(dsn=dsn, pool_size=4, poll_interval=3600, connect_timeout=5))

    @waiting.register_handler("zed")
    async def zed(message: Any, ctx: Any) -> None:
        seen.append(message)

    async with waiting, AgentMessaging[Any](Config(dsn=dsn, pool_size=4, connect_timeout=5)) as other:
        await other.register_organization("acme", "Acme")
        await other.register_agent("alice", "acme", "Alice")
        assert "zed" in internals(waiting).host.waiting
        await other.register_agent("zed", "acme", "Zed")
        await _until(lambda: "zed" in internals(waiting).host.hosted)  # an hour before the sweep would
        await other.one_way.send("alice", "zed", "hello")
        await _until(lambda: seen == ["hello"])
