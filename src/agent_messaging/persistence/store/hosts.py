"""Which runtime hosts which agent and runs which meeting: claims and liveness.

A runtime is alive exactly while it holds the session advisory lock
``runtime_key`` on its presence connection (see :mod:`..presence`); a host row
whose runtime no longer holds its lock can be claimed by another runtime.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from .._rows import as_uuid
from ..database import Database, Row
from ..writer import insert_statement

__all__ = [
    "MEETING_HOST",
    "RELEASE_AGENTS",
    "claim_agents",
    "claim_meetings",
    "hosts",
    "meeting_runner",
    "orphan_meetings",
    "turn_takers",
]

#: Whether the runtime that wrote host row ``h`` is alive (its presence lock is held).
ALIVE = """EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND ((l.classid::bigint << 32) | l.objid::bigint) = h.runtime_key)"""

_CLAIM = """
INSERT INTO {table} AS h ({column}, runtime_key, runtime_id, hostname, pid)
SELECT u.id, $2, $3, $4, $5 FROM unnest($1::uuid[]) AS u(id)
ON CONFLICT ({column}) DO UPDATE
    SET runtime_key = excluded.runtime_key, runtime_id = excluded.runtime_id,
        hostname = excluded.hostname, pid = excluded.pid, claimed_at = now()
    WHERE h.runtime_key = excluded.runtime_key OR NOT {alive}
RETURNING {column} AS id"""
_CLAIM_MEETINGS = _CLAIM.format(table="meeting_hosts", column="meeting_id", alive=ALIVE)
_CLAIM_AGENTS = f"""
INSERT INTO agent_hosts AS h (agent_id, takes_turns, runtime_key, runtime_id, hostname, pid)
SELECT u.id, u.turns, $3, $4, $5, $6 FROM unnest($1::uuid[], $2::bool[]) AS u(id, turns)
ON CONFLICT (agent_id) DO UPDATE
    SET takes_turns = excluded.takes_turns, runtime_key = excluded.runtime_key, runtime_id = excluded.runtime_id,
        hostname = excluded.hostname, pid = excluded.pid, claimed_at = now()
    WHERE h.runtime_key = excluded.runtime_key OR NOT {ALIVE}
RETURNING agent_id AS id"""

#: Active meetings nobody alive runs, with one of ``$1`` (live agents' external ids) among their participants.
_ORPHAN_MEETINGS = f"""
SELECT DISTINCT m.id FROM meetings m JOIN meeting_participants p ON p.meeting_id = m.id
JOIN agents a ON a.id = p.agent_id AND a.external_id = ANY($1::text[]) AND a.deregistered_at IS NULL
LEFT JOIN meeting_hosts h ON h.meeting_id = m.id
WHERE m.status <> 'ended' AND p.status <> 'left'
  AND (h.meeting_id IS NULL OR NOT {ALIVE})"""

#: The row that records a runtime as a new meeting's runner (written with the meeting's creation).
MEETING_HOST = insert_statement(
    "meeting.host",
    41,
    "meeting_hosts",
    "meeting_id, runtime_key, runtime_id, hostname, pid",
    "uuid, bigint, text, text, int",
)


async def _claim(db: Database, sql: str, ids: Sequence[uuid.UUID], owner: Sequence[Any]) -> set[uuid.UUID]:
    if not ids:
        return set()
    rows = await db.fetch(sql, [list(ids), *owner])
    return {as_uuid(row["id"]) for row in rows}


async def claim_agents(
    db: Database, ids: Sequence[uuid.UUID], turns: Sequence[bool], owner: Sequence[Any]
) -> set[uuid.UUID]:
    """Claim agents for the runtime ``owner`` = (key, runtime id, hostname, pid), recording whether it takes each
    one's meeting turns; returns the ones it now hosts."""
    if not ids:
        return set()
    rows = await db.fetch(_CLAIM_AGENTS, [list(ids), list(turns), *owner])
    return {as_uuid(row["id"]) for row in rows}


async def turn_takers(db: Database, agent_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Those of ``agent_ids`` whose meeting turns a live runtime takes (they attend meetings by themselves)."""
    if not agent_ids:
        return set()
    rows = await db.fetch(
        f"SELECT h.agent_id FROM agent_hosts h WHERE h.agent_id = ANY($1::uuid[]) AND h.takes_turns AND {ALIVE}",
        [list(agent_ids)],
    )
    return {as_uuid(row["agent_id"]) for row in rows}


async def claim_meetings(db: Database, ids: Sequence[uuid.UUID], owner: Sequence[Any]) -> set[uuid.UUID]:
    """Claim meetings (unowned, or their runtime died) for ``owner``; returns the ones it now runs."""
    return await _claim(db, _CLAIM_MEETINGS, ids, owner)


async def orphan_meetings(db: Database, agents: Sequence[str]) -> list[uuid.UUID]:
    """Active meetings nobody alive runs, in which one of ``agents`` (external ids) takes part."""
    return [as_uuid(r["id"]) for r in await db.fetch(_ORPHAN_MEETINGS, [list(agents)])]


#: Gives up every agent claim of a runtime key ($1); run on the presence connection as the runtime closes.
RELEASE_AGENTS = "DELETE FROM agent_hosts WHERE runtime_key = $1"


async def meeting_runner(db: Database, meeting_id: uuid.UUID) -> Row | None:
    """Which runtime runs an active meeting (and whether it is alive), or None."""
    return await db.fetch_row(
        f"SELECT runtime_id, hostname, pid, {ALIVE} AS alive FROM meeting_hosts h WHERE meeting_id = $1",
        [meeting_id],
    )


async def hosts(db: Database, agent_ids: Sequence[uuid.UUID] | None = None) -> list[Row]:
    """Where agents are hosted: runtime, hostname, pid, since, and whether that runtime is alive."""
    where, params = ("", []) if agent_ids is None else ("WHERE h.agent_id = ANY($1::uuid[])", [list(agent_ids)])
    params_any: list[Any] = list(params)
    return await db.fetch(
        f"SELECT h.agent_id, h.runtime_id, h.hostname, h.pid, h.claimed_at, {ALIVE} "
        f"AS alive FROM agent_hosts h {where}",
        params_any,
    )
