"""``Database``: one psqlpy connection pool, usable from asyncio and trio.

Every call goes through the :mod:`._bridge`, so the same code runs on both
backends. Work that needs one connection for several statements is written as
a coroutine function of a psqlpy connection (or transaction) and handed to
:meth:`Database.run` / :meth:`Database.transaction`; it runs entirely on the
psqlpy loop. Connection-level failures surface as ``PersistenceUnavailable``
with the host named and no password.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import psqlpy
from psqlpy import exceptions as pg_exc

from .._log import get_logger
from ..config import dsn_host, dsn_password, redact_dsn
from ..errors import PersistenceUnavailable
from ._bridge import Bridge, open_bridge

__all__ = ["Database", "Row", "is_connection_error"]

R = TypeVar("R")
Row = dict[str, Any]
log = get_logger("agent_messaging.persistence")

_CONNECTION_ERRORS = (
    pg_exc.BaseConnectionPoolError,
    pg_exc.ConnectionPoolExecuteError,
    pg_exc.ConnectionClosedError,
    pg_exc.InterfaceError,
    pg_exc.OperationalError,
    ConnectionError,
    OSError,
)
_DISCONNECT_WORDS = (
    "connection closed",
    "terminating connection",
    "connection refused",
    "error connecting",
    "broken pipe",
    "connection reset",
    "no such file",
    "timed out",
    "shutting down",
    "the database system is",
    "administrator command",
    "closed",
    "db error: fatal",
)


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable (retryable), not that the statement is wrong."""
    if isinstance(exc, pg_exc.ConnectionPoolBuildError | pg_exc.ConnectionPoolConfigurationError):
        return False
    text = str(exc).lower()
    if "db error: error:" in text:
        return False  # the server answered with an ERROR: this statement failed, the connection is fine
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    return isinstance(exc, pg_exc.Error) and any(word in text for word in _DISCONNECT_WORDS)


class Database:
    """A psqlpy ``ConnectionPool`` plus the backend bridge. Open with :meth:`open`, close with :meth:`aclose`."""

    def __init__(self, dsn: str, *, pool_size: int = 10, connect_timeout: float = 10.0) -> None:
        self._dsn = dsn
        self.pool_size = pool_size
        self.connect_timeout = connect_timeout
        self.host = dsn_host(dsn)
        self.redacted_dsn = redact_dsn(dsn)
        self._bridge: Bridge | None = None
        self._pool: psqlpy.ConnectionPool | None = None

    def __repr__(self) -> str:
        return f"Database({self.redacted_dsn!r}, pool_size={self.pool_size})"

    @property
    def dsn(self) -> str:
        """The DSN in clear, for opening another connection to the same server (never log it)."""
        return self._dsn

    async def open(self) -> None:
        """Create the pool and check the server answers, retrying until ``connect_timeout``."""
        self._bridge = open_bridge()

        async def make_pool() -> psqlpy.ConnectionPool:
            return psqlpy.ConnectionPool(
                dsn=self._dsn,
                max_db_pool_size=self.pool_size,
                connect_timeout_sec=max(1, int(self.connect_timeout)),
                application_name="agent-messaging",
            )

        try:
            self._pool = await self._bridge.run(make_pool)
        except pg_exc.Error as exc:
            await self.aclose()
            raise PersistenceUnavailable(_clean(exc, self._dsn), host=self.host) from None
        delay = 0.05
        with anyio.move_on_after(self.connect_timeout) as scope:
            while True:
                try:
                    await self.fetch_val("SELECT 1")
                    break
                except PersistenceUnavailable as exc:
                    log.warning("database.connect_retry", host=self.host, error=str(exc), delay=delay)
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 1.0)
        if scope.cancelled_caught:
            await self.aclose()
            raise PersistenceUnavailable(
                f"no answer within {self.connect_timeout:g}s (connect timeout)", host=self.host
            ) from None

    async def aclose(self) -> None:
        """Close the pool and stop the bridge."""
        bridge, pool = self._bridge, self._pool
        self._bridge = self._pool = None
        if bridge is None:
            return
        with anyio.CancelScope(shield=True):
            if pool is not None:

                async def close() -> None:
                    pool.close()

                await bridge.run(close)
            await bridge.aclose()

    def _require(self) -> tuple[Bridge, psqlpy.ConnectionPool]:
        if self._bridge is None or self._pool is None:
            raise PersistenceUnavailable("the database is not open", host=self.host)
        return self._bridge, self._pool

    async def run(self, fn: Callable[[psqlpy.Connection], Awaitable[R]]) -> R:
        """Run ``fn(connection)`` on one pooled connection, on the psqlpy loop."""
        bridge, pool = self._require()

        async def call() -> R:
            async with pool.acquire() as conn:
                return await fn(conn)

        try:
            return await bridge.run(call)
        except pg_exc.Error as exc:
            if is_connection_error(exc):
                raise PersistenceUnavailable(_clean(exc, self._dsn), host=self.host) from exc
            raise

    async def transaction(self, fn: Callable[[psqlpy.Transaction], Awaitable[R]]) -> R:
        """Run ``fn(transaction)`` in one transaction: committed if it returns, rolled back if it raises."""

        async def call(conn: psqlpy.Connection) -> R:
            async with conn.transaction() as tx:
                return await fn(tx)

        return await self.run(call)

    async def fetch(self, sql: str, params: Sequence[Any] | None = None) -> list[Row]:
        """Rows of one query, as dicts."""

        async def call(conn: psqlpy.Connection) -> list[Row]:
            result = await conn.execute(sql, list(params) if params is not None else None)
            rows: list[Row] = result.result()
            return rows

        return await self.run(call)

    async def fetch_row(self, sql: str, params: Sequence[Any] | None = None) -> Row | None:
        """The first row of one query, or None."""
        rows = await self.fetch(sql, params)
        return rows[0] if rows else None

    async def fetch_val(self, sql: str, params: Sequence[Any] | None = None) -> Any:
        """The first column of the first row, or None."""
        row = await self.fetch_row(sql, params)
        return next(iter(row.values())) if row else None

    async def execute(self, sql: str, params: Sequence[Any] | None = None) -> None:
        """Run one statement for its effect."""
        await self.fetch(sql, params)

    async def run_on_loop(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        """Run an arbitrary coroutine function on the psqlpy loop (for the listener)."""
        bridge, _pool = self._require()
        return await bridge.run(fn, *args)

    def call_soon_in_caller(self, fn: Callable[[], None]) -> None:
        """From a callback on the psqlpy loop, schedule ``fn()`` on the runtime's event loop."""
        bridge, _pool = self._require()
        bridge.call_soon_in_caller(fn)

    @property
    def pool(self) -> psqlpy.ConnectionPool:
        """The psqlpy pool (use only on the psqlpy loop, through :meth:`run_on_loop`)."""
        return self._require()[1]


def _clean(exc: BaseException, dsn: str) -> str:
    """An error text with the DSN's password removed, whatever the driver put in it."""
    text = str(exc) or type(exc).__name__
    if dsn and dsn in text:
        text = text.replace(dsn, redact_dsn(dsn))
    secret = dsn_password(dsn)
    if secret:
        text = text.replace(secret, "***")
    return text
