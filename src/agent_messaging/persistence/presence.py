"""Runtime presence and fenced ownership across processes.

Each runtime opens one *presence* connection and takes a session-level
advisory lock on a random key. It is alive exactly while that lock is held:
when its process dies, PostgreSQL closes the connection and drops the lock.
``agent_hosts`` and ``meeting_hosts`` record which runtime hosts which agent
and runs which meeting. One lock per runtime (not per agent) keeps the lock
table small however many agents are hosted.

Ownership is *fenced* (:mod:`.store.hosts`): a lock also goes when the
database restarts or the connection drops while the process lives on. So
another runtime takes over what a runtime owned only after its lock has been
seen gone for ``Config.ownership_lease`` seconds, and :meth:`Presence.watch`
checks the connection every lease/4: on a failed (or slow) check the runtime
*fences* itself at once (stops every agent and meeting actor it runs: no
intake, no handling), reconnects with backoff, takes its lock again, and
*restores*: re-claims what it owned (what another runtime took meanwhile stays
there) and starts again. A claim is refused to a runtime that does not hold
its lock, so a runtime between losing its connection and noticing it claims
nothing.
"""

from __future__ import annotations

import math
import os
import random
import socket
import uuid
from collections.abc import Awaitable, Callable, Sequence

import anyio
import psqlpy
from anyio.abc import TaskStatus

from .._log import get_logger
from .database import Database
from .store import hosts
from .writer import Write

__all__ = ["Presence"]

log = get_logger("agent_messaging.presence")

#: What :meth:`Presence.watch` calls when the runtime lost (``fence``) and regained (``restore``) its lock.
Callback = Callable[[], Awaitable[None]]


#: Ends the session that still holds lock $1 (this runtime's previous presence session, nobody else's).
_END_STALE_SESSION = (
    "SELECT pg_terminate_backend(l.pid) FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted "
    "AND l.objsubid = 1 AND ((l.classid::bigint << 32) | l.objid::bigint) = $1 AND l.pid <> pg_backend_pid()"
)


class _NotYet(Exception):
    """The lock is still held by this runtime's previous session (the server has not noticed it gone)."""


