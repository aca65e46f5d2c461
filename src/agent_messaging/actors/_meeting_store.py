"""Meeting reads: history, status and the rows an actor is rebuilt from at recovery.

Reads go straight to the pool (writes go through the persistence actor). Every
function here takes a few bulk queries, never one query per meeting or per
participant, so recovering a thousand meetings costs a handful of round trips.
psqlpy returns uuid columns as ``str``; this module turns them back into UUIDs.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from ..models import MeetingEvent, MeetingEventType, MeetingState, MeetingStatus, ParticipantStatus
from ..persistence.database import Database, Row
from ..runtime._services import Codec
from ._meeting_types import participants_of

__all__ = [
    "MeetingRow",
    "SeatRow",
    "event_from_row",
    "fetch_events",
    "fetch_history",
    "fetch_meeting",
    "fetch_status",
    "list_meetings",
    "load_active",
    "status_of",
]

T = TypeVar("T")

_EVENT_COLUMNS = """e.meeting_id, e.seq, e.type, a.external_id AS agent, e.payload, e.turn_number, e.data,
    e.created_at"""
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
    seats: list[SeatRow] = field(default_factory=list)
    events: list[MeetingEvent[Any]] = field(default_factory=list)


def _uuid(value: Any) -> uuid.UUID:
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def event_from_row(row: Row, codec: Codec[T]) -> MeetingEvent[T]:
    """A ``MeetingEvent`` from a history row (payload decoded as ``T``)."""
    payload = row["payload"]
    data = row["data"]
    if isinstance(data, str):
        data = json.loads(data)
    return MeetingEvent[Any].model_construct(
        meeting_id=_uuid(row["meeting_id"]),
        seq=int(row["seq"]),
        type=MeetingEventType(row["type"]),
        agent=row["agent"],
        message=codec.decode(payload) if payload is not None else None,
        turn_number=int(row["turn_number"]),
        data=dict(data or {}),
        created_at=row["created_at"],
    )


async def fetch_history(
    db: Database, codec: Codec[T], meeting_id: uuid.UUID, after_seq: int, limit: int
) -> list[MeetingEvent[T]]:
    """History entries of one meeting with ``seq > after_seq``, oldest first, at most ``limit``."""
    rows = await db.fetch(
        f"SELECT {_EVENT_COLUMNS} FROM {_EVENT_FROM} WHERE e.meeting_id = $1 AND e.seq > $2 ORDER BY e.seq LIMIT $3",
        [meeting_id, after_seq, limit],
    )
    return [event_from_row(r, codec) for r in rows]


async def fetch_events(db: Database, codec: Codec[T], after: dict[uuid.UUID, int]) -> dict[uuid.UUID, list[Any]]:
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
        result[_uuid(r["meeting_id"])].append(event_from_row(r, codec))
    return result


_MEETING_SELECT = """SELECT m.id, m.organization_id, h.external_id AS host, m.status, m.turn_duration,
    m.speaker_selection, f.external_id AS floor_holder, m.turn_number, m.turn_deadline, m.last_seq, m.created_at
    FROM meetings m JOIN agents h ON h.id = m.host_id LEFT JOIN agents f ON f.id = m.floor_holder"""


def _meeting(row: Row) -> MeetingRow:
    return MeetingRow(
        id=_uuid(row["id"]),
        organization_id=_uuid(row["organization_id"]),
        host=row["host"],
        state=MeetingState(row["status"]),
        turn_duration=row["turn_duration"],
        speaker_selection=row["speaker_selection"],
        floor_holder=row["floor_holder"],
        turn_number=int(row["turn_number"]),
        turn_deadline=row["turn_deadline"],
        last_seq=int(row["last_seq"]),
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
            seen_seq[_uuid(r["meeting_id"]), r["agent"]] = int(r["seq"])
        for r in await db.fetch(
            "SELECT meeting_id, max(seq) AS seq FROM meeting_events WHERE meeting_id = ANY($1::uuid[]) GROUP BY 1",
            [ids],
        ):
            meeting = meetings[_uuid(r["meeting_id"])]
            meeting.last_seq = max(meeting.last_seq, int(r["seq"]))
    for r in rows:
        meeting = meetings[_uuid(r["meeting_id"])]
        meeting.seats.append(
            SeatRow(
                agent=r["agent"],
                agent_id=_uuid(r["agent_id"]),
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


async def load_active(db: Database, codec: Codec[T], ids: list[uuid.UUID]) -> list[MeetingRow]:
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
    events = await fetch_events(db, codec, after)
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
    where = {None: "", True: " WHERE m.status <> 'ended'", False: " WHERE m.status = 'ended'"}[active]
    rows = await db.fetch(f"{_MEETING_SELECT}{where} ORDER BY m.created_at DESC")
    meetings = {m.id: m for m in map(_meeting, rows)}
    await _attach_seats(db, meetings)
    return [status_of(m) for m in meetings.values()]
