"""Meetings: their batched writes, history, status and the rows an actor is rebuilt from at recovery.

Reads go straight to the pool (writes go through the persistence actor). Every
function here takes a few bulk queries, never one query per meeting or per
participant, so recovering a thousand meetings costs a handful of round trips.
Functions that return history take ``decode``, which turns a stored payload
into the runtime's message type.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from ...models import MeetingEvent, MeetingEventType, MeetingState, MeetingStatus, Participant, ParticipantStatus
from .._rows import as_uuid, json_dict
from ..database import Database, Row
from ..writer import Statement, insert_statement

__all__ = [
    "COMMAND",
    "COMMANDS_ENDED",
    "COMMAND_APPLIED",
    "COMMAND_DONE",
    "CREATE",
    "EVENT",
    "FIRST_GENERATION",
    "PARTICIPANT",
    "PARTICIPANT_STATE",
    "RUNNER_GUARD",
    "STATE",
    "MeetingListing",
    "MeetingRow",
    "SeatRow",
    "count_active",
    "event_from_row",
    "fetch_events",
    "fetch_history",
    "fetch_meeting",
    "fetch_status",
    "list_meetings",
    "list_meetings_with_times",
    "load_active",
    "meetings_of",
    "participants_of",
    "pending_commands",
    "runner_lost",
    "status_of",
    "with_pending_commands",
]

Decode = Callable[[Any], Any]

# ---------------------------------------------------------------------------------------- batched writes

#: A new meeting: (id, organization_id, host_id, turn_duration, speaker_selection).
CREATE = insert_statement(
    "meeting.create",
    40,
    "meetings",
    "id, organization_id, host_id, turn_duration, speaker_selection",
    "uuid, uuid, uuid, float8, text",
)
#: A participant: (meeting_id, agent_id, position, status, joined_at).
PARTICIPANT = insert_statement(
    "meeting.participant",
    41,
    "meeting_participants",
    "meeting_id, agent_id, position, status, joined_at",
    "uuid, uuid, int, text, timestamptz",
)
#: A participant's new status: (meeting_id, agent_id, status, last_turn_seq).
PARTICIPANT_STATE = Statement(
    "meeting.participant_state",
    42,
    "UPDATE meeting_participants p SET status = u.status, "
    "last_turn_seq = greatest(p.last_turn_seq, u.last_turn_seq), "
    "joined_at = CASE WHEN u.status = 'present' THEN coalesce(p.joined_at, now()) ELSE p.joined_at END, "
    "left_at = CASE WHEN u.status = 'left' THEN coalesce(p.left_at, now()) ELSE p.left_at END "
    "FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bigint[]) "
    "AS u(meeting_id, agent_id, status, last_turn_seq) "
    "WHERE p.meeting_id = u.meeting_id AND p.agent_id = u.agent_id",
    updates="meeting_participants",
    key=None,
)
#: A history entry: (meeting_id, seq, type, agent_id, payload JSON, turn_number, data JSON, created_at).
EVENT = insert_statement(
    "meeting.event",
    43,
    "meeting_events",
    "meeting_id, seq, type, agent_id, payload, turn_number, data, created_at",
    "uuid, bigint, text, uuid, text, int, text, timestamptz",
)
#: The meeting row, fenced: (id, status, floor_holder, turn_number, turn_deadline, last_seq, runner_generation).
#: Every transition writes it, and it updates nothing unless the row still carries the generation of the
#: claim that started the actor (a claim bumps it: ``store.hosts.claim_meetings``, migration 0005).
STATE = Statement(
    "meeting.state",
    44,
    "UPDATE meetings m SET status = u.status, floor_holder = u.floor_holder, turn_number = u.turn_number, "
    "turn_deadline = u.turn_deadline, last_seq = greatest(m.last_seq, u.last_seq), "
    "started_at = CASE WHEN u.status = 'active' THEN coalesce(m.started_at, now()) ELSE m.started_at END, "
    "ended_at = CASE WHEN u.status = 'ended' THEN coalesce(m.ended_at, now()) ELSE m.ended_at END "
    "FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::int[], $5::timestamptz[], $6::bigint[], $7::bigint[]) "
    "AS u(id, status, floor_holder, turn_number, turn_deadline, last_seq, generation) "
    "WHERE m.id = u.id AND m.runner_generation = u.generation RETURNING m.id",
    updates="meetings",
)
#: Fails a transition's batch whose :data:`STATE` row updated nothing: another claim runs the meeting now, so a
#: transition held up in the writer through a database restart cannot land after the meeting was claimed
#: again (by another runtime or by this one): (meeting_id,). A check: the batch runs it and reads nothing back.
RUNNER_GUARD = Statement(
    "meeting.runner_guard",
    49,
    "SELECT agent_messaging_runner_moved(u.id) FROM unnest($1::uuid[]) AS u(id) "
    "WHERE u.id NOT IN (SELECT id FROM {requires})",
    requires=STATE,
    check=True,
)


def runner_lost(exc: BaseException) -> bool:
    """Whether a write failed on :data:`RUNNER_GUARD`: another runtime runs the meeting now."""
    return "is no longer run by this runtime" in str(exc)


#: The runner generation of a new meeting's row (the column's default): its creator's claim.
FIRST_GENERATION = 1

#: A command from another runtime: (id, meeting_id, op, agent_id, payload JSON, next_speaker, origin).
COMMAND = insert_statement(
    "meeting.command",
    45,
    "meeting_commands",
    "id, meeting_id, op, agent_id, payload, next_speaker, origin",
    "uuid, uuid, text, uuid, text, text, text",
)
#: The runner applied a command (written with the transition it caused): (id,).
COMMAND_APPLIED = Statement(
    "meeting.command_applied",
    46,
    "UPDATE meeting_commands c SET applied_at = coalesce(c.applied_at, now()) FROM unnest($1::uuid[]) AS u(id) "
    "WHERE c.id = u.id",
    updates="meeting_commands",
)
#: A command's result is ready: (id, result JSON, error JSON).
COMMAND_DONE = Statement(
    "meeting.command_done",
    47,
    "UPDATE meeting_commands c SET done_at = coalesce(c.done_at, now()), applied_at = coalesce(c.applied_at, now()), "
    "result = u.result::jsonb, error = u.error::jsonb FROM unnest($1::uuid[], $2::text[], $3::text[]) "
    "AS u(id, result, error) WHERE c.id = u.id AND c.done_at IS NULL",
    updates="meeting_commands",
)

#: The meeting ended: the commands of other runtimes its runner never took get ``error`` (MeetingEnded), in the
#: end's own commit: (meeting_id, error JSON, the ids its runner took, comma-separated: their callers get their
#: results from it). The end's NOTIFY (``actors.meeting.remote.ended_key``) wakes their callers.
COMMANDS_ENDED = Statement(
    "meeting.commands_ended",
    48,
    "UPDATE meeting_commands c SET done_at = now(), applied_at = now(), error = u.error::jsonb "
    "FROM unnest($1::uuid[], $2::text[], $3::text[]) AS u(meeting_id, error, taken) "
    "WHERE c.meeting_id = u.meeting_id AND c.done_at IS NULL AND c.applied_at IS NULL "
    "AND c.id <> ALL (string_to_array(u.taken, ',')::uuid[])",
    updates="meeting_commands",
    key=None,
)

# ---------------------------------------------------------------------------------------- reads

_EVENT_COLUMNS = """e.meeting_id, e.seq, e.type, a.external_id AS agent, e.payload::text AS payload, e.turn_number,
    e.data::text AS data, e.created_at"""
_EVENT_FROM = "meeting_events e LEFT JOIN agents a ON a.id = e.agent_id"


@dataclass
class SeatRow:
    """One participant row, with the history seq it has seen up to (derived from the history)."""

    agent: str
    agent_id: uuid.UUID
    position: int
    status: ParticipantStatus
    seen_seq: int = 0


@dataclass
class MeetingRow:
    """One meeting row with its participants (in rotation order) and, for recovery, its unseen history."""

    id: uuid.UUID
    organization_id: uuid.UUID
    host: str
    state: MeetingState
    turn_duration: float | None
    speaker_selection: str
    floor_holder: str | None
    turn_number: int
    turn_deadline: datetime | None
    last_seq: int
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    seats: list[SeatRow] = field(default_factory=list)
    events: list[MeetingEvent[Any]] = field(default_factory=list)


@dataclass(frozen=True)
class MeetingListing:
    """A meeting's status with when it was created, started and ended (for operators' listings)."""

    status: MeetingStatus
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None


class _SeatLike(Protocol):
    @property
    def agent(self) -> str: ...
    @property
    def position(self) -> int: ...
    @property
    def status(self) -> ParticipantStatus: ...


def participants_of(seats: list[Any]) -> list[Participant]:
    """The public participants of seats (a meeting actor's or a store row's), in the order given."""
    return [_participant(seat) for seat in seats]


def _participant(seat: _SeatLike) -> Participant:
    return Participant(agent=seat.agent, position=seat.position, is_host=seat.position == 0, status=seat.status)


def event_from_row(row: Row, decode: Decode) -> MeetingEvent[Any]:
    """A ``MeetingEvent`` from a history row (its payload decoded with ``decode``).

    A payload ``decode`` refuses (a ``ValueError``: written by another client or an older version of
    the message type) leaves the entry in the history without its message, the reason in
    ``data["undecodable"]``: one bad row never makes a meeting's history unreadable or unrecoverable.
    """
    payload = row["payload"]
    data = json_dict(row["data"])
    try:
        message = decode(payload) if payload is not None else None
    except ValueError as exc:
        message, data = None, {**data, "undecodable": str(exc)}
    return MeetingEvent[Any].model_construct(
        meeting_id=as_uuid(row["meeting_id"]),
        seq=int(row["seq"]),
        type=MeetingEventType(row["type"]),
        agent=row["agent"],
        message=message,
        turn_number=int(row["turn_number"]),
        data=data,
        created_at=row["created_at"],
    )


async def fetch_history(
    db: Database, decode: Decode, meeting_id: uuid.UUID, after_seq: int, limit: int
) -> list[MeetingEvent[Any]]:
    """History entries of one meeting with ``seq > after_seq``, oldest first, at most ``limit``."""
    rows = await db.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM {_EVENT_FROM} WHERE e.meeting_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3",
        [meeting_id, after_seq, limit],
    )
    return [event_from_row(r, decode) for r in rows]


async def fetch_events(db: Database, decode: Decode, after: dict[uuid.UUID, int]) -> dict[uuid.UUID, list[Any]]:
    """For each meeting in ``after``, its history entries past the given seq (one query for all)."""
    if not after:
        return {}
    ids = list(after)
    rows = await db.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM unnest($1::uuid[], $2::bigint[]) AS w(meeting_id, after_seq) "
        f"JOIN {_EVENT_FROM} ON e.meeting_id = w.meeting_id AND e.seq > w.after_seq ORDER BY e.meeting_id, e.seq",
        [ids, [after[i] for i in ids]],
    )
    result: dict[uuid.UUID, list[Any]] = {i: [] for i in ids}
    for r in rows:
        result[as_uuid(r["meeting_id"])].append(event_from_row(r, decode))
    return result


_MEETING_SELECT = """SELECT m.id, m.organization_id, h.external_id AS host, m.status, m.turn_duration,
    m.speaker_selection, f.external_id AS floor_holder, m.turn_number, m.turn_deadline, m.last_seq, m.created_at,
    m.started_at, m.ended_at
    FROM meetings m JOIN agents h ON h.id = m.host_id LEFT JOIN agents f ON f.id = m.floor_holder"""


def _meeting(row: Row) -> MeetingRow:
    return MeetingRow(
        id=as_uuid(row["id"]),
        organization_id=as_uuid(row["organization_id"]),
        host=row["host"],
        state=MeetingState(row["status"]),
        turn_duration=row["turn_duration"],
        speaker_selection=row["speaker_selection"],
        floor_holder=row["floor_holder"],
        turn_number=int(row["turn_number"]),
        turn_deadline=row["turn_deadline"],
        last_seq=int(row["last_seq"]),
        created_at=row["created_at"],
        started_at=row["started_at"],
        ended_at=row["ended_at"],
    )


async def _attach_seats(db: Database, meetings: dict[uuid.UUID, MeetingRow], *, seen: bool = False) -> None:
    if not meetings:
        return
    ids = list(meetings)
    rows = await db.fetch(
        "SELECT p.meeting_id, a.external_id AS agent, p.agent_id, p.position, p.status "
        "FROM meeting_participants p JOIN agents a ON a.id = p.agent_id "
        "WHERE p.meeting_id = ANY($1::uuid[]) ORDER BY p.meeting_id, p.position",
        [ids],
    )
    seen_seq: dict[tuple[uuid.UUID, str], int] = {}
    if seen:
        # what a participant has seen: up to the floor change that ended its last turn
        for r in await db.fetch(
            "SELECT meeting_id, data->>'from' AS agent, max(seq) AS seq FROM meeting_events "
            "WHERE meeting_id = ANY($1::uuid[]) AND type = 'turn_changed' "
            "AND data->>'reason' IN ('start', 'spoke', 'passed') GROUP BY 1, 2",
            [ids],
        ):
            seen_seq[as_uuid(r["meeting_id"]), r["agent"]] = int(r["seq"])
        for r in await db.fetch(
            "SELECT meeting_id, max(seq) AS seq FROM meeting_events WHERE meeting_id = ANY($1::uuid[]) GROUP BY 1",
            [ids],
        ):
            meeting = meetings[as_uuid(r["meeting_id"])]
            meeting.last_seq = max(meeting.last_seq, int(r["seq"]))
    for r in rows:
        meeting = meetings[as_uuid(r["meeting_id"])]
        meeting.seats.append(
            SeatRow(
                agent=r["agent"],
                agent_id=as_uuid(r["agent_id"]),
                position=int(r["position"]),
                status=ParticipantStatus(r["status"]),
                seen_seq=seen_seq.get((meeting.id, r["agent"]), 0),
            )
        )


async def fetch_meeting(db: Database, meeting_id: uuid.UUID) -> MeetingRow | None:
    """One meeting with its participants, or None."""
    rows = await db.fetch(f"{_MEETING_SELECT} WHERE m.id = $1", [meeting_id])
    if not rows:
        return None
    meeting = _meeting(rows[0])
    await _attach_seats(db, {meeting.id: meeting})
    return meeting


async def load_active(db: Database, decode: Decode, ids: list[uuid.UUID]) -> list[MeetingRow]:
    """The meetings of ``ids`` not ended, with participants and the history not seen yet."""
    rows = await db.fetch(
        f"{_MEETING_SELECT} WHERE m.status <> 'ended' AND m.id = ANY($1::uuid[]) ORDER BY m.created_at", [ids]
    )
    meetings = {m.id: m for m in map(_meeting, rows)}
    await _attach_seats(db, meetings, seen=True)
    after = {}
    for m in meetings.values():
        live = [s.seen_seq for s in m.seats if s.status is not ParticipantStatus.LEFT]
        after[m.id] = min(live, default=m.last_seq)
    events = await fetch_events(db, decode, after)
    for m in meetings.values():
        m.events = events.get(m.id, [])
    return list(meetings.values())


def status_of(meeting: MeetingRow) -> MeetingStatus:
    """A ``MeetingStatus`` from a meeting row."""
    return MeetingStatus(
        meeting_id=meeting.id,
        state=meeting.state,
        host=meeting.host,
        floor_holder=meeting.floor_holder,
        turn_number=meeting.turn_number,
        turn_deadline=meeting.turn_deadline,
        turn_duration=meeting.turn_duration,
        participants=participants_of(meeting.seats),
    )


async def fetch_status(db: Database, meeting_id: uuid.UUID) -> MeetingStatus | None:
    """The status of a meeting as stored, or None if there is no such meeting."""
    meeting = await fetch_meeting(db, meeting_id)
    return status_of(meeting) if meeting is not None else None


async def fetch_state(db: Database, meeting_id: uuid.UUID) -> MeetingState | None:
    """The stored state of a meeting (one query), or None if there is no such meeting."""
    value = await db.fetch_val("SELECT status FROM meetings WHERE id = $1", [meeting_id])
    return None if value is None else MeetingState(value)


async def list_meetings(db: Database, active: bool | None) -> list[MeetingStatus]:
    """Meetings as stored, newest first: all, only those not ended (``active=True``) or only ended ones."""
    return [listing.status for listing in await list_meetings_with_times(db, active)]


async def list_meetings_with_times(db: Database, active: bool | None) -> list[MeetingListing]:
    """Like :func:`list_meetings`, each with when it was created, started and ended."""
    where = {None: "", True: " WHERE m.status <> 'ended'", False: " WHERE m.status = 'ended'"}[active]
    rows = await db.fetch(f"{_MEETING_SELECT}{where} ORDER BY m.created_at DESC, m.id")
    meetings = {m.id: m for m in map(_meeting, rows)}
    await _attach_seats(db, meetings)
    return [
        MeetingListing(status_of(m), created_at=m.created_at, started_at=m.started_at, ended_at=m.ended_at)
        for m in meetings.values()
    ]


async def count_active(db: Database) -> int:
    """How many meetings have not ended."""
    return int(await db.fetch_val("SELECT count(*) FROM meetings WHERE status <> 'ended'") or 0)


async def pending_commands(db: Database, meeting_id: uuid.UUID, *, applied: bool = True) -> list[Row]:
    """Commands of other runtimes to a meeting still without a result, in order.

    ``applied=False`` leaves out those already applied (their callers wait for a turn): what a runner that
    is running the meeting needs; a runner that just took it over needs them all.
    """
    new_only = "" if applied else " AND c.applied_at IS NULL"
    return await db.fetch(
        "SELECT c.id, c.op, a.external_id AS agent, c.payload::text AS payload, c.next_speaker, c.origin, "
        "c.applied_at IS NOT NULL AS applied FROM meeting_commands c JOIN agents a ON a.id = c.agent_id "
        f"WHERE c.meeting_id = $1 AND c.done_at IS NULL{new_only} ORDER BY c.seq",
        [meeting_id],
    )


async def with_pending_commands(db: Database, meeting_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``meeting_ids`` with commands not applied yet (one query)."""
    if not meeting_ids:
        return set()
    rows = await db.fetch(
        "SELECT DISTINCT meeting_id FROM meeting_commands WHERE meeting_id = ANY($1::uuid[]) "
        "AND done_at IS NULL AND applied_at IS NULL",
        [meeting_ids],
    )
    return {as_uuid(r["meeting_id"]) for r in rows}