class Presence:
    """This runtime's liveness lock, its claims on agents and meetings, and the watch that fences them."""

    def __init__(self, db: Database, runtime_id: str, lease: float = 2.0) -> None:
        self.db = db
        self.runtime_id = runtime_id
        self.lease = lease
        self.key = random.SystemRandom().getrandbits(62) + 1  # not the global random: a program may seed it
        self.hostname = socket.gethostname()
        self.pid = os.getpid()
        self.held = False
        """Whether this runtime holds its lock as far as it knows (claims are made only then)."""
        self.outages = 0
        """How many times the runtime lost its lock (and fenced itself)."""
        self._conn: psqlpy.Connection | None = None

    async def _connect(self, *, wait: bool) -> psqlpy.Connection:
        timeout = max(1, math.ceil(self.lease / 4))
        conn = await psqlpy.connect(
            dsn=self.db.dsn,
            application_name="agent-messaging-presence",
            connect_timeout_sec=timeout,
            tcp_user_timeout_sec=timeout,  # a dead peer fails the check instead of hanging it
            keepalives=True,
        )
        try:
            if wait:
                await conn.execute("SELECT pg_advisory_lock($1)", [self.key])
            else:
                result = await conn.execute("SELECT pg_try_advisory_lock($1) AS ok", [self.key])
                if not result.result()[0]["ok"]:
                    # our previous session, which the server has not noticed gone (a peer that vanished without
                    # a word keeps it until the server's keepalive): end it; the next attempt takes the lock
                    await conn.execute(_END_STALE_SESSION, [self.key])
                    raise _NotYet
        except BaseException:
            conn.close()
            raise
        return conn

    async def open(self) -> None:
        """Open the presence connection and take the liveness lock."""

        async def connect() -> psqlpy.Connection:
            return await self._connect(wait=True)

        self._conn = await self.db.run_on_loop(connect)
        self.held = True
        log.info("presence.open", runtime=self.runtime_id)

    async def close(self) -> None:
        """Give up every claim and the lock (closing the connection releases it)."""
        self.held = False
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

    async def watch(
        self, fence: Callback, restore: Callback, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        """Check the lock every lease/4 until cancelled; when it is lost, ``fence``, reconnect, ``restore``.

        ``fence`` must stop all handling at once (it is called within half a lease of the loss); ``restore``
        re-claims what the runtime owned. Run it in the runtime's task group.
        """
        async with anyio.create_task_group() as tg:
            task_status.started()
            restoring = anyio.CancelScope()
            while True:
                await anyio.sleep(self.lease / 4)
                if await self._check():
                    continue
                restoring.cancel()  # a restore still under way is void: the runtime fences itself again
                self.held = False
                self.outages += 1
                lost_at = anyio.current_time()
                log.warning("presence.lost", runtime=self.runtime_id, action="stopped every agent and meeting here")
                await fence()
                await self._reconnect()
                # in its own task, so that the checks go on while agents start (their on_start is user code)
                restoring = anyio.CancelScope()
                tg.start_soon(self._restore, restore, restoring, lost_at)

    async def _restore(self, restore: Callback, scope: anyio.CancelScope, lost_at: float) -> None:
        with scope:
            try:
                await restore()
            except Exception as exc:  # the sweep re-claims what is still on standby
                log.warning("presence.restore_failed", error=repr(exc))
            outage = round(anyio.current_time() - lost_at, 3)
            log.warning("presence.restored", runtime=self.runtime_id, outage=outage)

    async def _check(self) -> bool:
        """Whether the lock is still held: the presence connection answers (a dropped connection fails at once;
        a dead peer within the connection's TCP user timeout: a quarter of the lease, at least a second)."""
        conn = self._conn
        return conn is not None and await self.db.answers(conn)

    async def _reconnect(self) -> None:
        """Open a new presence connection and take the lock again, with backoff, however long it takes."""
        old, self._conn = self._conn, None
        if old is not None:

            async def close() -> None:
                old.close()

            await self.db.run_on_loop(close)
        delay = 0.05
        while True:
            try:

                async def connect() -> psqlpy.Connection:
                    return await self._connect(wait=False)

                self._conn = await self.db.run_on_loop(connect)
                self.held = True
                return
            except _NotYet:
                log.info("presence.lock_still_held", runtime=self.runtime_id)
            except Exception as exc:
                log.info("presence.reconnect_failed", error=repr(exc), retry_in=delay)
            await anyio.sleep(delay)
            delay = min(delay * 2, self.lease)

    @property
    def owner(self) -> tuple[int, str, str, int]:
        """This runtime as a host row records it: (lock key, runtime id, hostname, pid)."""
        return (self.key, self.runtime_id, self.hostname, self.pid)

    async def claim(self, agent_ids: Sequence[uuid.UUID], turns: Sequence[bool] | None = None) -> set[uuid.UUID]:
        """Claim these agents for this runtime (``turns``: whether it takes each one's meeting turns);
        returns the ones it now hosts."""
        if not self.held:
            return set()
        takes = list(turns) if turns is not None else [False] * len(agent_ids)
        return await hosts.claim_agents(self.db, agent_ids, takes, self.owner, self.lease)

    async def claim_meetings(self, meeting_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, int]:
        """Claim these meetings for this runtime (unowned, or their runtime gone for a lease); returns the ones it
        now runs, each with its claim generation (see ``store.meetings.STATE``)."""
        if not self.held:
            return {}
        return await hosts.claim_meetings(self.db, meeting_ids, self.owner, self.lease)

    def host_write(self, meeting_id: uuid.UUID) -> Write:
        """The writer row that records this runtime as a new meeting's runner (its first claim: runner
        generation ``store.meetings.FIRST_GENERATION``)."""
        return Write(hosts.MEETING_HOST, (meeting_id, *self.owner, self.lease))
