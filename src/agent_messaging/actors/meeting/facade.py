"""Turn-based meetings of many agents: ``am.meeting``.

:class:`Meetings` is the facade. It validates every call completely before
anything is written (unknown agents, other organizations, duplicates, bad
payloads, wrong caller), then hands the call to the meeting's actor
(:mod:`.actor`), which alone changes the meeting's state, writes it through the
persistence actor and wakes the agent whose turn it is. Blocked callers wait
on in-memory slots and hold no pool connection.

The meeting actors run under the meeting supervisor (:mod:`.runners`), the
hosted participants in their own task group (:mod:`.participants`) and the
event handlers in the event dispatcher (:mod:`.events`); the runtime's root
owns all three.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from ..._log import get_logger
from ..._tracing import annotate, current, span
from ..._validation import check_cursor, check_id, check_limit, check_timeout
from ...errors import (
    CrossOrganization,
    InvalidArgument,
    InvalidOperation,
    LifecycleError,
    MeetingEnded,
    MeetingNotFound,
    NotHost,
)
from ...models import AgentInfo, MeetingEvent, MeetingEventType, MeetingState, MeetingStatus, ParticipantStatus, Turn
from ...persistence._rows import to_json
from ...persistence.store import hosts, meetings as store
from ...persistence.store.agents import new_id
from ...persistence.writer import Write
from ..registry import Registry
from ..services import Services
from .actor import MeetingHandle
from .remote import RemoteCaller, turns_key
from .runners import MeetingRunners
from .types import Command, MeetingSnapshot, Op, Seat, Selector, turn_attributes

__all__ = ["Meetings"]

T = TypeVar("T")
log = get_logger("agent_messaging.meeting")
_DEFAULT: Any = object()
_KNOWN_LIMIT = 10_000


@dataclass(frozen=True)
class _Target(Generic[T]):
    """A meeting as a call sees it: what never changes about it, and its actor if it is run here."""

    id: UUID
    host: str
    organization_id: UUID
    seats: Collection[str]
    handle: MeetingHandle[T] | None = None


class Meetings(Generic[T]):
    """Turn-based meetings: create, attend, start, speak, leave, end; status and history.

    Obtain it as ``am.meeting``. Every blocking call (``attend_meeting``,
    ``start_meeting``, ``speak``) returns a :class:`~agent_messaging.models.Turn`
    when the caller next holds the floor, or one with ``ended=True`` /
    ``left=True``; bound it with your own cancel scope if you need to.
    """

    def __init__(self, services: Services[T], registry: Registry[T], runners: MeetingRunners[T]) -> None:
        self.services = services
        self.registry = registry
        self.runners = runners
        self.remote: RemoteCaller[T] = RemoteCaller(services, self._take_over)
        self._elsewhere: OrderedDict[UUID, _Target[T]] = OrderedDict()  # meetings run by other runtimes

    def _require(self) -> None:
        if not self.runners.running:
            raise LifecycleError("meetings are not being served (is the runtime open?)")

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
        if self.services.tracing:
            invited = len(participants) if isinstance(participants, Sequence) else 0  # checked by _create
            attributes = {"agent_messaging.agent": str(host), "agent_messaging.meeting.participants": invited}
            with span("meeting create", "client", attributes):
                meeting_id = await self._create(host, participants, turn_duration, speaker_selection)
                annotate({"agent_messaging.meeting.id": str(meeting_id)})
                return meeting_id
        return await self._create(host, participants, turn_duration, speaker_selection)

    async def _create(
        self, host: str, participants: Sequence[str], turn_duration: float | None, speaker_selection: str | Selector
    ) -> UUID:
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
        # participants whose turns a live runtime takes (this one or another) attend by themselves
        takers = {agent.id for agent in agents if self.registry.has_turn_handler(agent.external_id)}
        others = [agent.id for agent in agents if agent.id not in takers]
        takers |= await hosts.turn_takers(self.services.db, others)  # no query when all are taken here
        seats = [Seat[T](host_name, host_agent.id, 0, ParticipantStatus.PRESENT)]
        for position, agent in enumerate(agents, 1):
            status = ParticipantStatus.PRESENT if agent.id in takers else ParticipantStatus.INVITED
            seats.append(Seat[T](agent.external_id, agent.id, position, status))
        joined = [s for s in seats if s.status is ParticipantStatus.PRESENT]
        now = _now()
        events: list[MeetingEvent[Any]] = [
            MeetingEvent[Any].model_construct(
                meeting_id=meeting_id,
                seq=seq,
                type=MeetingEventType.AGENT_JOINED,
                agent=s.agent,
                message=None,
                turn_number=0,
                data={},
                created_at=now,
            )
            for seq, s in enumerate(joined, 1)
        ]
        writes = [
            self.services.presence.host_write(meeting_id),
            Write(
                store.CREATE,
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
                    store.PARTICIPANT,
                    (meeting_id, s.agent_id, s.position, s.status.value, now if s in joined else None),
                )
                for s in seats
            ),
            *(
                Write(store.EVENT, (meeting_id, e.seq, e.type.value, s.agent_id, None, 0, to_json({}), e.created_at))
                for s, e in zip(joined, events, strict=True)
            ),
        ]
        awaited = [turns_key(meeting_id, a.external_id) for a in agents if a.id in takers]
        epoch = self.runners.epoch  # a fence before the actor starts: restore runs the meeting
        await self.services.writer.write(writes, notify=awaited)
        snapshot = MeetingSnapshot(seats=seats, turn_duration=duration, seq=len(events), history=events, fresh=True)
        handle = MeetingHandle(meeting_id, host_agent.organization_id, host_name, selector, snapshot)
        await self.runners.spawn(handle, epoch)
        self.runners.publish(events)
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
        target, who = await self._participant(agent, meeting_id)
        return await self._turn(target, who, Command(Op.ATTEND, who.external_id))

    async def start_meeting(
        self, host: str, meeting_id: UUID | str, message: T, *, next_speaker: str | None = None
    ) -> Turn[T]:
        """Start the meeting with the host's opening ``message`` and wait for the host's next turn.

        Every participant must be present (``MeetingNotReady`` names the
        absent). The floor goes to ``next_speaker`` or the next by the policy.
        Host only (``NotHost``).
        """
        target, who = await self._participant(host, meeting_id)
        if who.external_id != target.host:
            raise NotHost(who.external_id, target.id, "start the meeting")
        value, text = self.services.codec.prepare(message, "opening message")
        nxt = self._next(next_speaker)
        return await self._turn(target, who, Command(Op.START, who.external_id, value, text, nxt))

    async def speak(
        self, agent: str, meeting_id: UUID | str, message: T, *, next_speaker: str | None = None
    ) -> Turn[T]:
        """Say ``message`` as the floor holder, pass the floor, and wait for ``agent``'s next turn.

        ``NotYourTurn`` if ``agent`` does not hold the floor, ``TurnTimedOut``
        if its turn expired before it spoke (the floor has moved on: attend to
        wait for the next one), ``InvalidArgument`` if ``next_speaker`` is not
        a present participant.
        """
        target, who = await self._participant(agent, meeting_id)
        value, text = self.services.codec.prepare(message)
        nxt = self._next(next_speaker)
        return await self._turn(target, who, Command(Op.SPEAK, who.external_id, value, text, nxt))

    async def pass_turn(self, agent: str, meeting_id: UUID | str) -> Turn[T]:
        """Give up the floor without speaking, and wait for ``agent``'s next turn (errors as :meth:`speak`)."""
        target, who = await self._participant(agent, meeting_id)
        return await self._turn(target, who, Command(Op.PASS, who.external_id))

    # ----------------------------------------------------------- leaving, ending

    async def leave_meeting(self, agent: str, meeting_id: UUID | str) -> None:
        """Leave the meeting (not the host: ``InvalidOperation``).

        Applied at once if ``agent`` holds the floor or the meeting has not
        started, else when the current turn ends; returns once the leave is
        committed. ``agent``'s blocked call, if any, returns with ``left=True``.
        """
        target, who = await self._participant(agent, meeting_id)
        if who.external_id == target.host:
            raise InvalidOperation(f"the host {who.external_id!r} cannot leave meeting {target.id}; end it instead")
        await self._command(target, who, Command(Op.LEAVE, who.external_id))

    async def end_meeting(self, host: str, meeting_id: UUID | str, *, message: T | None = None) -> None:
        """End the meeting (host only: ``NotHost``); every blocked participant wakes with ``ended=True``."""
        target, who = await self._participant(host, meeting_id)
        if who.external_id != target.host:
            raise NotHost(who.external_id, target.id, "end the meeting")
        value, text = (None, None) if message is None else self.services.codec.prepare(message, "ending message")
        await self._command(target, who, Command(Op.END, who.external_id, value, text))

    # ------------------------------------------------------------------- reads

    async def get_meeting_status(self, meeting_id: UUID | str) -> MeetingStatus:
        """State, host, floor holder, turn number and deadline, participants (``MeetingNotFound``)."""
        mid = _meeting_id(meeting_id)
        handle = self.runners.handles.get(mid)
        if handle is not None and handle.actor is not None:
            return handle.actor.status()
        status = await store.fetch_status(self.services.db, mid)
        if status is None:
            raise MeetingNotFound(mid)
        return status

    async def get_meeting_history(
        self, meeting_id: UUID | str, *, after_seq: int = 0, limit: int = 1000
    ) -> list[MeetingEvent[T]]:
        """Committed history entries with ``seq > after_seq`` (gap-free per meeting), oldest first."""
        mid = _meeting_id(meeting_id)
        check_cursor(after_seq, "after_seq")
        check_limit(limit, "limit", 10_000)
        events = await store.fetch_history(self.services.db, self.services.codec.decode, mid, after_seq, limit)
        if not events and mid not in self.runners.handles and await store.fetch_state(self.services.db, mid) is None:
            raise MeetingNotFound(mid)
        return events

    async def list_meetings(self, *, active: bool | None = None) -> list[MeetingStatus]:
        """Meetings as stored, newest first: all (None), not ended (True) or ended (False)."""
        if active is not None and not isinstance(active, bool):
            raise InvalidArgument(f"active must be True, False or None, not {active!r}")
        return await store.list_meetings(self.services.db, active)

    # ----------------------------------------------------------------- helpers

    async def _target(self, meeting_id: UUID | str) -> _Target[T]:
        """The meeting, run here (its handle) or elsewhere; an orphan (nobody alive runs it) is taken over."""
        mid = _meeting_id(meeting_id)
        handle = self.runners.handles.get(mid)
        if handle is not None:
            return _local(handle)
        known = self._elsewhere.get(mid)
        if known is not None:
            return known
        self._require()
        meeting = await store.fetch_meeting(self.services.db, mid)
        if meeting is None:
            raise MeetingNotFound(mid)
        if meeting.state is MeetingState.ENDED:
            raise MeetingEnded(mid)
        if await self._take_over(mid):
            return await self._target(mid)
        seats = frozenset(s.agent for s in meeting.seats)
        target: _Target[T] = _Target(mid, meeting.host, meeting.organization_id, seats)
        self._elsewhere[mid] = target  # who takes part never changes: remember it
        if len(self._elsewhere) > _KNOWN_LIMIT:
            self._elsewhere.popitem(last=False)
        return target

    async def _take_over(self, meeting_id: UUID) -> bool:
        """Run the meeting here if nobody alive runs it (its runtime stopped or died); whether it is run here."""
        await self.runners.take_over([meeting_id])
        return meeting_id in self.runners.handles

    async def _participant(self, agent: str, meeting_id: UUID | str) -> tuple[_Target[T], AgentInfo]:
        name = check_id(agent, "agent")
        target = await self._target(meeting_id)
        found = await self.services.directory.get(name)
        if name not in target.seats:
            if found.organization_id != target.organization_id:
                raise CrossOrganization(name, target.host)
            raise InvalidOperation(
                f"agent {name!r} is not a participant of meeting {target.id}: only its host and the agents "
                "create_meeting invited take part"
            )
        return target, found

    @staticmethod
    def _next(next_speaker: str | None) -> str | None:
        return None if next_speaker is None else check_id(next_speaker, "next_speaker")

    async def _command(self, target: _Target[T], agent: AgentInfo | None, command: Command[T]) -> Turn[T] | None:
        """Hand ``command`` to the meeting's actor, here or (through the database) in another runtime.

        With tracing on, in a ``meeting <op>`` span that lasts until the result (the caller's next turn).
        """
        if self.services.tracing:
            with span(f"meeting {command.op.value}", "client", command.span_attributes(target.id)):
                command.trace = current()
                turn = await self._submit(target, agent, command)
                if turn is not None:
                    annotate(turn_attributes(turn))
                return turn
        return await self._submit(target, agent, command)

    async def _submit(self, target: _Target[T], agent: AgentInfo | None, command: Command[T]) -> Turn[T] | None:
        """``agent`` (the caller) is needed only by a meeting run elsewhere."""
        try:
            if target.handle is not None:
                return await self.runners.submit(target.handle, command)
            assert agent is not None
            return await self.remote.submit(target.id, agent, command)
        except MeetingEnded:
            self._elsewhere.pop(target.id, None)
            raise

    async def _turn(self, target: _Target[T], agent: AgentInfo, command: Command[T]) -> Turn[T]:
        turn = await self._command(target, agent, command)
        assert turn is not None
        return turn

    async def _participant_command(self, meeting_id: UUID, command: Command[T]) -> Turn[T] | None:
        """Run a command for a participant whose turns this runtime takes, wherever the meeting is run."""
        handle = self.runners.handles.get(meeting_id)
        if handle is not None and command.agent in handle.seats:  # run here: nothing to look up
            return await self._command(_local(handle), None, command)
        target, who = await self._participant(command.agent, meeting_id)
        return await self._command(target, who, command)


def _local(handle: MeetingHandle[T]) -> _Target[T]:
    """A meeting run here, as a call sees it (who takes part never changes: its seats are a view)."""
    return _Target(handle.id, handle.host, handle.organization_id, handle.seats.keys(), handle)


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
