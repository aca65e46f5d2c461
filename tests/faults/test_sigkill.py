"""The runtime hosting the agents is killed with SIGKILL, again and again, while other processes send one-way
messages, make calls and hold a meeting with them: every acknowledged message is handled, every call is
answered, the meeting goes on, and no two processes ever run one agent's handler at once.

Two ``agent-messaging run`` children host the same agents (one owns them, the other is on standby); each kill
takes the owner down and starts a fresh standby. The figures (acknowledged, lost, overlapping runs, duplicates
from redelivery, the time from each kill until calls are answered again) are printed (``pytest -s``).
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_messaging import AgentMessaging, Config, MeetingEventType
from agent_messaging._app import internals
from tests._helpers import eventually
from tests._processes import STEP, Child
from tests.faults.conftest import read_runs

pytestmark = pytest.mark.anyio

APP = "tests.faults._fault_app:am"
AGENTS = ["w0", "w1", "w2", "w3"]
TAKERS = ["p1", "p2"]
LEASE = 0.6
KILLS = 3


async def test_the_hosting_runtime_killed_again_and_again_loses_nothing(
    dsn: str, spawn: Callable[..., Child], anyio_backend: str, tmp_path: Path
) -> None:
    records = tmp_path / "records"
    records.mkdir()
    config = Config(dsn=dsn, pool_size=6, poll_interval=0.2, ownership_lease=LEASE, connect_timeout=10)

    async def start_child() -> Child:
        child = spawn(
            "-m", "agent_messaging", "run", APP, "--backend", anyio_backend, "--log-level", "warning",
            FAULT_AGENTS=",".join(AGENTS), FAULT_TURNS=",".join(TAKERS), FAULT_RECORDS=str(records),
            FAULT_LEASE=str(LEASE), FAULT_POLL="0.2",
        )  # fmt: skip
        await child.line(f"agent-messaging run {APP}:")
        return child

    async with AgentMessaging[Any](config) as am:
        await am.register_organization("faults", "Faults", exist_ok=True)
        for name in ["sender", "chair", *AGENTS, *TAKERS]:
            await am.register_agent(name, "faults", name, exist_ok=True)
        children = [await start_child(), await start_child()]
        db = internals(am).database
        meeting = await am.meeting.create_meeting("chair", TAKERS, turn_duration=3)
        acked: list[uuid.UUID] = []
        answered: list[float] = []  # when each call was answered
        chair_turns: list[float] = []
        killed: dict[int, float] = {}
        stop = anyio.Event()

        async def send(first: int) -> None:
            n = first
            while not stop.is_set():
                acked.extend(await am.one_way.send("sender", AGENTS[n % len(AGENTS)], {"n": n}))
                n += 2
                await anyio.sleep(0.002)

        async def call() -> None:
            n = 0
            while not stop.is_set():
                reply = await am.conversation.send_and_wait("sender", AGENTS[n % len(AGENTS)], {"n": n}, timeout=60)
                assert reply["n"] == n
                answered.append(time.monotonic())
                n += 1

        async def chair() -> None:
            turn = await am.meeting.start_meeting("chair", meeting, {"opening": True})
            while not stop.is_set() and not turn.ended:
                chair_turns.append(time.monotonic())
                turn = await am.meeting.speak("chair", meeting, {"turn": turn.turn_number})

        recovery: list[float] = []
        async with anyio.create_task_group() as tg:
            for first in range(2):
                tg.start_soon(send, first)
            tg.start_soon(call)
            tg.start_soon(chair)
            await anyio.sleep(1.0)
            for _ in range(KILLS):
                owner = await db.fetch_val(
                    "SELECT pid FROM agent_hosts h JOIN agents a ON a.id = h.agent_id WHERE a.external_id = 'w0'"
                )
                killed[owner] = time.monotonic()
                os.kill(owner, signal.SIGKILL)
                children.append(await start_child())  # the next standby
                await eventually(lambda owner=owner: sum(t > killed[owner] for t in answered) >= 2, STEP)
                recovery.append(next(t for t in answered if t > killed[owner]) - killed[owner])
                await eventually(lambda owner=owner: sum(t > killed[owner] for t in chair_turns) >= 2, STEP)
            stop.set()
        await am.meeting.end_meeting("chair", meeting)

        async def all_handled() -> bool:
            sql = "SELECT count(*) FROM messages WHERE id = ANY($1::uuid[]) AND handled_at IS NULL"
            return bool(await db.fetch_val(sql, [acked]) == 0)

        await eventually(all_handled, STEP)
        history = await am.meeting.get_meeting_history(meeting, limit=10_000)

    runs = read_runs(records, killed)
    handled = {key for key, pids in runs.done.items() if pids}
    lost = [i for i in acked if str(i) not in handled]
    overlaps = runs.overlaps()
    spoken = [(e.agent, e.turn_number) for e in history if e.type is MeetingEventType.AGENT_SPOKE]
    takers = {pid for agent in TAKERS for (_s, _e, pid, _k) in runs.intervals[agent]}
    print(
        f"\n[{anyio_backend}] {KILLS} SIGKILLs: acknowledged {len(acked)} one-way messages and {len(answered)} calls, "
        f"lost {len(lost)}, overlapping runs {len(overlaps)}, duplicates from redelivery {runs.duplicates()}, "
        f"calls answered again {', '.join(f'{r:.2f}' for r in recovery)} s after each kill; meeting: "
        f"{len(spoken)} messages, turns taken by {len(takers)} processes"
    )
    assert lost == []
    assert overlaps == []
    assert len(spoken) == len(set(spoken))  # one message per turn: no turn taken twice
    assert [e.seq for e in history] == list(range(1, len(history) + 1))
    assert len(takers) >= 2  # the turns were taken over after a kill
