"""Turn-based meetings of many agents: ``am.meeting``.

:class:`Meetings` is the facade. It validates every call completely before
anything is written (unknown agents, other organizations, duplicates, bad
payloads, wrong caller), then hands the call to the meeting's actor
(:mod:`._meeting_actor`), which alone changes the meeting's state, writes it
through the persistence actor and wakes the agent whose turn it is. Blocked
callers wait on in-memory events and hold no pool connection.

It owns one task group: the meeting actors, the hosted participants (agents
with an ``on_turn`` handler in this runtime, which attend by themselves) and
the event dispatcher (:mod:`._meeting_events`). At start it recovers every
meeting that has not ended, with its floor holder and the remaining turn time.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

import anyio
import structlog
from anyio.abc import TaskGroup, TaskStatus

from .._validation import check_id, check_limit, check_timeout
from ..errors import (
    AgentMessagingError,
    CrossOrganization,
    InvalidArgument,
    InvalidMessage,
    InvalidOperation,
    LifecycleError,
    MeetingEnded,
    MeetingNotFound,
    NotHost,
    NotYourTurn,
    TurnTimedOut,
)
from ..models import MeetingEvent, MeetingEventType, MeetingState, MeetingStatus, ParticipantStatus, Turn
from ..persistence.presence import ORPHAN_MEETINGS, Presence, meeting_runner
from ..persistence.repositories import new_id
from ..persistence.writer import Write, to_json
from ..runtime._services import Services
from ..runtime.registry import Registry, TurnHandler
from . import _meeting_store as store
from ._host import AgentHost
from ._meeting_actor import MeetingActor
from ._meeting_events import EventDispatcher
from ._meeting_types import Command, Seat, Selector, Waiter, clock_deadline

__all__ = ["Meetings"]

T = TypeVar("T")
log = structlog.get_logger("agent_messaging.meeting")
_DEFAULT: Any = object()
_SLACK = 0.05  # a hosted turn handler is cancelled this long after its turn's deadline


class Meetings(Generic[T]):
    """Turn-based meetings: create, attend, start, speak, leave, end; status and history.

    Obtain it as ``am.meeting``. Every blocking call (``attend_meeting``,
    ``start_meeting``, ``speak``) returns a :class:`~agent_messaging.models.Turn`
    when the caller next holds the floor, or one with ``ended=True`` /
    ``left=True``; bound it with your own cancel scope if you need to.
    """

    def __init__(self, services: Services[T], registry: Registry[T]) -> None:
        self.services = services
        self.registry = registry
        self.events = EventDispatcher(registry)
        self._actors: dict[UUID, MeetingActor[T]] = {}
        self._tg: TaskGroup | None = None
        self._sweeping = False

    # ------------------------------------------------------------------- serve

    async def run(self, *, task_status: TaskStatus[Any] = anyio.TASK_STATUS_IGNORED) -> None:
        """Recover the meetings that have not ended, report ready, then serve until cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                await tg.start(self.events.run)
                await self._recover_orphans()
                # the runtime's periodic sweep also takes over meetings orphaned later
                self.services.extras["news_subscribers"].append(self._on_sweep)
                task_status.started()
                await anyio.sleep_forever()
        finally:
            self._tg = None
            self._actors.clear()

    def _require(self) -> TaskGroup:
        if self._tg is None:
            raise LifecycleError("meetings are not being served (is the runtime open?)")
        return self._tg

    async def _serve(self, actor: MeetingActor[T]) -> None:
        try:
            await actor.run()
        finally:
            if self._actors.get(actor.id) is actor:
                del self._actors[actor.id]

    def _spawn(self, actor: MeetingActor[T]) -> None:
        tg = self._require()
        self._actors[actor.id] = actor
        tg.start_soon(self._serve, actor)
        for seat in actor.rotation:
            handler = self.registry.turn_handler(seat.agent) if seat.position else None
            if handler is not None and seat.status is not ParticipantStatus.LEFT:
                tg.start_soon(self._hosted, actor, seat.agent, handler)

    @property
    def _presence(self) -> Presence:
        host: AgentHost[T] = self.services.extras["agent_host"]
        return host.presence

    def _on_sweep(self, keys: list[str] | None) -> None:
        if keys is None and not self._sweeping and self._tg is not None:
            self._sweeping = True
            self._tg.start_soon(self._sweep)

    async def _sweep(self) -> None:
        try:
            await self._recover_orphans()
        except Exception as exc:  # the next sweep tries again
            log.warning("meetings.recovery_failed", error=repr(exc))
        finally:
            self._sweeping = False

    async def _recover_orphans(self) -> None:
        """Run the active meetings nobody alive runs in which an agent with a turn handler here takes part.

        Other orphans wait for a participant to call in (see :meth:`_actor`).
        """
        local = [
            name
            for name in {*self.registry.turn_handlers, *self.registry.hosts}
            if self.registry.has_turn_handler(name)
        ]
        if not local:
            return
        rows = await self.services.db.fetch(ORPHAN_MEETINGS, [local])
        wanted = [UUID(str(r["id"])) for r in rows if UUID(str(r["id"])) not in self._actors]
        await self._claim_and_recover(wanted)

    async def _claim_and_recover(self, meeting_ids: list[UUID]) -> None:
        claimed = await self._presence.claim_meetings(meeting_ids)
        if not claimed:
            return
        recovered = await store.load_active(self.services.db, self.services.codec, sorted(claimed))
        for row in recovered:
            if row.id not in self._actors:
                self._recover(row)
        if recovered:
            log.info("meetings.recovered", count=len(recovered))

    def _recover(self, row: store.MeetingRow) -> None:
        if row.speaker_selection != "round_robin":
            log.warning("meeting.selector_lost", meeting=str(row.id), fallback="round_robin")
        seats = [Seat[T](s.agent, s.agent_id, s.position, s.status, s.seen_seq) for s in row.seats]
        actor = MeetingActor(
            self.services,
            meeting_id=row.id,
            organization_id=row.organization_id,
            host=row.host,
            seats=seats,
            turn_duration=row.turn_duration,
            selector=None,
            publish=self.events.publish,
            state=row.state,
            floor_holder=row.floor_holder,
            turn_number=row.turn_number,
            deadline=row.turn_deadline,
            seq=row.last_seq,
            history=row.events,
        )
        self._spawn(actor)
        log.info("meeting.recovered", meeting=str(row.id), floor_holder=row.floor_holder, turn=row.turn_number)

    # ---------------------------------------------------------------- creating

    async def create_meeting(
        self,
        host: str,
        participants: Sequence[str],
        *,
        turn_duration: float | None = _DEFAULT,
        speaker_selection: str | Selector = "round_robin",
    ) -> UUID:
        """Create a meeting of ``host`` and ``participants`` (rotation: host, then participants in order).

        ``turn_duration`` (seconds, None for no limit) defaults to the config's
        ``default_turn_duration``. ``speaker_selection`` is ``"round_robin"`` or
        a function ``(MeetingStatus, last_event) -> agent | None``; an invalid
        answer falls back to round robin. Participants hosted here with a turn
        handler attend at once. Raises ``InvalidArgument`` (bad ids, duplicates,
        host listed as participant, bad duration or policy), ``AgentNotFound``,
        ``CrossOrganization``.
        """
        self._require()
        host_name = check_id(host, "host")
        if isinstance(participants, str) or not isinstance(participants, Sequence):
            raise InvalidArgument("participants must be a list of agent ids")
        names = [check_id(p, "participant") for p in participants]
        if not names:
            raise InvalidArgument("a meeting needs at least one participant besides the host")
        if host_name in names:
            raise InvalidArgument(f"the host {host_name!r} must not be listed among the participants")
        duplicates = sorted({n for n in names if names.count(n) > 1}) if len(set(names)) != len(names) else []
        if duplicates:
            raise InvalidArgument(f"participants listed more than once: {duplicates!r}")
        duration = (
            self.services.config.default_turn_duration
            if turn_duration is _DEFAULT
            else check_timeout(turn_duration, "turn_duration")
        )
        selector: Selector | None = None
        if callable(speaker_selection):
            selector = speaker_selection
        elif speaker_selection != "round_robin":
            raise InvalidArgument(f"speaker_selection must be 'round_robin' or a function, not {speaker_selection!r}")
        directory = self.services.directory
        host_agent = await directory.get(host_name, "host")
        agents = await directory.get_many(names)
        directory.same_organization(host_agent, agents)

        meeting_id = new_id()
        seats = [Seat[T](host_name, host_agent.id, 0, ParticipantStatus.PRESENT)]
        for position, agent in enumerate(agents, 1):
            hosted = self.registry.has_turn_handler(agent.external_id)
            status = ParticipantStatus.PRESENT if hosted else ParticipantStatus.INVITED
            seats.append(Seat[T](agent.external_id, agent.id, position, status))
        actor = MeetingActor(
            self.services,
            meeting_id=meeting_id,
            organization_id=host_agent.organization_id,
            host=host_name,
            seats=seats,
            turn_duration=duration,
            selector=selector,
            publish=self.events.publish,
        )
        joined = [s for s in seats if s.status is ParticipantStatus.PRESENT]
        events = [actor._event(MeetingEventType.AGENT_JOINED, s, offset=i) for i, s in enumerate(joined)]
        now = _now()
        writes = [
            Write("meeting.host", self._presence.host_row(meeting_id)),
            Write(
                "meeting.create",
                (
                    meeting_id,
                    host_agent.organization_id,
                    host_agent.id,
                    duration,
                    "callable" if selector else "round_robin",
                ),
            ),
            *(
                Write(
                    "meeting.participant",
                    (meeting_id, s.agent_id, s.position, s.status.value, now if s in joined else None),
                )
                for s in seats
            ),
            *(
                Write(
                    "meeting.event", (meeting_id, e.seq, e.type.value, s.agent_id, None, 0, to_json({}), e.created_at)
                )
                for s, e in zip(joined, events, strict=True)
            ),
        ]
        await self.services.writer.write(writes)
        actor._applied(events)
        self._spawn(actor)
        log.info("meeting.created", meeting=str(meeting_id), host=host_name, participants=len(names))
        return meeting_id

    # ---------------------------------------------------------------- blocking

    async def attend_meeting(self, agent: str, meeting_id: UUID | str) -> Turn[T]:
        """Mark ``agent`` present (first time: event ``agent_joined``) and wait until it holds the floor.

        Returns its ``Turn`` (messages since its last turn, turn number,
        deadline), or a ``Turn`` with ``ended=True`` (and the ending message) or
        ``left=True``. After a restart, attending again gives the floor holder
        its turn back at once.
        """
        actor, name = await self._participant(agent, meeting_id)
        return await self._submit(actor, Command("attend", name, Waiter()))

    async def start_meeting(
        self, host: str, meeting_id: UUID | str, message: T, *, next_speaker: str | None = None
    ) -> Turn[T]:
        """Start the meeting with the host's opening ``message`` and wait for the host's next turn.

        Every participant must be present (``MeetingNotReady`` names the
        absent). The floor goes to ``next_speaker`` or the next by the policy.
        Host only (``NotHost``).
        """
        actor, name = await self._participant(host, meeting_id)
        if name != actor.host:
            raise NotHost(name, actor.id, "start the meeting")
        value, text = self.services.codec.prepare(message, "opening message")
        nxt = self._next(next_speaker)
        return await self._submit(actor, Command("start", name, Waiter(), value, text, nxt))

    async def speak(
        self, agent: str, meeting_id: UUID | str, message: T, *, next_speaker: str | None = None
    ) -> Turn[T]:
        """Say ``message`` as the floor holder, pass the floor, and wait for ``agent``'s next turn.

        ``NotYourTurn`` if ``agent`` does not hold the floor, ``TurnTimedOut``
        if its turn expired before it spoke (the floor has moved on: attend to
        wait for the next one), ``InvalidArgument`` if ``next_speaker`` is not
        a present participant.
        """
        actor, name = await self._participant(agent, meeting_id)
        value, text = self.services.codec.prepare(message)
        nxt = self._next(next_speaker)
        return await self._submit(actor, Command("speak", name, Waiter(), value, text, nxt))

    async def pass_turn(self, agent: str, meeting_id: UUID | str) -> Turn[T]:
        """Give up the floor without speaking, and wait for ``agent``'s next turn (errors as :meth:`speak`)."""
        actor, name = await self._participant(agent, meeting_id)
        return await self._submit(actor, Command("pass", name, Waiter()))

    # ----------------------------------------------------------- leaving, ending

    async def leave_meeting(self, agent: str, meeting_id: UUID | str) -> None:
        """Leave the meeting (not the host: ``InvalidOperation``).

        Applied at once if ``agent`` holds the floor or the meeting has not
        started, else when the current turn ends; returns once the leave is
        committed. ``agent``'s blocked call, if any, returns with ``left=True``.
        """
        actor, name = await self._participant(agent, meeting_id)
        if name == actor.host:
            raise InvalidOperation(f"the host {name!r} cannot leave meeting {actor.id}; end it instead")
        await actor.submit(Command("leave", name, Waiter()))

    async def end_meeting(self, host: str, meeting_id: UUID | str, *, message: T | None = None) -> None:
        """End the meeting (host only: ``NotHost``); every blocked participant wakes with ``ended=True``."""
        actor, name = await self._participant(host, meeting_id)
        if name != actor.host:
            raise NotHost(name, actor.id, "end the meeting")
        value, text = (None, None) if message is None else self.services.codec.prepare(message, "ending message")
        await actor.submit(Command("end", name, Waiter(), value, text))

    # ------------------------------------------------------------------- reads

    async def get_meeting_status(self, meeting_id: UUID | str) -> MeetingStatus:
        """State, host, floor holder, turn number and deadline, participants (``MeetingNotFound``)."""
        mid = _meeting_id(meeting_id)
        actor = self._actors.get(mid)
        if actor is not None:
            return actor.status()
        status = await store.fetch_status(self.services.db, mid)
        if status is None:
            raise MeetingNotFound(mid)
        return status

    async def get_meeting_history(
        self, meeting_id: UUID | str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[MeetingEvent[T]]:
        """Committed history entries with ``seq > after_seq`` (gap-free per meeting), oldest first."""
        mid = _meeting_id(meeting_id)
        if isinstance(after_seq, bool) or not isinstance(after_seq, int) or after_seq < 0:
            raise InvalidArgument(f"after_seq must be a non-negative int, not {after_seq!r}")
        check_limit(limit, "limit", 10_000)
        events = await store.fetch_history(self.services.db, self.services.codec, mid, after_seq, limit)
        if not events and mid not in self._actors and await store.fetch_state(self.services.db, mid) is None:
            raise MeetingNotFound(mid)
        return events

    async def list_meetings(self, *, active: bool | None = None) -> list[MeetingStatus]:
        """Meetings as stored, newest first: all (None), not ended (True) or ended (False)."""
        if active is not None and not isinstance(active, bool):
            raise InvalidArgument(f"active must be True, False or None, not {active!r}")
        return await store.list_meetings(self.services.db, active)

    # ----------------------------------------------------------------- helpers

    async def _actor(self, meeting_id: UUID | str) -> MeetingActor[T]:
        mid = _meeting_id(meeting_id)
        actor = self._actors.get(mid)
        if actor is not None:
            return actor
        self._require()
        state = await store.fetch_state(self.services.db, mid)
        if state is None:
            raise MeetingNotFound(mid)
        if state is MeetingState.ENDED:
            raise MeetingEnded(mid)
        # nobody alive runs it (its runtime stopped or died): this runtime takes it over
        await self._claim_and_recover([mid])
        actor = self._actors.get(mid)
        if actor is not None:
            return actor
        runner = await meeting_runner(self.services.db, mid)
        where = f"{runner['hostname']} pid {runner['pid']}" if runner else "another runtime"
        raise InvalidOperation(f"meeting {mid} is run by another runtime ({where}); call it there")

    async def _participant(self, agent: str, meeting_id: UUID | str) -> tuple[MeetingActor[T], str]:
        name = check_id(agent, "agent")
        actor = await self._actor(meeting_id)
        found = await self.services.directory.get(name)
        if name not in actor.seats:
            if found.organization_id != actor.organization_id:
                raise CrossOrganization(name, actor.host)
            raise InvalidOperation(f"agent {name!r} is not a participant of meeting {actor.id}")
        return actor, name

    @staticmethod
    def _next(next_speaker: str | None) -> str | None:
        return None if next_speaker is None else check_id(next_speaker, "next_speaker")

    @staticmethod
    async def _submit(actor: MeetingActor[T], command: Command[T]) -> Turn[T]:
        turn = await actor.submit(command)
        assert turn is not None
        return turn

    async def _hosted(self, actor: MeetingActor[T], agent: str, handler: TurnHandler) -> None:
        """A hosted participant: attend, then answer each turn with the handler's return value."""
        try:
            turn = await self._submit(actor, Command("attend", agent, Waiter()))
            while not (turn.ended or turn.left):
                turn = await self._take_turn(actor, agent, handler, turn)
        except MeetingEnded:
            pass
        except AgentMessagingError as exc:
            log.warning("meeting.hosted_agent_stopped", meeting=str(actor.id), agent=agent, error=str(exc))

    async def _take_turn(self, actor: MeetingActor[T], agent: str, handler: TurnHandler, turn: Turn[T]) -> Turn[T]:
        reply: Any = None
        deadline = clock_deadline(turn.deadline) + _SLACK
        try:
            with anyio.CancelScope(deadline=deadline):
                reply = await handler(turn)
        except Exception:
            log.exception("meeting.turn_handler_failed", meeting=str(actor.id), agent=agent)
        try:
            if reply is None:
                return await self._submit(actor, Command("pass", agent, Waiter()))
            try:
                value, text = self.services.codec.prepare(reply)
            except InvalidMessage as exc:
                log.warning("meeting.turn_reply_invalid", meeting=str(actor.id), agent=agent, error=str(exc))
                return await self._submit(actor, Command("pass", agent, Waiter()))
            return await self._submit(actor, Command("speak", agent, Waiter(), value, text))
        except (TurnTimedOut, NotYourTurn):
            return await self._submit(actor, Command("attend", agent, Waiter()))


def _meeting_id(value: UUID | str) -> UUID:
    if isinstance(value, UUID):
        return value
    if isinstance(value, str):
        try:
            return UUID(value)
        except ValueError:
            pass
    raise InvalidArgument(f"meeting_id must be a UUID, not {value!r}")


def _now() -> datetime:
    return datetime.now(UTC)
