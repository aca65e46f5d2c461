"""``Database``: one psqlpy connection pool, usable from asyncio and trio.

Every call goes through the :mod:`._bridge`, so the same code runs on both
backends. Work that needs one connection for several statements is written as
a coroutine function of a psqlpy connection (or transaction) and handed to
:meth:`Database.run` / :meth:`Database.transaction`; it runs entirely on the
psqlpy loop. Connection-level failures surface as ``PersistenceUnavailable``
with the host named and no password.

Opening retries only what retrying can fix: a server that is not reachable yet
(refused, starting up, too many connections) until ``connect_timeout``, then
``PersistenceUnavailable`` with the last error. A server that answered and
refused us (wrong password, unknown role or database, no ``pg_hba.conf``
entry...) and a DSN that cannot be read are ``ConfigurationError`` at once,
with the server's reason and what to change: waiting would not help, and a
caller that retries on ``PersistenceUnavailable`` must not spin on them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import anyio
import psqlpy
from psqlpy import exceptions as pg_exc

from .._log import get_logger
from ..config import check_dsn, dsn_host, dsn_password, mask_secret, redact_dsn
from ..errors import ConfigurationError, PersistenceUnavailable
from ._bridge import Bridge, open_bridge

__all__ = ["Database", "Row", "is_connection_error", "is_transient"]

R = TypeVar("R")
Row = dict[str, Any]
log = get_logger("agent_messaging.persistence")
_TCP_USER_TIMEOUT = 15

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


_WHERE_DSN = "the DSN (AGENT_MESSAGING_DSN, Config(dsn=...), or the CLI's --dsn)"
#: Connection failures retrying cannot fix: the server's (or the driver's) reason, and what to do about it.
_REJECTIONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern, re.IGNORECASE), fix)
    for pattern, fix in (
        (r"password authentication failed", f"check the user name and password in {_WHERE_DSN}"),
        (r"authentication failed", f"check the user name and password in {_WHERE_DSN}"),
        (r"password missing", f"the server asks for a password: add it to {_WHERE_DSN}"),
        (
            r'role "(?P<name>[^"]*)" does not exist',
            "create the role (CREATE ROLE \"{name}\" LOGIN PASSWORD '...') or name an existing user in " + _WHERE_DSN,
        ),
        (
            r'role "(?P<name>[^"]*)" is not permitted to log in',
            'allow it to log in (ALTER ROLE "{name}" LOGIN) or name another user in ' + _WHERE_DSN,
        ),
        (
            r'database "(?P<name>[^"]*)" does not exist',
            'create the database (createdb "{name}", or CREATE DATABASE "{name}") or name an existing one in '
            + _WHERE_DSN,
        ),
        (
            r'permission denied for database "(?P<name>[^"]*)"',
            'grant the user access (GRANT CONNECT ON DATABASE "{name}" TO ...) or name another user in ' + _WHERE_DSN,
        ),
        (
            r"no pg_hba\.conf entry",
            "the server's pg_hba.conf does not let this user connect to this database from here: add an entry "
            f"for it (then reload the server) or change the user, database or host in {_WHERE_DSN}",
        ),
        (
            r"error performing tls handshake|does not support tls",
            f"the client and the server disagree on TLS: check the sslmode in {_WHERE_DSN} and the server's ssl "
            "setting",
        ),
    )
)
_PSQLPY_PREFIXES = (
    "Database engine pool exception: ",
    "Error occurred while creating a new object: ",
    "Connection pool build error: ",
    "db error: ",
    "FATAL: ",
)


def _reason(exc: BaseException, dsn: str) -> str:
    """The driver's error text without psqlpy's wrapping (the server's own words), password masked."""
    return _reason_text(_clean(exc, dsn))


def connection_refused_by_server(exc: BaseException, dsn: str, host: str) -> ConfigurationError | None:
    """The ``ConfigurationError`` for a connection failure retrying cannot fix (None for any other error)."""
    if not isinstance(exc, pg_exc.Error) or "db error: error:" in str(exc).lower():
        return None  # not the driver's, or a failed statement on a working connection
    if isinstance(exc, pg_exc.ConnectionPoolBuildError | pg_exc.ConnectionPoolConfigurationError):
        return ConfigurationError(
            f"the DSN cannot be used: {_reason(exc, dsn)}; fix {_WHERE_DSN} (for example postgresql://user:"
            "password@host:5432/dbname, with @ : / ? # in the password percent-encoded)"
        )
    text = str(exc)
    for pattern, fix in _REJECTIONS:
        match = pattern.search(text)
        if match is not None:
            names = {k: v.replace('"', "") for k, v in match.groupdict().items()}
            return ConfigurationError(
                f"the database server at {host} refused the connection: {_reason(exc, dsn)}; {fix.format(**names)}"
            )
    return None


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the database is unreachable (retryable), not that the statement is wrong."""
    if isinstance(exc, pg_exc.ConnectionPoolBuildError | pg_exc.ConnectionPoolConfigurationError):
        return False
    if isinstance(exc, pg_exc.Error) and any(pattern.search(str(exc)) for pattern, _fix in _REJECTIONS):
        return False  # the server refused us: retrying cannot help
    text = str(exc).lower()
    if "db error: error:" in text:
        return False  # the server answered with an ERROR: this statement failed, the connection is fine
    if isinstance(exc, _CONNECTION_ERRORS):
        return True
    return isinstance(exc, pg_exc.Error) and any(word in text for word in _DISCONNECT_WORDS)


def is_transient(exc: BaseException) -> bool:
    """Whether the statement failed only because of a concurrent one (a deadlock, a serialization failure):
    running it again succeeds."""
    text = str(exc)
    return isinstance(exc, pg_exc.Error) and ("deadlock detected" in text or "could not serialize access" in text)


class Database:
    """A psqlpy ``ConnectionPool`` plus the backend bridge. Open with :meth:`open`, close with :meth:`aclose`."""

    def __init__(self, dsn: str, *, pool_size: int = 10, connect_timeout: float = 10.0) -> None:
        """``ConfigurationError`` at once for a DSN the driver would misread (see ``config.check_dsn``)."""
        self._dsn = check_dsn(dsn)
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
        """Create the pool and check the server answers, retrying until ``connect_timeout``.

        ``ConfigurationError`` at once when the server refuses the connection (wrong password, unknown role
        or database...); ``PersistenceUnavailable`` with the last error when it does not answer in time.
        """
        self._bridge = open_bridge()

        async def make_pool() -> psqlpy.ConnectionPool:
            return psqlpy.ConnectionPool(
                dsn=self._dsn,
                max_db_pool_size=self.pool_size,
                connect_timeout_sec=max(1, int(self.connect_timeout)),
                tcp_user_timeout_sec=_TCP_USER_TIMEOUT,  # a dead peer (no FIN) fails a query instead of hanging it
                keepalives=True,
                application_name="agent-messaging",
            )

        try:
            self._pool = await self._bridge.run(make_pool)
        except pg_exc.Error as exc:
            await self.aclose()
            refused = connection_refused_by_server(exc, self._dsn, self.host)
            if refused is not None:
                raise refused from None
            raise PersistenceUnavailable(_clean(exc, self._dsn), host=self.host) from None
        delay = 0.05
        last = "no answer"
        try:
            with anyio.move_on_after(self.connect_timeout) as scope:
                while True:
                    try:
                        await self.fetch_val("SELECT 1")
                        break
                    except PersistenceUnavailable as exc:
                        last = exc.detail
                        log.warning("database.connect_retry", host=self.host, error=str(exc), delay=delay)
                        await anyio.sleep(delay)
                        delay = min(delay * 2, 1.0)
        except ConfigurationError:
            await self.aclose()
            raise
        if scope.cancelled_caught:
            await self.aclose()
            raise PersistenceUnavailable(
                f"not reachable within {self.connect_timeout:g}s (connect timeout; last error: "
                f"{_reason_text(last)}); check that PostgreSQL is running there and accepts connections, and the "
                f"host and port in {_WHERE_DSN}",
                host=self.host,
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
            refused = connection_refused_by_server(exc, self._dsn, self.host)
            if refused is not None:
                raise refused from None
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

    async def answers(self, conn: psqlpy.Connection) -> bool:
        """Whether ``conn`` (a dedicated connection: presence, LISTEN) still answers ``SELECT 1``.

        A slow answer is not a lost connection (a busy runtime would otherwise think itself cut off): the
        connection's TCP user timeout bounds how long a dead peer can keep it waiting."""

        async def execute() -> None:
            await conn.execute("SELECT 1")

        try:
            await self.run_on_loop(execute)
        except Exception as exc:
            log.info("database.probe_failed", error=repr(exc))
            return False
        return True

    def call_soon_in_caller(self, fn: Callable[[], None]) -> None:
        """From a callback on the psqlpy loop, schedule ``fn()`` on the runtime's event loop."""
        bridge, _pool = self._require()
        bridge.call_soon_in_caller(fn)

    @property
    def pool(self) -> psqlpy.ConnectionPool:
        """The psqlpy pool (use only on the psqlpy loop, through :meth:`run_on_loop`)."""
        return self._require()[1]


def _reason_text(text: str) -> str:
    """``text`` without psqlpy's wrapping ("Database engine pool exception: ...", "db error: FATAL: ")."""
    changed = True
    while changed:
        changed = False
        for prefix in _PSQLPY_PREFIXES:
            if text.startswith(prefix):
                text, changed = text[len(prefix) :], True
    return text


def _clean(exc: BaseException, dsn: str) -> str:
    """An error text with the DSN's password removed, whatever the driver put in it."""
    text = str(exc) or type(exc).__name__
    if dsn and dsn in text:
        text = text.replace(dsn, redact_dsn(dsn))
    return mask_secret(text, dsn_password(dsn))
