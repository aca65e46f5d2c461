"""The meeting actor: one kernel actor per active meeting; it alone changes the meeting's state.

Commands (attend, start, speak, pass, leave, end) arrive as ``ask`` s in its
mailbox and are handled one at a time, so turns never race. Each transition is
planned, written through the persistence actor (one unit: history rows, the
meeting row, participant rows), and only applied in memory once committed: a
failed write leaves the actor as it was, and the caller gets the error.

An ``ask`` answers at once with the command's :data:`~.types.TurnSlot`; the
caller then waits on that slot, which the actor resolves when the caller's
turn comes, when it leaves, or when the meeting ends. No pool connection is
held while callers wait. An error raised for a command goes back to its caller
(always an ``AgentMessagingError``: a write the database refuses becomes
``InvalidMessage``), the caller's earlier wait, if any, stays in place, and the
meeting carries on as it was: no other caller is touched.

The turn timer is the actor's ``receive_deadline`` (the kernel waits for the
next command under a cancel scope with that deadline, and calls
``on_timeout``): no timer task, no polling. The deadline is absolute, so
commands handled during a turn do not extend it; a recovered meeting's
deadline may already have passed, and then the turn times out as soon as the
actor starts.

The actor runs under the meeting supervisor. A :class:`MeetingHandle` is what
outlives its instances: if one crashes, the next reloads the meeting from its
committed state and takes over the waiting callers.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, TypeVar
from uuid import UUID

import anyio

from ..._log import get_logger
from ..._tracing import annotate, span
from ..._validation import storable_text
from ...errors import (
    ActorStopped,
    AgentMessagingError,
    InvalidArgument,
    InvalidMessage,
    InvalidOperation,
    MeetingEnded,
    MeetingNotReady,
    NotYourTurn,
    RunnerMoved,
    TurnTimedOut,
)
from ...models import MeetingEvent, MeetingEventType, MeetingState, MeetingStatus, ParticipantStatus, Turn
from ...persistence._rows import as_uuid, to_json
from ...persistence.store import meetings as store
from ...persistence.writer import Write
from ...runtime.actor import Actor, ActorRef
from ..services import Services
from .remote import Poll, RemoteSlot, command_key, ended_key, ended_write, flush
from .types import Command, MeetingSnapshot, Op, Seat, Selector, TurnSlot, clock_deadline, snapshot_of

__all__ = ["MeetingActor", "MeetingHandle"]

T = TypeVar("T")
log = get_logger("agent_messaging.meeting")
E = MeetingEventType
Publish = Callable[[list[MeetingEvent[Any]]], None]


class MeetingHandle(Generic[T]):
    """A meeting run by this runtime: what outlives its actor instances.

    ``first`` is the state the first instance starts from; a restarted instance
    reloads the committed state instead, and takes over ``seats`` (the callers
    waiting for their turn) from the instance that crashed.
    """

    def __init__(
        self,
        meeting_id: UUID,
        organization_id: UUID,
        host: str,
        selector: Selector | None,
        first: MeetingSnapshot[T],
        generation: int = store.FIRST_GENERATION,
    ) -> None:
        self.id = meeting_id
        self.generation = generation
        """The claim of the meeting this runtime runs it under: its transitions commit only while it holds."""
        self.organization_id = organization_id
        self.host = host
        self.selector = selector
        self.first: MeetingSnapshot[T] | None = first
        self.seats: dict[str, Seat[T]] = {s.agent: s for s in first.seats}
        self.actor: MeetingActor[T] | None = None
        self.ref: ActorRef[Command[T] | Poll] | None = None
        self.started = anyio.Event()
        """Set once the first actor instance has started (or failed to)."""
        self.remote_seen: set[UUID] = set()
        """Commands of other runtimes this runtime has taken (their callers wait in ``seats``)."""
        self.outbox: list[RemoteSlot] = []
        """Results for callers in other runtimes, not written yet."""

    def fail_waiters(self, error: BaseException, *, remote: bool = True) -> None:
        """Wake every caller still waiting in this meeting with ``error`` (``remote=False``: only the callers in
        this runtime; those in others keep waiting on their command rows for the next runner)."""

        def fails(waiter: TurnSlot | None) -> bool:
            return waiter is not None and (remote or not isinstance(waiter, RemoteSlot))

        for seat in self.seats.values():
            for waiter in [seat.waiter, *seat.leaving]:
                if waiter is not None and fails(waiter):
                    waiter.fail(error)
            seat.waiter = None if fails(seat.waiter) else seat.waiter
            seat.leaving = [w for w in seat.leaving if not fails(w)]


class MeetingActor(Actor[Command[T] | Poll]):
    """Serializes one meeting's turns; made by the meeting supervisor for a :class:`MeetingHandle`."""

    def __init__(
        self,
        services: Services[T],
        handle: MeetingHandle[T],
        publish: Publish,
        stopped: Callable[[MeetingHandle[T]], None],
    ) -> None:
        self.services = services
        self.handle = handle
        self._stopped = stopped
        self.id = handle.id
        self.organization_id = handle.organization_id
        self.host = handle.host
        self.selector = handle.selector
        self._publish = publish
        self._payloads: dict[int, str] = {}  # JSON text of the payloads of the events being planned, by seq
        self._applying: UUID | None = None  # the command of another runtime being applied, until marked
        self._moved = False
        self._load(handle.first or MeetingSnapshot(seats=list(handle.seats.values()), turn_duration=None))

    def _load(self, snap: MeetingSnapshot[T]) -> None:
        self.seats = {s.agent: s for s in snap.seats}
        self.rotation = sorted(snap.seats, key=lambda s: s.position)
        self.turn_duration = snap.turn_duration
        self.state = snap.state
        self.floor_holder = snap.floor_holder
        self.turn_number = snap.turn_number
        self.deadline = snap.deadline
        self.seq = snap.seq
        self._log: list[MeetingEvent[Any]] = snap.history
        self.receive_deadline = clock_deadline(snap.deadline)

    # ------------------------------------------------------------------ lifecycle

    async def on_start(self) -> None:
        """Start from the new or recovered state, or (after a crash) reload the committed one."""
        handle = self.handle
        first, handle.first = handle.first, None
        if first is not None:
            handle.seats = self.seats
            handle.actor = self
            if not first.fresh:  # recovered: commands of other runtimes may be waiting
                await self._take_remote()
                await flush(self.services, handle.outbox)
            return
        rows = await store.load_active(self.services.db, self.services.codec.decode, [self.id])
        if not rows:
            handle.fail_waiters(MeetingEnded(self.id))
            self.stop_self()
            return
        previous = handle.seats
        self._load(snapshot_of(rows[0]))
        for seat in self.rotation:  # the callers waiting in the crashed instance wait here now
            old = previous.get(seat.agent)
            if old is not None:
                seat.waiter, seat.leaving = old.waiter, old.leaving
        log.info("meeting.reloaded", meeting=str(self.id), turn=self.turn_number)
        if self.state is MeetingState.ACTIVE and self.floor_holder is not None:
            self._deliver(self.seats[self.floor_holder])
        handle.seats = self.seats
        handle.actor = self
        await self._take_remote()
        await flush(self.services, handle.outbox)

    async def on_stop(self) -> None:
        """The meeting ended (its callers already have their last turns) or the runtime is closing.

        Callers in other runtimes are not failed when the runtime closes: the next runner serves them.
        """
        if self.state is not MeetingState.ENDED:
            self.handle.fail_waiters(
                ActorStopped(f"meeting {self.id}", "stopped (the runtime is closing)"), remote=False
            )
        with anyio.CancelScope(shield=True), anyio.move_on_after(self.stop_timeout):
            await flush(self.services, self.handle.outbox)
        self._stopped(self.handle)

    async def on_receive(self, message: Command[T] | Poll) -> None:
        """Handle one command (sent with ``ActorRef.request``): its caller waits on the command's slot, which
        gets the result or the error, now or at a later turn.

        A :class:`~.remote.Poll` makes it take the commands other runtimes wrote for it. With tracing on, a
        command is applied in a ``meeting apply <op>`` span, a child of its caller's.
        """
        if self.services.tracing and isinstance(message, Command):
            attributes = message.span_attributes(self.id)
            with span(f"meeting apply {message.op.value}", "server", attributes, parent=message.trace):
                await self._receive(message)
                annotate({"agent_messaging.meeting.turn_number": self.turn_number})
                return
        await self._receive(message)

    async def _receive(self, message: Command[T] | Poll) -> None:
        try:
            if isinstance(message, Poll):
                await self._take_remote(applied=False)
                return
            if self.state is MeetingState.ENDED:
                raise MeetingEnded(self.id)
            await self._run(message, self.seats[message.agent])
        finally:
            await flush(self.services, self.handle.outbox)

    async def on_timeout(self) -> None:
        """The floor holder's turn ran out."""
        await self._time_out()
        await flush(self.services, self.handle.outbox)

    async def _run(self, command: Command[T], seat: Seat[T]) -> None:
        """Apply one command. One that fails changes nothing: the meeting stays as it was and the caller's
        earlier wait (a blocked ``attend_meeting``, say) stays in place; one that succeeds replaces it."""
        handler = getattr(self, "_on_" + command.op.value)
        previous = seat.waiter
        try:
            await handler(command, seat)
        except BaseException as exc:
            self._payloads.clear()
            if seat.waiter is command.slot:
                seat.waiter = previous
            if isinstance(exc, Exception) and not isinstance(exc, AgentMessagingError):
                raise InvalidMessage(
                    f"meeting {self.id} could not record {command.op.value} by {command.agent!r}: "
                    f"the database refused it ({storable_text(str(exc), 500)})"
                ) from exc
            raise
        if previous is not None and previous is not seat.waiter and previous is not command.slot:
            previous.fail(InvalidOperation(f"a newer call for agent {seat.agent!r} took over this wait"))

    # ------------------------------------------------------------ other runtimes

    async def _take_remote(self, *, applied: bool = True) -> None:
        """Take the commands other runtimes wrote for this meeting: apply the new ones and (``applied``, when
        the meeting was just loaded here) wait out those an earlier runner applied."""
        handle = self.handle
        rows = await store.pending_commands(self.services.db, self.id, applied=applied)
        for row in rows:
            command_id = as_uuid(row["id"])
            if command_id in handle.remote_seen:
                continue
            handle.remote_seen.add(command_id)
            slot = RemoteSlot(command_id, handle.outbox)
            seat = self.seats.get(row["agent"])
            if seat is None or self.state is MeetingState.ENDED:
                slot.fail(
                    MeetingEnded(self.id)
                    if seat is not None
                    else InvalidOperation(f"agent {row['agent']!r} is not a participant of meeting {self.id}")
                )
                continue
            payload = row["payload"]
            command: Command[T] = Command(
                Op(row["op"]),
                seat.agent,
                None if payload is None else self.services.codec.decode(payload),
                payload,
                row["next_speaker"],
                slot,
            )
            if row["applied"]:
                self._reattach(command, seat)
                continue
            self._applying = command_id
            try:
                await self._run(command, seat)
            except RunnerMoved:
                return  # the command waits on its row for the meeting's new runner
            except AgentMessagingError as exc:
                slot.fail(exc)
            except Exception as exc:  # the caller gets a typed error; the meeting goes on
                log.exception("meeting.command_failed", meeting=str(self.id), op=command.op.value)
                slot.fail(exc)
            marked, self._applying = self._applying is None, None
            if not marked and not slot.done:  # applied without a transition (an attend, a queued leave)
                await self.services.writer.write([Write(store.COMMAND_APPLIED, (command_id,))])

    def _reattach(self, command: Command[T], seat: Seat[T]) -> None:
        """A command applied by an earlier runner: its caller waits here now."""
        if command.op is Op.LEAVE:
            if seat.status is ParticipantStatus.LEFT:
                command.slot.resolve(self._turn(seat, left=True))
            else:
                seat.leaving.append(command.slot)
        elif command.op is Op.END:
            command.slot.resolve(None)
        else:
            previous = seat.waiter
            self._replace_waiter(seat, command.slot)
            if previous is not None and previous is not command.slot:
                previous.fail(InvalidOperation(f"a newer call for agent {seat.agent!r} took over this wait"))
            if self.state is MeetingState.ACTIVE and self.floor_holder == seat.agent:
                self._deliver(seat)

    def status(self) -> MeetingStatus:
        """A snapshot of the meeting as this actor holds it."""
        return MeetingStatus(
            meeting_id=self.id,
            state=self.state,
            host=self.host,
            floor_holder=self.floor_holder,
            turn_number=self.turn_number,
            turn_deadline=self.deadline,
            turn_duration=self.turn_duration,
            participants=store.participants_of(self.rotation),
        )

    async def _time_out(self) -> None:
        self.receive_deadline = float("inf")
        holder = self.seats[self.floor_holder] if self.floor_holder else None
        if holder is None or self.state is not MeetingState.ACTIVE:
            return
        text = f"{holder.agent} did not speak within {self.turn_duration or 0:g}s; the floor moves on"
        events = [self._event(E.AGENT_TIMED_OUT, holder, data={"system_message": text})]
        log.info("meeting.turn_timed_out", meeting=str(self.id), agent=holder.agent, turn=self.turn_number)
        try:
            await self._advance(events, holder, "timeout")
        except RunnerMoved:
            return
        except AgentMessagingError as exc:
            log.warning("meeting.timeout_not_recorded", meeting=str(self.id), error=str(exc))
            self.receive_deadline = anyio.current_time() + 1.0  # the database is away: try again in a second
            return
        holder.late = True

    # ----------------------------------------------------------------- commands

    async def _on_attend(self, command: Command[T], seat: Seat[T]) -> None:
        if seat.status is ParticipantStatus.LEFT or seat.leaving:
            raise InvalidOperation(f"agent {seat.agent!r} has left meeting {self.id}")
        self._replace_waiter(seat, command.slot)
        if seat.status is ParticipantStatus.INVITED:
            event = self._event(E.AGENT_JOINED, seat)
            await self._commit([event], [(seat, ParticipantStatus.PRESENT)], state=False)
            seat.status = ParticipantStatus.PRESENT
            self._applied([event])
        if self.state is MeetingState.ACTIVE and self.floor_holder == seat.agent:
            self._deliver(seat)

    async def _on_start(self, command: Command[T], seat: Seat[T]) -> None:
        if self.state is not MeetingState.CREATED:
            raise InvalidOperation(f"meeting {self.id} has already started")
        absent = [s.agent for s in self.rotation if s.position and s.status is ParticipantStatus.INVITED]
        if absent:
            raise MeetingNotReady(self.id, absent)
        self._check_next(command.next_speaker)
        events = [self._event(E.MEETING_STARTED, seat), self._event(E.AGENT_SPOKE, seat, command, offset=1)]
        self._replace_waiter(seat, command.slot)
        await self._advance(events, seat, "start", command.next_speaker, joined=seat)

    def _check_floor(self, seat: Seat[T]) -> None:
        """``seat`` holds the floor now (``TurnTimedOut`` once if its turn ran out, else ``NotYourTurn``)."""
        if seat.late:
            seat.late = False
            raise TurnTimedOut(seat.agent, self.id)
        if self.state is not MeetingState.ACTIVE or self.floor_holder != seat.agent:
            raise NotYourTurn(seat.agent, self.id, self.floor_holder, started=self.state is not MeetingState.CREATED)

    async def _on_speak(self, command: Command[T], seat: Seat[T]) -> None:
        self._check_floor(seat)
        self._check_next(command.next_speaker)
        events = [self._event(E.AGENT_SPOKE, seat, command)]
        self._replace_waiter(seat, command.slot)
        await self._advance(events, seat, "spoke", command.next_speaker)

    async def _on_pass(self, command: Command[T], seat: Seat[T]) -> None:
        self._check_floor(seat)
        self._replace_waiter(seat, command.slot)
        await self._advance([], seat, "passed")

    async def _on_leave(self, command: Command[T], seat: Seat[T]) -> None:
        if seat.status is ParticipantStatus.LEFT:
            raise InvalidOperation(f"agent {seat.agent!r} has already left meeting {self.id}")
        seat.leaving.append(command.slot)
        if self.state is MeetingState.ACTIVE and self.floor_holder != seat.agent:
            return  # applied when the current turn ends
        try:
            if self.state is MeetingState.ACTIVE:
                await self._advance([], seat, "left")
            else:
                events = [self._event(E.AGENT_LEFT, seat)]
                await self._commit(events, [(seat, ParticipantStatus.LEFT)], state=False)
                seat.status = ParticipantStatus.LEFT
                self._applied(events)
                self._release(seat)
        except BaseException:
            seat.leaving.remove(command.slot)
            raise

    async def _on_end(self, command: Command[T], seat: Seat[T]) -> None:
        events = [self._event(E.MEETING_ENDED, seat, command)]
        # the commands of other runtimes still on their way get MeetingEnded in the same commit; their callers,
        # and those of commands written while it commits, wake on the end's NOTIFY
        taken, keys = self.handle.remote_seen, [ended_key(self.id)]
        await self._commit(events, [], state=True, ended=True, extra=[ended_write(self.id, taken)], notify=keys)
        self.services.signals.fire(keys)  # a caller in this runtime (after a takeover) hears it too
        self.state = MeetingState.ENDED
        self.floor_holder, self.deadline, self.receive_deadline = None, None, float("inf")
        self._applied(events)
        for s in self.rotation:
            for waiter in [s.waiter, *s.leaving]:
                if waiter is not None:
                    waiter.resolve(self._turn(s, ended=True, ending=command.message))
            s.waiter, s.leaving = None, []
        command.slot.resolve(None)
        log.info("meeting.ended", meeting=str(self.id), turns=self.turn_number)
        self.stop_self()

    # --------------------------------------------------------------- transitions

    async def _advance(
        self,
        events: list[MeetingEvent[Any]],
        previous: Seat[T],
        reason: str,
        next_speaker: str | None = None,
        *,
        joined: Seat[T] | None = None,
    ) -> None:
        """End ``previous``'s turn: apply pending leaves, pick the next speaker, commit, then wake it."""
        leavers = [s for s in self.rotation if s.leaving]
        for s in leavers:
            events.append(self._event(E.AGENT_LEFT, s, offset=len(events)))
        last = events[-1] if events else None
        nxt = self._pick(previous, next_speaker, last)
        events.append(
            self._event(
                E.TURN_CHANGED,
                nxt,
                offset=len(events),
                turn=self.turn_number + 1,
                data={"from": previous.agent, "reason": reason},
            )
        )
        deadline = datetime.now(UTC) + timedelta(seconds=self.turn_duration) if self.turn_duration else None
        changes = [(s, ParticipantStatus.LEFT) for s in leavers]
        if joined is not None and joined.status is not ParticipantStatus.PRESENT:
            changes.append((joined, ParticipantStatus.PRESENT))
        # a next speaker waiting in another runtime gets its turn written in the transition's own commit
        ahead: tuple[RemoteSlot, Turn[T]] | None = None
        extra: list[Write] = []
        keys: list[str] = []
        if isinstance(nxt.waiter, RemoteSlot):
            turn = self._turn_after(nxt, events, self.turn_number + 1, deadline)
            ahead = (nxt.waiter, turn)
            extra.append(Write(store.COMMAND_DONE, nxt.waiter.row_of(turn)))
            keys.append(command_key(nxt.waiter.command_id))
        await self._commit(events, changes, state=True, floor=nxt, deadline=deadline, extra=extra, notify=keys)
        # committed: apply
        for s, status in changes:
            s.status = status
        self.state = MeetingState.ACTIVE
        self.floor_holder, self.turn_number, self.deadline = nxt.agent, self.turn_number + 1, deadline
        self.receive_deadline = clock_deadline(deadline)
        if reason != "timeout":
            previous.seen_seq = events[-1].seq
        self._applied(events)
        for s in leavers:
            self._release(s)
        if ahead is None:
            self._deliver(nxt)
            return
        slot, turn = ahead
        nxt.late, nxt.seen_seq, nxt.waiter = False, self.seq, None
        slot.resolve_written(turn)
        self.services.signals.fire(keys)  # a caller in this runtime (after a takeover) hears it too

    def _pick(self, previous: Seat[T], requested: str | None, last: MeetingEvent[Any] | None) -> Seat[T]:
        live = [s for s in self.rotation if s.in_rotation]
        if requested is not None:
            return self.seats[requested]
        if self.selector is not None and live:
            choice = self._ask_selector(last)
            seat = self.seats.get(choice) if isinstance(choice, str) else None
            if seat is not None and seat.in_rotation and (seat is not previous or len(live) == 1):
                return seat
        after = [s for s in live if s.position > previous.position]
        return (after or live or [self.seats[self.host]])[0]

    def _ask_selector(self, last: MeetingEvent[Any] | None) -> object:
        assert self.selector is not None
        try:
            choice = self.selector(self.status(), last)
        except Exception:
            log.exception("meeting.selector_failed", meeting=str(self.id))
            return None
        close = getattr(choice, "close", None)
        if close is not None and not isinstance(choice, str):  # a coroutine: selectors are plain functions
            close()
            return None
        return choice

    def _check_next(self, next_speaker: str | None) -> None:
        if next_speaker is None:
            return
        seat = self.seats.get(next_speaker) if isinstance(next_speaker, str) else None
        if seat is None or not seat.in_rotation:
            raise InvalidArgument(f"next_speaker {next_speaker!r} is not a present participant of meeting {self.id}")

    # ------------------------------------------------------------------ helpers

    def _event(
        self,
        kind: MeetingEventType,
        seat: Seat[T] | None,
        command: Command[T] | None = None,
        *,
        offset: int = 0,
        turn: int | None = None,
        data: dict[str, Any] | None = None,
    ) -> MeetingEvent[Any]:
        event: MeetingEvent[Any] = MeetingEvent[Any].model_construct(
            meeting_id=self.id,
            seq=self.seq + offset + 1,
            type=kind,
            agent=seat.agent if seat is not None else None,
            message=command.message if command is not None else None,
            turn_number=self.turn_number if turn is None else turn,
            data=data or {},
            created_at=datetime.now(UTC),
        )
        if command is not None and command.message_json is not None:
            self._payloads[event.seq] = command.message_json
        return event

    async def _commit(
        self,
        events: list[MeetingEvent[Any]],
        changes: list[tuple[Seat[T], ParticipantStatus]],
        *,
        state: bool,
        floor: Seat[T] | None = None,
        deadline: datetime | None = None,
        ended: bool = False,
        extra: list[Write] | None = None,
        notify: list[str] | None = None,
    ) -> None:
        # the writer runs a batch as one statement (one snapshot): a unit never inserts and updates the same row
        payloads, self._payloads = self._payloads, {}
        writes = [
            Write(
                store.EVENT,
                (
                    self.id,
                    e.seq,
                    e.type.value,
                    self.seats[e.agent].agent_id if e.agent else None,
                    payloads.get(e.seq),
                    e.turn_number,
                    to_json(e.data),
                    e.created_at,
                ),
            )
            for e in events
        ]
        writes += [Write(store.PARTICIPANT_STATE, (self.id, s.agent_id, st.value, s.seen_seq)) for s, st in changes]
        applying, self._applying = self._applying, None
        # the command of another runtime commits with the transition it causes (its result, when the transition
        # answers it at once, marks it applied too: a unit updates a row once)
        if applying is not None and not any(
            w.statement is store.COMMAND_DONE and w.row[0] == applying for w in extra or ()
        ):
            writes.append(Write(store.COMMAND_APPLIED, (applying,)))
        last = events[-1].seq if events else self.seq
        if state:
            status = MeetingState.ENDED if ended else MeetingState.ACTIVE
            turn = self.turn_number + (0 if ended else 1)
            holder = floor.agent_id if floor is not None else None
        else:  # the turn stays as it is; the row is written all the same: it is the fence
            status, turn, deadline = self.state, self.turn_number, self.deadline
            holder = self.seats[self.floor_holder].agent_id if self.floor_holder else None
        # fenced: the commit fails unless the claim this actor was started with still runs the meeting
        row = (self.id, status.value, holder, turn, deadline, last, self.handle.generation)
        writes += [Write(store.STATE, row), Write(store.RUNNER_GUARD, (self.id,))]
        try:
            await self.services.writer.write([*writes, *(extra or ())], notify=notify or ())
        except Exception as exc:
            if store.runner_lost(exc):
                raise self._runner_moved() from None
            raise

    def _runner_moved(self) -> RunnerMoved:
        """Another runtime runs the meeting now: fail the callers waiting here and stop (those in other
        runtimes wait on their command rows for the new runner)."""
        error = RunnerMoved(self.id)
        if not self._moved:
            self._moved = True
            log.warning("meeting.moved", meeting=str(self.id), note="another runtime runs it now")
            self.handle.fail_waiters(error, remote=False)
            self.stop_self()
        return error

    def _applied(self, events: list[MeetingEvent[Any]]) -> None:
        if not events:
            return
        self.seq = events[-1].seq
        self._log.extend(events)
        floor = min((s.seen_seq for s in self.rotation if s.status is not ParticipantStatus.LEFT), default=self.seq)
        if self._log and self._log[0].seq <= floor:
            del self._log[: bisect.bisect_right(self._log, floor, key=lambda e: e.seq)]
        self._publish(events)

    @staticmethod
    def _replace_waiter(seat: Seat[T], waiter: TurnSlot) -> None:
        # the earlier waiter is failed by on_receive once the command succeeded (or put back if it failed)
        seat.waiter = waiter

    def _turn_after(
        self, seat: Seat[T], events: list[MeetingEvent[Any]], turn_number: int, deadline: datetime | None
    ) -> Turn[T]:
        """The turn ``seat`` will get once ``events`` are applied (computed before they are committed)."""
        return self._make_turn(seat, turn_number, deadline, events)

    def _turn(self, seat: Seat[T], *, ended: bool = False, left: bool = False, ending: Any = None) -> Turn[T]:
        deadline = None if ended or left else self.deadline
        turn = self._make_turn(seat, self.turn_number, deadline, (), ended=ended, left=left, ending=ending)
        seat.seen_seq = self.seq
        return turn

    def _make_turn(
        self,
        seat: Seat[T],
        turn_number: int,
        deadline: datetime | None,
        events: Sequence[MeetingEvent[Any]],
        *,
        ended: bool = False,
        left: bool = False,
        ending: Any = None,
    ) -> Turn[T]:
        """A turn for ``seat`` with the messages it has not seen (those of the log, then ``events``)."""
        start = bisect.bisect_right(self._log, seat.seen_seq, key=lambda e: e.seq)
        messages = [e for e in [*self._log[start:], *events] if e.type is not E.TURN_CHANGED]
        turn: Turn[T] = Turn[Any].model_construct(
            meeting_id=self.id,
            agent=seat.agent,
            turn_number=turn_number,
            deadline=deadline,
            messages=messages,
            ended=ended,
            left=left,
            ending_message=ending,
        )
        return turn

    def _deliver(self, seat: Seat[T]) -> None:
        if seat.waiter is not None:
            seat.late = False
            seat.waiter.resolve(self._turn(seat))
            seat.waiter = None

    def _release(self, seat: Seat[T]) -> None:
        for waiter in [seat.waiter, *seat.leaving]:
            if waiter is not None:
                waiter.resolve(self._turn(seat, left=True))
        seat.waiter, seat.leaving = None, []
