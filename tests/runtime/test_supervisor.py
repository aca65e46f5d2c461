"""Supervisors: restart types, strategies, intensity, give-up, backoff, shutdown, logging, scale."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from structlog.testing import capture_logs

from agent_messaging.errors import ActorStopped, AlreadyExists, NotFound, SupervisorFailed
from agent_messaging.runtime.actor import Actor, ActorRef
from agent_messaging.runtime.supervisor import (
    ChildSpec,
    RestartType,
    Strategy,
    Supervisor,
    SupervisorSpec,
    SupervisorStatistics,
)
from tests._helpers import eventually

pytestmark = pytest.mark.anyio


class Tracker:
    """Shared record of every instance a factory made (instances are fresh on each restart)."""

    def __init__(self) -> None:
        self.instances: list[Worker] = []
        self.start_times: list[float] = []
        self._started: anyio.Event | None = None

    def record_start(self) -> None:
        self.start_times.append(anyio.current_time())
        if self._started is not None:
            self._started.set()

    async def wait_starts(self, count: int) -> None:
        """Wait until instances have started ``count`` times in all."""
        while len(self.start_times) < count:
            self._started = anyio.Event()
            await self._started.wait()

    def factory(self) -> Worker:
        worker = Worker(self)
        self.instances.append(worker)
        return worker


class Worker(Actor[Any]):
    """``"fail"`` raises, ``("block", event)`` waits, ``"exit"`` calls stop_self, ``"seen"`` returns what it saw."""

    def __init__(self, tracker: Tracker) -> None:
        self.tracker = tracker
        self.seen: list[Any] = []
        self.stopped = False

    async def on_start(self) -> None:
        self.tracker.record_start()

    async def on_receive(self, message: Any) -> Any:
        if message == "fail":
            raise ValueError("boom")
        if message == "exit":
            self.stop_self()
            return None
        if message == "seen":
            return list(self.seen)
        if isinstance(message, tuple) and message[0] == "block":
            await message[1].wait()
            if message[2] == "fail":
                raise ValueError("boom after block")
            return None
        self.seen.append(message)
        return message

    async def on_stop(self) -> None:
        self.stopped = True


@asynccontextmanager
async def running(supervisor: Supervisor) -> AsyncIterator[Supervisor]:
    """Run ``supervisor`` for the block, then stop it."""
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)
        yield supervisor
        await supervisor.stop()


async def test_crashed_child_restarts_with_a_fresh_instance_and_keeps_its_queue() -> None:
    tracker = Tracker()
    release = anyio.Event()
    async with running(Supervisor("sup")) as sup:
        ref = await sup.start_child(ChildSpec("w", tracker.factory))
        await ref.tell(("block", release, "fail"))
        await ref.tell("a")
        await ref.tell("b")
        release.set()
        assert await ref.ask("seen") == ["a", "b"]
        assert len(tracker.instances) == 2
        assert tracker.instances[1].ref is ref
        assert sup.child("w") is ref
        assert sup.statistics() == SupervisorStatistics(children=1, restarts=1, failures=1, child_restarts={"w": 1})


async def test_crash_and_restart_are_logged() -> None:
    tracker = Tracker()
    with capture_logs() as logs:
        async with running(Supervisor("sup")) as sup:
            ref = await sup.start_child(ChildSpec("w", tracker.factory))
            await ref.tell("fail")
            await ref.ask("ping")
    crashed = [e for e in logs if e["event"] == "actor.crashed"]
    restarted = [e for e in logs if e["event"] == "actor.restarted"]
    assert crashed[0]["supervisor"] == "sup"
    assert crashed[0]["actor"] == "w"
    assert crashed[0]["error"] == repr(ValueError("boom"))
    assert crashed[0]["log_level"] == "warning"
    assert restarted[0]["restarts"] == 1


async def test_temporary_child_is_not_restarted_and_is_reported() -> None:
    tracker = Tracker()
    reported: list[tuple[str, BaseException]] = []
    async with running(Supervisor("sup", on_child_failed=lambda n, e: reported.append((n, e)))) as sup:
        ref = await sup.start_child(ChildSpec("w", tracker.factory, restart=RestartType.TEMPORARY))
        await ref.tell("fail")
        await ref.wait_stopped()
        with pytest.raises(ActorStopped):
            await ref.ask("ping")
        assert sup.children() == []
    assert len(tracker.instances) == 1
    assert [(n, str(e)) for n, e in reported] == [("w", "boom")]


async def test_transient_child_restarts_after_a_crash_but_not_after_a_normal_exit() -> None:
    tracker = Tracker()
    async with running(Supervisor("sup")) as sup:
        ref = await sup.start_child(ChildSpec("w", tracker.factory, restart=RestartType.TRANSIENT))
        await ref.tell("fail")
        assert await ref.ask("ping") == "ping"
        await ref.tell("exit")
        await ref.wait_stopped()
        assert sup.children() == []
    assert len(tracker.instances) == 2
    assert tracker.instances[1].stopped


async def test_permanent_child_restarts_after_a_normal_exit_and_handles_its_queue() -> None:
    tracker = Tracker()
    async with running(Supervisor("sup")) as sup:
        ref = await sup.start_child(ChildSpec("w", tracker.factory))
        await ref.tell("exit")
        await ref.tell("after")
        assert await ref.ask("seen") == ["after"]
        assert len(tracker.instances) == 2
        assert tracker.instances[0].stopped


async def test_one_for_one_leaves_siblings_alone() -> None:
    crashing, sibling = Tracker(), Tracker()
    async with running(Supervisor("sup", strategy=Strategy.ONE_FOR_ONE)) as sup:
        bad = await sup.start_child(ChildSpec("bad", crashing.factory))
        good = await sup.start_child(ChildSpec("good", sibling.factory))
        await good.tell("kept")
        await bad.tell("fail")
        await bad.ask("ping")
        assert await good.ask("seen") == ["kept"]
    assert len(sibling.instances) == 1


async def test_one_for_all_restarts_every_child_and_keeps_their_mailboxes() -> None:
    crashing, sibling, temporary = Tracker(), Tracker(), Tracker()
    release = anyio.Event()
    async with running(Supervisor("sup", strategy=Strategy.ONE_FOR_ALL)) as sup:
        bad = await sup.start_child(ChildSpec("bad", crashing.factory))
        good = await sup.start_child(ChildSpec("good", sibling.factory))
        temp = await sup.start_child(ChildSpec("temp", temporary.factory, restart=RestartType.TEMPORARY))
        await good.tell(("block", release, "ok"))
        await good.tell("queued")
        await bad.tell("fail")
        await bad.ask("ping")
        release.set()
        assert await good.ask("seen") == ["queued"]
        await temp.wait_stopped()
        assert sorted(sup.children()) == ["bad", "good"]
        assert sup.statistics().child_restarts == {"bad": 1, "good": 1}
    assert len(sibling.instances) == 2
    assert sibling.instances[0].stopped
    assert len(temporary.instances) == 1


async def test_exceeding_restart_intensity_fails_the_supervisor_and_stops_children() -> None:
    crashing, sibling = Tracker(), Tracker()
    release = anyio.Event()
    sup = Supervisor("sup", max_restarts=2, within=60.0, backoff_initial=0.001)
    pending: list[BaseException] = []

    async def asker(ref: ActorRef[Any]) -> None:
        try:
            await ref.ask(("block", release, "ok"))
        except ActorStopped as exc:
            pending.append(exc)

    with capture_logs() as logs, pytest.RaisesGroup(SupervisorFailed) as raised:
        async with anyio.create_task_group() as tg:
            await tg.start(sup.run)
            bad = await sup.start_child(ChildSpec("bad", crashing.factory))
            good = await sup.start_child(ChildSpec("good", sibling.factory))
            tg.start_soon(asker, good)
            for _ in range(2):
                await bad.tell("fail")
                await bad.ask("ping")  # answered by the restarted instance
            await bad.tell("fail")  # the third restart in the window is one too many
            await anyio.sleep_forever()  # ended by the supervisor's failure
    failure = raised.value.exceptions[0]
    assert isinstance(failure, SupervisorFailed)
    assert failure.supervisor == "sup"
    assert isinstance(failure.cause, ValueError)
    assert len(pending) == 1
    assert not bad.is_alive
    assert not good.is_alive
    assert sibling.instances[0].stopped
    assert [e["supervisor"] for e in logs if e["event"] == "supervisor.failed"] == ["sup"]


async def test_give_up_mode_stops_only_that_child_and_reports_it() -> None:
    crashing, sibling = Tracker(), Tracker()
    reported: list[tuple[str, BaseException]] = []
    sup = Supervisor("sup", max_restarts=1, within=60.0, on_child_failed=lambda n, e: reported.append((n, e)))
    with capture_logs() as logs:
        async with running(sup):
            bad = await sup.start_child(ChildSpec("bad", crashing.factory, escalate=False))
            good = await sup.start_child(ChildSpec("good", sibling.factory))
            await bad.tell("fail")
            await bad.ask("ping")
            await bad.tell("fail")
            await bad.wait_stopped()
            assert await good.ask("still") == "still"
            assert sup.children() == ["good"]
            again = await sup.start_child(ChildSpec("bad", crashing.factory))
            assert await again.ask("back") == "back"
    assert [(n, str(e)) for n, e in reported] == [("bad", "boom")]
    assert len(sibling.instances) == 1
    assert [e["actor"] for e in logs if e["event"] == "actor.gave_up"] == ["bad"]
    assert not [e for e in logs if e["event"] == "supervisor.failed"]


async def test_backoff_grows_exponentially_and_is_capped() -> None:
    tracker = Tracker()
    sup = Supervisor("sup", max_restarts=10, within=60.0, backoff_initial=0.02, backoff_factor=2.0, backoff_max=0.05)
    with capture_logs() as logs:
        async with running(sup):
            ref = await sup.start_child(ChildSpec("w", tracker.factory))
            for n in range(4):
                await ref.tell("fail")
                await tracker.wait_starts(n + 2)
    delays = [e["delay"] for e in logs if e["event"] == "actor.restarted"]
    assert delays == [0.02, 0.04, 0.05, 0.05]
    gaps = [b - a for a, b in zip(tracker.start_times, tracker.start_times[1:], strict=False)]
    assert all(gap >= delay * 0.9 for gap, delay in zip(gaps, delays, strict=True))


async def test_stop_drains_children_runs_on_stop_and_leaves_nothing_running() -> None:
    trackers = [Tracker() for _ in range(3)]
    async with anyio.create_task_group() as tg:
        sup = Supervisor("sup")
        await tg.start(sup.run)
        refs = [await sup.start_child(ChildSpec(f"w{i}", t.factory)) for i, t in enumerate(trackers)]
        for ref in refs:
            await ref.tell("queued")
        await sup.stop()
        assert sup.children() == []
    assert all(t.instances[0].seen == ["queued"] and t.instances[0].stopped for t in trackers)
    assert not any(ref.is_alive for ref in refs)
    with pytest.raises(ActorStopped):
        await sup.start_child(ChildSpec("late", Tracker().factory))


async def test_cancelling_the_supervisor_stops_children_and_fails_their_asks() -> None:
    tracker = Tracker()
    release = anyio.Event()
    async with anyio.create_task_group() as tg:
        sup = Supervisor("sup")
        await tg.start(sup.run)
        ref = await sup.start_child(ChildSpec("w", tracker.factory))
        await ref.tell(("block", release, "ok"))
        tg.cancel_scope.cancel()
    assert tracker.instances[0].stopped
    with pytest.raises(ActorStopped):
        await ref.ask("late")


async def test_stop_child_stops_only_that_child() -> None:
    one, two = Tracker(), Tracker()
    async with running(Supervisor("sup")) as sup:
        a = await sup.start_child(ChildSpec("a", one.factory))
        b = await sup.start_child(ChildSpec("b", two.factory))
        await sup.stop_child("a")
        assert not a.is_alive
        assert one.instances[0].stopped
        assert await b.ask("x") == "x"
        assert sup.children() == ["b"]
        with pytest.raises(NotFound):
            await sup.stop_child("a")


async def test_kill_child_cancels_the_running_message_and_fails_the_queued_asks() -> None:
    tracker, other = Tracker(), Tracker()
    never = anyio.Event()
    async with running(Supervisor("sup")) as sup:
        ref = await sup.start_child(ChildSpec("a", tracker.factory))
        b = await sup.start_child(ChildSpec("b", other.factory))
        failures: list[BaseException] = []

        async def ask(message: Any) -> None:
            try:
                await ref.ask(message)
            except ActorStopped as exc:
                failures.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask, ("block", never, "ok"))  # would block for ever
            await anyio.wait_all_tasks_blocked()
            tg.start_soon(ask, "queued")
            await anyio.wait_all_tasks_blocked()
            sup.kill_child("a")  # returns at once
            with anyio.fail_after(5):
                await ref.wait_stopped()
        assert len(failures) == 2  # the cancelled one and the queued one
        assert not ref.is_alive
        assert tracker.instances[0].stopped  # on_stop ran
        assert tracker.instances[0].seen == []  # the queued message was never handled
        assert len(tracker.start_times) == 1  # not restarted, although PERMANENT
        assert sup.children() == ["b"]
        assert await b.ask("x") == "x"
        with pytest.raises(NotFound):
            sup.kill_child("a")


async def test_child_names_are_unique_and_a_failing_first_start_is_raised() -> None:
    class NoStart(Actor[Any]):
        async def on_start(self) -> None:
            raise RuntimeError("no")

    async with running(Supervisor("sup")) as sup:
        await sup.start_child(ChildSpec("a", Tracker().factory))
        with pytest.raises(AlreadyExists):
            await sup.start_child(ChildSpec("a", Tracker().factory))
        with pytest.raises(RuntimeError, match="no"):
            await sup.start_child(ChildSpec("b", NoStart))
        assert sup.children() == ["a"]


async def test_a_failed_nested_supervisor_is_restarted_by_its_parent() -> None:
    tracker = Tracker()
    made: list[Supervisor] = []
    remade = anyio.Event()

    def make_inner() -> Supervisor:
        inner = Supervisor("inner", max_restarts=0)
        made.append(inner)
        if len(made) == 2:
            remade.set()
        return inner

    async with running(Supervisor("outer")) as outer:
        inner = await outer.start_child(SupervisorSpec("inner", make_inner))
        ref = await inner.start_child(ChildSpec("w", tracker.factory))
        await ref.tell("fail")
        await ref.wait_stopped()
        await remade.wait()
        await anyio.wait_all_tasks_blocked()  # let the fresh inner supervisor start
        assert outer.statistics().restarts == 1
        fresh = outer.child("inner")
        assert fresh is made[1]
        new_ref = await fresh.start_child(ChildSpec("w", tracker.factory))
        assert await new_ref.ask("hi") == "hi"


async def test_thousand_actors_under_one_supervisor() -> None:
    count = 1000
    tracker = Tracker()
    async with running(Supervisor("many")) as sup:
        refs = [await sup.start_child(ChildSpec(f"w{i}", tracker.factory, mailbox_size=16)) for i in range(count)]
        for ref in refs:
            for j in range(3):
                await ref.tell(j)
        results = [await ref.ask("seen") for ref in refs]
        assert sup.statistics().children == count
    assert results == [[0, 1, 2]] * count
    assert all(worker.stopped for worker in tracker.instances)


async def test_stopping_does_not_wait_for_a_restart_backoff_and_fails_queued_asks() -> None:
    tracker = Tracker()
    errors: list[BaseException] = []

    async def asker(ref: ActorRef[Any]) -> None:
        try:
            await ref.ask("queued during backoff")
        except ActorStopped as exc:
            errors.append(exc)

    with anyio.fail_after(10):  # a safety bound: the backoff below is an hour
        async with anyio.create_task_group() as tg:
            sup = Supervisor("sup", backoff_initial=3600.0, backoff_max=3600.0)
            await tg.start(sup.run)
            ref = await sup.start_child(ChildSpec("w", tracker.factory))
            await ref.tell("fail")
            tg.start_soon(asker, ref)
            await anyio.wait_all_tasks_blocked()
            await sup.stop()
    assert len(errors) == 1
    assert len(tracker.instances) == 1


async def test_ref_stop_removes_a_permanent_child_for_good() -> None:
    tracker = Tracker()
    async with running(Supervisor("sup")) as sup:
        ref = await sup.start_child(ChildSpec("w", tracker.factory))
        await ref.tell("last")
        await ref.stop()
        assert sup.children() == []
    assert tracker.instances[0].seen == ["last"]
    assert len(tracker.instances) == 1


class _SlowStart(Actor[Any]):
    async def on_start(self) -> None:
        await anyio.sleep(0.5)

    async def on_receive(self, message: Any) -> Any:
        return message


async def test_a_child_killed_while_it_starts_stops_its_start_with_actor_stopped() -> None:
    supervisor = Supervisor("s")
    got: dict[str, BaseException] = {}
    async with anyio.create_task_group() as tg:
        await tg.start(supervisor.run)

        async def start() -> None:
            try:
                await supervisor.start_child(ChildSpec("c", _SlowStart))
            except ActorStopped as exc:
                got["error"] = exc

        tg.start_soon(start)
        await anyio.sleep(0.1)  # inside on_start
        supervisor.kill_child("c")
        await eventually(lambda: "error" in got)
        assert "c" not in supervisor.children()
        await supervisor.stop()
