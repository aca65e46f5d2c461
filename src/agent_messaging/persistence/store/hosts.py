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
    "hosted_live",
    "hosts",
    "meeting_runner",
    "orphan_meetings",
    "still_runs",
    "turn_takers",
]

#: Whether the runtime that wrote host row ``h`` is alive (its presence lock is held).
ALIVE = """EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
    AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
    AND ((l.classid::bigint << 32) | l.objid::bigint) = h.runtime_key)"""


def _held(key: str) -> str:
    """Whether the advisory lock ``key`` (an SQL expression) is held: the liveness test of :data:`ALIVE`."""
    return ALIVE.replace("h.runtime_key", key)


# Fenced ownership. A host row may be claimed by the runtime that wrote it, or once its runtime has been
# seen dead for the lease (``absent_since``, set by :data:`_MARK`, older than the longer of the owner's lease
# and the claimer's): a runtime that lost its connection but still lives stops handling within half its lease
# (``Presence.watch``), so two runtimes never handle one agent (or run one meeting) at once. A claimer must
# hold its own lock: a runtime between losing its connection and noticing it claims nothing.
_TAKEABLE = (
    "(h.runtime_key = excluded.runtime_key OR (NOT {alive} AND h.absent_since IS NOT NULL "
    "AND h.absent_since < now() - make_interval(secs => greatest(h.lease, excluded.lease))))"
)

#: Start (or end) the lease of host rows whose runtime is (no longer) seen dead; $1 ids, $2 the claimer's key.
#: Only rows whose mark changes are written.
_MARK = """UPDATE {table} h SET absent_since = CASE WHEN {alive} THEN NULL ELSE now() END
WHERE h.{column} = ANY($1::uuid[]) AND h.runtime_key <> $2 AND (h.absent_since IS NULL) <> {alive}"""

_CLAIM_MEETING_HOSTS = f"""
INSERT INTO meeting_hosts AS h (meeting_id, runtime_key, runtime_id, hostname, pid, lease)
SELECT u.id, $2, $3, $4, $5, $6 FROM unnest($1::uuid[]) AS u(id) WHERE {_held("$2::bigint")}
ON CONFLICT (meeting_id) DO UPDATE
    SET runtime_key = excluded.runtime_key, runtime_id = excluded.runtime_id, hostname = excluded.hostname,
        pid = excluded.pid, lease = excluded.lease, claimed_at = now(), absent_since = NULL
    WHERE {_TAKEABLE.format(alive=ALIVE)}
RETURNING meeting_id"""
#: A claim of meetings bumps each one's runner generation, which fences the transitions of earlier claims
#: (``store.meetings.STATE``; the row lock orders the claim and a transition in flight).
_CLAIM_MEETINGS = f"""WITH c AS ({_CLAIM_MEETING_HOSTS})
UPDATE meetings m SET runner_generation = m.runner_generation + 1 FROM c WHERE m.id = c.meeting_id
RETURNING m.id, m.runner_generation AS generation"""
_CLAIM_AGENTS = f"""
INSERT INTO agent_hosts AS h (agent_id, takes_turns, runtime_key, runtime_id, hostname, pid, lease)
SELECT u.id, u.turns, $3, $4, $5, $6, $7 FROM unnest($1::uuid[], $2::bool[]) AS u(id, turns)
WHERE {_held("$3::bigint")}
ON CONFLICT (agent_id) DO UPDATE
    SET takes_turns = excluded.takes_turns, runtime_key = excluded.runtime_key, runtime_id = excluded.runtime_id,
        hostname = excluded.hostname, pid = excluded.pid, lease = excluded.lease, claimed_at = now(),
        absent_since = NULL
    WHERE {_TAKEABLE.format(alive=ALIVE)}
RETURNING agent_id AS id"""
_MARK_AGENTS = _MARK.format(table="agent_hosts", column="agent_id", alive=ALIVE)
_MARK_MEETINGS = _MARK.format(table="meeting_hosts", column="meeting_id", alive=ALIVE)

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
    "meeting_id, runtime_key, runtime_id, hostname, pid, lease",
    "uuid, bigint, text, text, int, real",
)


async def claim_agents(
    db: Database, ids: Sequence[uuid.UUID], turns: Sequence[bool], owner: Sequence[Any], lease: float
) -> set[uuid.UUID]:
    """Claim agents for the runtime ``owner`` = (key, runtime id, hostname, pid), recording whether it takes each
    one's meeting turns; returns the ones it now hosts (see the lease above)."""
    if not ids:
        return set()
    pairs = sorted(zip(ids, turns, strict=True))  # one lock order for every claimer: no deadlock between two
    ordered = [agent_id for agent_id, _turns in pairs]
    await db.execute(_MARK_AGENTS, [ordered, owner[0]])
    rows = await db.fetch(_CLAIM_AGENTS, [ordered, [t for _id, t in pairs], *owner, lease])
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


async def claim_meetings(
    db: Database, ids: Sequence[uuid.UUID], owner: Sequence[Any], lease: float
) -> dict[uuid.UUID, int]:
    """Claim meetings (unowned, or their runtime gone for a lease) for ``owner``; returns the ones it now runs,
    each with the generation of this claim (its transitions carry it: ``store.meetings.STATE``)."""
    if not ids:
        return {}
    ordered = sorted(ids)
    await db.execute(_MARK_MEETINGS, [ordered, owner[0]])
    rows = await db.fetch(_CLAIM_MEETINGS, [ordered, *owner, lease])
    return {as_uuid(row["id"]): int(row["generation"]) for row in rows}


async def still_runs(db: Database, ids: Sequence[uuid.UUID], key: int) -> set[uuid.UUID]:
    """Those of the active meetings ``ids`` whose host row names runtime ``key``."""
    if not ids:
        return set()
    rows = await db.fetch(
        "SELECT h.meeting_id FROM meeting_hosts h JOIN meetings m ON m.id = h.meeting_id "
        "WHERE h.meeting_id = ANY($1::uuid[]) AND h.runtime_key = $2 AND m.status <> 'ended'",
        [list(ids), key],
    )
    return {as_uuid(row["meeting_id"]) for row in rows}


async def orphan_meetings(db: Database, agents: Sequence[str]) -> list[uuid.UUID]:
    """Active meetings nobody alive runs, in which one of ``agents`` (external ids) takes part."""
    return [as_uuid(r["id"]) for r in await db.fetch(_ORPHAN_MEETINGS, [list(agents)])]


#: Gives up every claim of a runtime key ($1) on agents and meetings (another runtime may take them at once);
#: run on the presence connection as the runtime closes, after its agent and meeting actors stopped.
RELEASE_AGENTS = (
    "WITH a AS (DELETE FROM agent_hosts WHERE runtime_key = $1) DELETE FROM meeting_hosts WHERE runtime_key = $1"
)


async def hosted_live(db: Database, agent_id: uuid.UUID) -> bool:
    """Whether a live runtime hosts the agent (its handler runs somewhere)."""
    row = await db.fetch_row(
        f"SELECT {ALIVE} AS alive FROM agent_hosts h WHERE h.agent_id = $1",
        [agent_id],
    )
    return bool(row and row["alive"])


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
