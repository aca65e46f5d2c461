"""The persistence actor: every write on the request path goes through it.

Callers submit a *unit* (one or more rows that must commit together) and wait.
Each writer connection takes everything waiting (up to ``batch_size`` rows),
writes it in **one statement** — a data-modifying CTE per statement kind, each a
multi-row ``INSERT ... SELECT FROM unnest(...)`` or ``UPDATE ... FROM unnest``,
ending in at most one NOTIFY naming who has news — so one round trip commits
the whole batch atomically; only then is each caller completed: acknowledged
means committed.

Every statement is idempotent (client-made ids with ``ON CONFLICT DO NOTHING``,
updates that set absolute values), so when the connection drops mid-batch the
whole batch is simply retried, with backoff, until it commits or the caller's
``persistence_timeout`` passes (then ``PersistenceUnavailable``); so is a batch
that lost a deadlock to a concurrent one. A unit whose
rows are invalid fails alone: the batch is retried unit by unit to isolate it.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import psqlpy
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from .._log import get_logger
from .._tracing import commit_span, fail, span_context
from ..errors import PersistenceUnavailable
from .database import Database, is_connection_error, is_transient

__all__ = ["JSON_COLUMNS", "NOTIFY_CHANNEL", "Statement", "Write", "Writer", "WriterStatistics", "insert_statement"]

log = get_logger("agent_messaging.writer")
NOTIFY_CHANNEL = "agent_messaging"
_NOTIFY_LIMIT = 7000
_PARAM = re.compile(r"\$(\d+)")


@dataclass(frozen=True)
class Statement:
    """A batched write statement: ``sql`` takes one array parameter per column.

    The stores under :mod:`agent_messaging.persistence.store` define them; the
    writer knows none by name. ``rank`` orders the kinds of statement inside one
    batch (lower first), so that, say, a conversation row is inserted before the
    message that refers to it.

    A *conditional* statement (``returning=True``) ends in ``RETURNING <key>``: it
    reports which of its rows took effect, by the row's first column, and
    :meth:`Writer.write` returns those keys to the unit that wrote them (a claim
    that lost to another process's claim is not committed for its caller). A
    statement may read the rows another statement of the batch returned: its
    ``sql`` names that statement's result ``{requires}`` (a ``requires``
    statement ranks lower and is always written in the same unit).

    A *check* (``check=True``) is a ``SELECT`` that raises to fail its batch: the
    batch counts its rows (an unread ``SELECT`` in a ``WITH`` is never run), and
    nothing is read back.

    An *update* names the table whose rows it changes (``updates``) and the
    column of its row that is the changed row's id (``key``; ``None`` when one
    row may change many, e.g. every request of a conversation). Two statements
    of one batch that update the same row would lose one change (PostgreSQL
    applies only one of two data-modifying CTEs' updates of a row, silently),
    so the writer commits such units one after the other instead.
    """

    name: str
    rank: int
    sql: str
    returning: bool = False
    requires: Statement | None = None
    check: bool = False
    updates: str = ""
    key: int | None = 0

    def __repr__(self) -> str:
        return f"Statement({self.name!r})"


#: Columns :func:`insert_statement` casts from JSON text to jsonb.
JSON_COLUMNS = frozenset({"payload", "metadata", "data"})


def insert_statement(
    name: str, rank: int, table: str, columns: str, types: str, conflict: str = "DO NOTHING"
) -> Statement:
    """A multi-row ``INSERT ... SELECT FROM unnest(...)``; columns in :data:`JSON_COLUMNS` are cast to jsonb."""
    names = [c.strip() for c in columns.split(",")]
    kinds = [t.strip() for t in types.split(",")]
    arrays = ", ".join(f"${i}::{kind}[]" for i, kind in enumerate(kinds, 1))
    select = ", ".join(f"u.{n}::jsonb" if n in JSON_COLUMNS else f"u.{n}" for n in names)
    return Statement(
        name,
        rank,
        f"INSERT INTO {table} ({', '.join(names)}) SELECT {select} FROM unnest({arrays}) AS u({', '.join(names)}) "
        f"ON CONFLICT {conflict}",
    )


@dataclass(frozen=True)
class Write:
    """One row for one statement (columns in the statement's order; json columns as JSON text)."""

    statement: Statement
    row: tuple[Any, ...]


@dataclass
class _Unit:
    writes: Sequence[Write]
    notify: frozenset[str]
    deadline: float
    done: anyio.Event = field(default_factory=anyio.Event)
    error: BaseException | None = None
    quiet: bool = False
    background: bool = False  # bookkeeping rows (submit_nowait): not one unit, so they may be split
    returned: frozenset[str] = frozenset()
    trace: Any = None  # the span context of the write's caller (tracing on, inside a span)


@dataclass(frozen=True)
class WriterStatistics:
    """Counters of the persistence actor."""

    transactions: int
    units: int
    rows: int
    retries: int
    failures: int
    queued: int


class Writer:
    """The persistence actor. Run it with ``await task_group.start(writer.run)``; submit with :meth:`write`."""

    def __init__(
        self,
        db: Database,
        *,
        batch_size: int = 1000,
        linger: float = 0.0005,
        connections: int = 2,
        timeout: float = 30.0,
        notify: bool = True,
        origin: str = "",
        tracing: bool = False,
    ) -> None:
        self.db = db
        self.origin = origin
        self.tracing = tracing
        """One span per committed batch that carries a write made inside a span (``Config.tracing``)."""
        self.batch_size = batch_size
        self.linger = linger
        self.connections = connections
        self.timeout = timeout
        self.notify_enabled = notify
        self._send: MemoryObjectSendStream[_Unit] | None = None
        self._background: list[Write] = []
        self._background_flagged = False
        self._transactions = self._units = self._rows = self._retries = self._failures = 0

    def statistics(self) -> WriterStatistics:
        """A snapshot of the writer's counters."""
        queued = self._send.statistics().current_buffer_used if self._send is not None else 0
        return WriterStatistics(self._transactions, self._units, self._rows, self._retries, self._failures, queued)

    async def write(self, writes: Iterable[Write], *, notify: Iterable[str] = ()) -> frozenset[str]:
        """Commit ``writes`` together (all or none) and return once committed.

        ``notify`` names the agents/meetings that have news; the batch sends them
        in one NOTIFY. Returns the keys (first columns, as text) of the unit's rows
        of conditional statements that took effect (empty when there are none).
        Raises ``PersistenceUnavailable`` if the database cannot take the write
        within the writer's timeout.
        """
        unit = _Unit(list(writes), frozenset(notify), anyio.current_time() + self.timeout)
        if self.tracing:
            unit.trace = span_context()
        for w in unit.writes:
            if not isinstance(w.statement, Statement):
                raise ValueError(f"unknown write kind {w.statement!r}: a Write takes a store's Statement")
        if not unit.writes and not unit.notify:
            return frozenset()
        if self._send is None:
            raise PersistenceUnavailable("the persistence actor is not running", host=self.db.host)
        try:
            try:
                self._send.send_nowait(unit)
            except anyio.WouldBlock:
                await self._send.send(unit)
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise PersistenceUnavailable("the runtime is closing; the write was not taken", host=self.db.host) from None
        await unit.done.wait()
        if unit.error is not None:
            raise unit.error
        return unit.returned

    def submit_nowait(self, writes: Iterable[Write]) -> None:
        """Queue bookkeeping ``writes`` without waiting for their commit.

        For writes whose loss only means a redelivery (handled marks, attempt
        counts). They ride along with the next batch; many of them cost one
        queue operation. Failures are logged, not raised.
        """
        self._background.extend(writes)
        if self._background_flagged or self._send is None:
            return
        try:
            self._send.send_nowait(_Unit([], frozenset(), anyio.current_time() + self.timeout, quiet=True))
            self._background_flagged = True
        except anyio.WouldBlock:
            pass  # the queue is full: a batch is coming anyway and will take the background rows
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            log.warning("writer.dropped", reason="closing", rows=len(self._background))

    def _take_background(self) -> _Unit | None:
        self._background_flagged = False
        if not self._background:
            return None
        writes, self._background = self._background, []
        return _Unit(writes, frozenset(), anyio.current_time() + self.timeout, quiet=True, background=True)

    def close(self) -> None:
        """Stop taking writes; :meth:`run` returns once everything queued is committed (flush)."""
        if self._send is not None:
            self._send.close()

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; then fail whatever is still queued (nothing is half-written)."""
        send, receive = anyio.create_memory_object_stream[_Unit](max(self.batch_size * 4, 1000))
        self._send = send
        try:
            async with anyio.create_task_group() as tg:
                for _ in range(self.connections):
                    tg.start_soon(self._serve, receive.clone())
                task_status.started()
        finally:
            self._send = None
            send.close()
            leftover = self._take_background()
            if leftover is not None:
                log.warning("writer.dropped", reason="closed", rows=len(leftover.writes))
            for unit in _drain(receive):
                unit.error = PersistenceUnavailable("the runtime closed before the write", host=self.db.host)
                unit.done.set()
            receive.close()

    async def _serve(self, receive: MemoryObjectReceiveStream[_Unit]) -> None:
        last_batch = 1
        with receive:
            async for first in receive:
                batch, rows = [first], len(first.writes)
                while rows < self.batch_size:
                    try:
                        unit = receive.receive_nowait()
                    except anyio.WouldBlock:
                        if last_batch > 1 and self.linger > 0:
                            with anyio.move_on_after(self.linger):
                                try:
                                    unit = await receive.receive()
                                except anyio.EndOfStream:  # closed while lingering: commit what we hold
                                    break
                                batch.append(unit)
                                rows += len(unit.writes)
                                continue
                        break
                    except anyio.EndOfStream:
                        break
                    batch.append(unit)
                    rows += len(unit.writes)
                last_batch = len(batch)
                background = self._take_background()
                if background is not None:
                    batch.append(background)
                batch = [unit for unit in batch if unit.writes or unit.notify or not unit.quiet]
                if not batch:
                    continue
                with anyio.CancelScope(shield=True):
                    if self.tracing:
                        await self._traced_commit(batch)
                    else:
                        await self._commit(batch)

    async def _traced_commit(self, batch: list[_Unit]) -> None:
        """:meth:`_commit` in a span, if a write of the batch was made inside one (see ``commit_span``)."""
        parents = [unit.trace for unit in batch if unit.trace is not None]
        if not parents:  # bookkeeping only (handled marks, attempt counts...): no span
            await self._commit(batch)
            return
        attributes = {
            "db.system.name": "postgresql",
            "agent_messaging.writer.units": len(batch),
            "agent_messaging.writer.rows": sum(len(unit.writes) for unit in batch),
        }
        retries = self._retries
        with commit_span(parents, attributes) as span:
            await self._commit(batch)
            span.set_attribute("agent_messaging.writer.retries", self._retries - retries)
            errors = [unit.error for unit in batch if unit.error is not None]
            if errors:  # the units that failed alone (a bad row) or timed out: the first error on the span
                span.set_attribute("agent_messaging.writer.failed_units", len(errors))
                fail(errors[0])

    async def _commit(self, batch: list[_Unit]) -> None:
        for group in _separate(batch):
            await self._commit_group(group)

    async def _commit_group(self, batch: list[_Unit]) -> None:
        delay = 0.01
        while batch:

            async def apply(conn: psqlpy.Connection, current: list[_Unit] = batch) -> frozenset[str]:
                return await _apply(conn, current, self.notify_enabled, self.origin)

            try:
                returned = await self.db.run(apply)
            except Exception as exc:
                if isinstance(exc, PersistenceUnavailable) or is_connection_error(exc) or is_transient(exc):
                    self._retries += 1
                    now = anyio.current_time()
                    batch = self._expire(batch, now, exc)
                    # once per batch at warning level: an outage of a few seconds is not a wall of warnings
                    (log.warning if delay == 0.01 else log.info)(
                        "writer.retry", error=str(exc), delay=delay, units=len(batch)
                    )
                    await anyio.sleep(delay)
                    delay = min(delay * 2, 1.0)
                    continue
                if len(batch) > 1:  # isolate the unit that is at fault
                    for unit in batch:
                        await self._commit_group([unit])
                    return
                self._failures += 1
                batch[0].error = exc
                batch[0].done.set()
                if batch[0].quiet:
                    log.error("writer.write_failed", error=repr(exc), rows=len(batch[0].writes))
                return
            self._transactions += 1
            self._units += len(batch)
            self._rows += sum(len(u.writes) for u in batch)
            for unit in batch:
                if returned:
                    unit.returned = frozenset(
                        key for w in unit.writes if w.statement.returning and (key := str(w.row[0])) in returned
                    )
                unit.done.set()
            return

    def _expire(self, batch: list[_Unit], now: float, exc: BaseException) -> list[_Unit]:
        kept = []
        for unit in batch:
            if now >= unit.deadline:
                self._failures += 1
                unit.error = PersistenceUnavailable(
                    f"write not committed within {self.timeout:g}s ({exc})", host=self.db.host
                )
                unit.done.set()
            else:
                kept.append(unit)
        return kept


_SEVERAL = object()
"""In :class:`_Updated`: more than one statement updates this row or table."""


class _Updated:
    """The rows a group of units updates: the statement that updates each keyed row, the statement that
    updates each table (either :data:`_SEVERAL` when more than one does), and the tables a statement without
    a key updates (it may update any row of its table). One dict entry per row: the usual group, no row
    updated twice, costs no more than that."""

    __slots__ = ("rows", "tables", "unkeyed")

    def __init__(self) -> None:
        self.rows: dict[tuple[str, Any], object] = {}
        self.tables: dict[str, object] = {}
        self.unkeyed: set[str] = set()

    def clashes(self, write: Write) -> bool:
        """Whether another statement of the group may update a row that ``write`` updates."""
        statement = write.statement
        table = statement.updates
        if statement.key is None:
            found = self.tables.get(table)
        elif table in self.unkeyed:
            return True
        else:
            found = self.rows.get((table, write.row[statement.key]))
        return found is not None and found is not statement

    def add(self, write: Write) -> None:
        statement = write.statement
        table = statement.updates
        _note(self.tables, table, statement)
        if statement.key is None:
            self.unkeyed.add(table)
        else:
            _note(self.rows, (table, write.row[statement.key]), statement)


def _note(seen: dict[Any, object], key: Any, statement: Statement) -> None:
    """Record that ``statement`` updates ``key`` (a row or a table)."""
    found = seen.setdefault(key, statement)
    if found is not statement:
        seen[key] = _SEVERAL


def _shared_tables(batch: list[_Unit]) -> set[str]:
    """The tables that two statements of ``batch`` update (cheap: no row is looked at)."""
    first: dict[str, Statement] = {}
    shared: set[str] = set()
    for unit in batch:
        for w in unit.writes:
            table = w.statement.updates
            if table and first.setdefault(table, w.statement) is not w.statement:
                shared.add(table)
    return shared


def _separate(batch: list[_Unit]) -> list[list[_Unit]]:
    """``batch`` as groups to commit one after the other, in order, so that no two statements of one group
    update the same row (see :class:`Statement`). Almost always one group: only the rows of tables that two
    statements of the batch update are looked at. A unit is never split (it wrote its rows to commit
    together, and never updates a row twice); bookkeeping rows are, a row at a time."""
    shared = _shared_tables(batch)
    if not shared or _apart(batch, shared):
        return [batch]
    groups: list[list[_Unit]] = [[]]
    updated = _Updated()
    bookkeeping: list[Write] | None = None  # the bookkeeping rows of the last group
    for unit in batch:
        for writes in ([w] for w in unit.writes) if unit.background else (unit.writes,):
            changing = [w for w in writes if w.statement.updates in shared]
            if any(updated.clashes(w) for w in changing):
                groups.append([])
                updated, bookkeeping = _Updated(), None
            if not unit.background:
                groups[-1].append(unit)
            elif bookkeeping is None:
                bookkeeping = list(writes)
                groups[-1].append(_Unit(bookkeeping, frozenset(), unit.deadline, quiet=True, background=True))
            else:
                bookkeeping.extend(writes)
            for w in changing:
                updated.add(w)
    return [group for group in groups if group]


def _apart(batch: list[_Unit], shared: set[str]) -> bool:
    """Whether no two statements of ``batch`` update one row of the ``shared`` tables: the usual batch, told in
    one pass (a unit updating one row by two statements is a doubt, which :func:`_separate` sorts out)."""
    updated = _Updated()
    for unit in batch:
        for w in unit.writes:
            if w.statement.updates in shared:
                if updated.clashes(w):
                    return False
                updated.add(w)
    return True


async def _apply(tx: psqlpy.Connection, batch: list[_Unit], notify: bool, origin: str) -> frozenset[str]:
    """Write a batch as ONE statement (data-modifying CTEs, run in autocommit: atomic, one round trip).

    Returns the keys the batch's conditional statements returned (as text).
    """
    by_kind: dict[Statement, list[tuple[Any, ...]]] = {}
    for unit in batch:
        for w in unit.writes:
            rows = by_kind.get(w.statement)
            if rows is None:
                by_kind[w.statement] = [w.row]
            else:
                rows.append(w.row)
    kinds = tuple(sorted(by_kind, key=_rank))
    params: list[Any] = []
    for kind in kinds:
        params.extend(list(col) for col in zip(*by_kind[kind], strict=True))
    with_notify = False
    if notify:
        names = sorted({name for unit in batch for name in unit.notify})
        if names:
            body = ",".join(names)
            params.extend([NOTIFY_CHANNEL, f"{origin}|{body if len(body) < _NOTIFY_LIMIT else '*'}"])
            with_notify = True
    result = await tx.execute(_batch_sql(kinds, with_notify), params)
    if not any(kind.returning for kind in kinds):
        return frozenset()
    row = result.result()[0]
    return frozenset(str(key) for value in row.values() if isinstance(value, list) for key in value)


def _shift(sql: str, offset: int) -> str:
    """``sql`` with every ``$n`` renumbered to ``$(n + offset)``."""
    return _PARAM.sub(lambda match: f"${int(match.group(1)) + offset}", sql)


def _rank(statement: Statement) -> int:
    return statement.rank


@functools.lru_cache(maxsize=512)
def _batch_sql(kinds: tuple[Statement, ...], with_notify: bool) -> str:
    """The statement for a batch with these kinds (cached: batches repeat a few shapes)."""
    parts: list[str] = []
    aliases: dict[Statement, str] = {}
    results: list[str] = []
    offset = 0
    for kind in kinds:
        sql = kind.sql
        count = len(set(_PARAM.findall(sql)))
        alias = aliases[kind] = f"w{len(parts)}"
        if kind.requires is not None:
            sql = sql.replace("{requires}", aliases[kind.requires])
        parts.append(f"{alias} AS ({_shift(sql, offset)})")
        if kind.returning:
            results.append(f"(SELECT coalesce(array_agg(key::text), '{{}}') FROM {alias}) AS {alias}")
        elif kind.check:
            results.append(f"(SELECT count(*) FROM {alias}) AS {alias}")
        offset += count
    notify = f"pg_notify(${offset + 1}, ${offset + 2})"
    if with_notify and results:  # pg_notify returns void, which the driver cannot read back: count it instead
        parts.append(f"wn AS (SELECT {notify})")
        results.append("(SELECT count(*) FROM wn) AS notified")
    selected = results or ([notify] if with_notify else ["1"])
    return (f"WITH {', '.join(parts)} " if parts else "") + "SELECT " + ", ".join(selected)


def _drain(receive: MemoryObjectReceiveStream[_Unit]) -> list[_Unit]:
    units = []
    while True:
        try:
            units.append(receive.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream, anyio.ClosedResourceError):
            return units
