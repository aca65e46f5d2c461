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

import anyio
import psqlpy

from .._log import get_logger
from .database import Database
from .store import hosts
from .writer import Write

__all__ = ["Presence"]

log = get_logger("agent_messaging.presence")

class Presence:
    """This runtime's liveness lock and its claims on agents."""

    def __init__(self, db: Database, runtime_id: str) -> None:
        self.db = db
        self.runtime_id = runtime_id
        self.key = random.SystemRandom().getrandbits(62) + 1  # not the global random: a program may seed it
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
                await conn.execute(hosts.RELEASE_AGENTS, [self.key])
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

    @property
    def owner(self) -> tuple[int, str, str, int]:
        """This runtime as a host row records it: (lock key, runtime id, hostname, pid)."""
        return (self.key, self.runtime_id, self.hostname, self.pid)

    async def claim(self, agent_ids: Sequence[uuid.UUID], turns: Sequence[bool] | None = None) -> set[uuid.UUID]:
        """Claim these agents for this runtime (``turns``: whether it takes each one's meeting turns);
        returns the ones it now hosts."""
        takes = list(turns) if turns is not None else [False] * len(agent_ids)
        return await hosts.claim_agents(self.db, agent_ids, takes, self.owner)

    async def claim_meetings(self, meeting_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
        """Claim these meetings for this runtime (unowned, or their runtime died); returns the ones it now runs."""
        return await hosts.claim_meetings(self.db, meeting_ids, self.owner)

    def host_write(self, meeting_id: uuid.UUID) -> Write:
        """The writer row that records this runtime as a new meeting's runner."""
        return Write(hosts.MEETING_HOST, (meeting_id, *self.owner))