async def command_result(db: Database, command_id: uuid.UUID, alive: str) -> Row | None:
    """A command's result (``done``, ``applied``, ``result`` and ``error`` as JSON text), its meeting's state, and
    whether a live runtime runs the meeting (``alive`` is the liveness expression of ``store.hosts``)."""
    return await db.fetch_row(
        "SELECT c.done_at IS NOT NULL AS done, c.applied_at IS NOT NULL AS applied, c.result::text AS result, "
        "c.error::text AS error, m.status, "
        f"EXISTS (SELECT 1 FROM meeting_hosts h WHERE h.meeting_id = m.id AND {alive}) AS runner_alive "
        "FROM meeting_commands c JOIN meetings m ON m.id = c.meeting_id WHERE c.id = $1",
        [command_id],
    )


async def meetings_of(db: Database, agents: list[str]) -> list[Row]:
    """Active meetings in which these agents (external ids) take part and have not left: (meeting_id, agent)."""
    return await db.fetch(
        "SELECT p.meeting_id, a.external_id AS agent FROM meeting_participants p "
        "JOIN agents a ON a.id = p.agent_id AND a.external_id = ANY($1::text[]) "
        "JOIN meetings m ON m.id = p.meeting_id AND m.status <> 'ended' WHERE p.status <> 'left' AND p.position > 0",
        [agents],
    )
