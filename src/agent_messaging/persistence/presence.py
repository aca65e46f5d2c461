"""Runtime presence and agent ownership across processes.

Each runtime opens one *presence* connection and takes a session-level
advisory lock on a random key. It is alive exactly while that lock is held:
when its process dies, PostgreSQL closes the connection and drops the lock.
``agent_hosts`` records which runtime hosts which agent; a runtime may claim an
agent that nobody hosts, or whose recorded host no longer holds its lock. One
lock per runtime (not per agent) keeps the lock table small however many
agents are hosted.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import Sequence
from typing import Any

import anyio
import psqlpy
import structlog

from .database import Database, Row

__all__ = ["Presence"]

log = structlog.get_logger("agent_messaging.presence")

#: Whether the runtime that wrote host row ``h`` is alive (its presence lock is held).
_ALIVE = """EXISTS (SELECT 1 FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
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
_CLAIM_AGENTS = _CLAIM.format(table="agent_hosts", column="agent_id", alive=_ALIVE)
_CLAIM_MEETINGS = _CLAIM.format(table="meeting_hosts", column="meeting_id", alive=_ALIVE)

#: Active meetings nobody alive runs, with one of ``$1`` (live agents' external ids) among their participants.
ORPHAN_MEETINGS = f"""
SELECT DISTINCT m.id FROM meetings m JOIN meeting_participants p ON p.meeting_id = m.id
JOIN agents a ON a.id = p.agent_id AND a.external_id = ANY($1::text[]) AND a.deregistered_at IS NULL
LEFT JOIN meeting_hosts h ON h.meeting_id = m.id
WHERE m.status <> 'ended' AND p.status <> 'left'
  AND (h.meeting_id IS NULL OR NOT {_ALIVE})"""


class Presence:
    """This runtime's liveness lock and its claims on agents."""

    def __init__(self, db: Database, runtime_id: str) -> None:
        self.db = db
        self.runtime_id = runtime_id
        self.key = random.getrandbits(62) + 1
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self._conn: psqlpy.Connection | None = None

    async def open(self) -> None:
        """Open the presence connection and take the liveness lock."""

        async def connect() -> psqlpy.Connection:
            conn = await psqlpy.connect(dsn=self.db.dsn, application_name="agent-messaging-presence")
            await conn.execute("SELECT pg_advisory_lock($1)", [self.key])
            return conn

        self._conn = await self.db.run_on_loop(connect)
        log.info("presence.open", runtime=self.runtime_id)

    async def close(self) -> None:
        """Give up every claim and the lock (closing the connection releases it)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return

        async def release() -> None:
            try:
                await conn.execute("DELETE FROM agent_hosts WHERE runtime_key = $1", [self.key])
            finally:
                conn.close()

        with anyio.CancelScope(shield=True):
            try:
                await self.db.run_on_loop(release)
            except Exception as exc:  # the lock goes with the connection anyway
                log.warning("presence.release_failed", error=repr(exc))

    async def ensure_alive(self) -> None:
        """Check the lock is still held; reconnect and re-lock if the connection broke."""
        conn = self._conn
        if conn is None:
            return

        async def check() -> None:
            await conn.execute("SELECT 1")

        try:
            await self.db.run_on_loop(check)
            return
        except Exception as exc:
            log.warning("presence.lost", runtime=self.runtime_id, error=repr(exc))
        try:
            await self.open()
        except Exception as exc:
            log.warning("presence.reconnect_failed", error=repr(exc))

    async def claim(self, agent_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Claim these agents for this runtime; returns the ones it now hosts."""
        return await self._claim(_CLAIM_AGENTS, agent_ids)

    async def claim_meetings(self, meeting_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Claim these meetings for this runtime (unowned, or their runtime died); returns the ones it now runs."""
        return await self._claim(_CLAIM_MEETINGS, meeting_ids)

    async def _claim(self, sql: str, ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        if not ids:
            return set()
        rows = await self.db.fetch(sql, [list(ids), self.key, self.runtime_id, self.hostname, self.pid])
        return {uuid.UUID(str(row["id"])) for row in rows}

    def host_row(self, meeting_id: uuid.UUID) -> tuple[Any, ...]:
        """The ``meeting.host`` writer row that records this runtime as the meeting's runner."""
        return (meeting_id, self.key, self.runtime_id, self.hostname, self.pid)


async def meeting_runner(db: Database, meeting_id: uuid.UUID) -> Row | None:
    """Which runtime runs an active meeting (and whether it is alive), or None."""
    return await db.fetch_row(
        f"SELECT runtime_id, hostname, pid, {_ALIVE} AS alive FROM meeting_hosts h WHERE meeting_id = $1",
        [meeting_id],
    )


async def hosts(db: Database, agent_ids: Sequence[uuid.UUID] | None = None) -> list[Row]:
    """Where agents are hosted: runtime, hostname, pid, since, and whether that runtime is alive."""
    where, params = ("", []) if agent_ids is None else ("WHERE h.agent_id = ANY($1::uuid[])", [list(agent_ids)])
    params_any: list[Any] = list(params)
    return await db.fetch(
        f"SELECT h.agent_id, h.runtime_id, h.hostname, h.pid, h.claimed_at, {_ALIVE} "
        f"AS alive FROM agent_hosts h {where}",
        params_any,
    )
