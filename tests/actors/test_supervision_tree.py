"""The supervision tree for real: meeting actors are restarted from their committed state; restart counts are stored."""

from __future__ import annotations

from typing import Any

import anyio

from agent_messaging import AgentMessaging, Config, MeetingEventType, MessageContext, Turn
from agent_messaging._app import internals
from agent_messaging.persistence.store.agents import AGENT_RESTARTS
from agent_messaging.persistence.writer import Write
from tests._helpers import eventually

E = MeetingEventType


async def test_a_crashed_meeting_actor_restarts_from_its_committed_state(dsn: str) -> None:
    # the first restart waits 0.3 s: time to lift the fault that crashed it
    config = Config(dsn=dsn, pool_size=4, restart_backoff_initial=0.3, restart_backoff_max=0.3)
    async with AgentMessaging[str](config) as am:
        await am.register_organization("acme", "Acme")
        for name in ("h", "p1", "p2"):
            await am.register_agent(name, "acme", name)
        mid = await am.meeting.create_meeting("h", ["p1", "p2"], turn_duration=0.3)
        db = internals(am).database
        supervisor = internals(am).runners.supervisor
        turns: dict[str, Turn[str]] = {}

        async def attend(name: str) -> None:
            turns[name] = await am.meeting.attend_meeting(name, mid)

        async with anyio.create_task_group() as tg:
            tg.start_soon(attend, "p2")
            await eventually(lambda: _present(am, mid, "p2"))
            tg.start_soon(attend, "p1")
            await eventually(lambda: _present(am, mid, "p1"))
            # a fault the meeting actor cannot handle: the database refuses the timeout's history row
            await db.execute(
                "ALTER TABLE meeting_events ADD CONSTRAINT no_timeouts CHECK (type <> 'agent_timed_out') NOT VALID"
            )
            tg.start_soon(am.meeting.start_meeting, "h", mid, "opening")
            await eventually(lambda: "p1" in turns)  # p1 holds the floor and lets it time out
            await eventually(lambda: supervisor.statistics().failures >= 1)
            await db.execute("ALTER TABLE meeting_events DROP CONSTRAINT no_timeouts")
            # the restarted actor reloads the meeting, times p1 out and wakes p2, who waited all along
            with anyio.fail_after(10):
                await eventually(lambda: "p2" in turns)
            assert supervisor.statistics().restarts >= 1
            await am.meeting.end_meeting("h", mid)
            tg.cancel_scope.cancel()
        history = await am.meeting.get_meeting_history(mid)
        assert [e.seq for e in history] == list(range(1, len(history) + 1))
        assert (E.AGENT_TIMED_OUT, "p1") in [(e.type, e.agent) for e in history]
        assert turns["p2"].turn_number == 2


def _present(am: AgentMessaging[Any], mid: Any, name: str) -> bool:
    handle = internals(am).runners.handles.get(mid)
    return handle is not None and handle.seats[name].waiter is not None


async def test_restart_counts_and_the_last_error_are_stored(dsn: str) -> None:
    config = Config(dsn=dsn, pool_size=4, restart_backoff_initial=0, restart_backoff_max=0)
    am = AgentMessaging[str](config)
    attempts = 0
    done = anyio.Event()

    @am.register_handler("flaky")
    async def flaky(message: str, ctx: MessageContext[str]) -> None:
        nonlocal attempts
        attempts += 1
        if attempts < 3:
            raise RuntimeError(f"attempt {attempts} failed")
        done.set()

    async with am:
        await am.register_organization("acme", "Acme")
        await am.register_agent("boss", "acme", "Boss")
        await am.register_agent("flaky", "acme", "Flaky")
        await am.one_way.send("boss", "flaky", "work")
        with anyio.fail_after(10):
            await done.wait()

        async def stored() -> bool:
            row = await internals(am).database.fetch_row(
                "SELECT restarts, last_error FROM agents WHERE external_id = 'flaky'"
            )
            return row is not None and row["restarts"] == 2 and row["last_error"] == "RuntimeError: attempt 2 failed"

        await eventually(stored, 20)


async def test_a_batch_holding_two_restart_counts_of_one_agent_keeps_the_highest(dsn: str) -> None:
    async with AgentMessaging[str](Config(dsn=dsn, pool_size=4)) as am:
        await am.register_organization("acme", "Acme")
        writer = internals(am).services.writer
        for name, order in (("first", (2, 1)), ("second", (1, 2))):  # one batch, two rows of one agent
            agent = await am.register_agent(name, "acme", name)
            await writer.write([Write(AGENT_RESTARTS, (agent.id, n, f"error {n}")) for n in order])
            row = await internals(am).database.fetch_row(
                "SELECT restarts, last_error FROM agents WHERE external_id = $1", [name]
            )
            assert row is not None
            assert (row["restarts"], row["last_error"]) == (2, "error 2")


async def test_an_older_restart_count_committed_late_keeps_the_newer_error(dsn: str) -> None:
    # bookkeeping rides along with whichever batch takes it, and batches on two writer connections may commit in
    # either order: a late count must not put its (older) error over the newer one
    async with AgentMessaging[str](Config(dsn=dsn, pool_size=4)) as am:
        await am.register_organization("acme", "Acme")
        writer = internals(am).services.writer
        agent = await am.register_agent("late", "acme", "Late")
        for n in (2, 1):
            await writer.write([Write(AGENT_RESTARTS, (agent.id, n, f"error {n}"))])
        row = await internals(am).database.fetch_row(
            "SELECT restarts, last_error FROM agents WHERE id = $1", [agent.id]
        )
        assert row is not None
        assert (row["restarts"], row["last_error"]) == (2, "error 2")
