"""What every command shares: options, the command's configuration and database, errors, output.

Results go to standard output (a rich table on a terminal, plain text when
piped, JSON with ``--json``); logs go to standard error. A deliberate failure
(unreachable database, bad configuration, bad input) exits 1 with one
``error:`` line and no traceback; a DSN's password is never printed.

Writing a command: ``run_async(coroutine_function)`` around
``async with open_database(settings(dsn)) as db:``; print with :func:`table` /
:func:`print_json`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import anyio
import structlog
import typer
from anyio.abc import TaskStatus
from psqlpy import exceptions as pg_exc
from pydantic import SecretStr, ValidationError

from ..config import Config, dsn_password, mask_secret
from ..errors import AgentMessagingError, ConfigurationError
from ..persistence.database import Database
from ..persistence.embedded import release_all_now, start_embedded, stop_embedded
from ..persistence.migrations import migration_status

__all__ = [
    "OPERATOR_LOG_LEVEL",
    "CliState",
    "DsnOption",
    "JsonOption",
    "data_dir",
    "describe",
    "embedded_exists",
    "fail",
    "json_value",
    "open_database",
    "password_of",
    "print_json",
    "run_async",
    "settings",
    "table",
    "to_json",
    "watch_signals",
    "where",
]

R = TypeVar("R")

log = structlog.get_logger("agent_messaging.cli")

#: Log level of operator commands when neither --log-level nor AGENT_MESSAGING_LOG_LEVEL is given: their
#: results are on stdout and a failure is one ``error:`` line, so routine logs (connect retries...) stay quiet.
#: Long-running commands (``run``) re-configure with their own default.
OPERATOR_LOG_LEVEL = "ERROR"

DsnOption = Annotated[
    str | None,
    typer.Option(
        "--dsn",
        help="PostgreSQL DSN. Default: $AGENT_MESSAGING_DSN, else the embedded server in .agent-messaging/pgdata.",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON (for scripts).")]


@dataclass(frozen=True)
class CliState:
    """Options of the root command, kept in the click context's ``obj`` for every subcommand."""

    log_level: str | None


def fail(message: str, code: int = 1) -> NoReturn:
    """Print one ``error:`` line to stderr and exit ``code``."""
    text = " ".join(message.split())  # one line, whatever the source put in it
    typer.echo(f"error: {text}", err=True)
    raise typer.Exit(code)


def describe(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """A one-line description of a deliberate failure, with any secret masked."""
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()]
        text = "invalid configuration: " + "; ".join(parts)
    elif isinstance(exc, pg_exc.Error):
        text = f"database error: {exc}"
    else:
        text = str(exc) or type(exc).__name__
    for secret in secrets:
        text = mask_secret(text, secret)
    return text


def password_of(dsn: str | None) -> list[str]:
    """The password in ``dsn`` (to mask in error texts), if any."""
    secret = dsn_password(dsn) if dsn else None
    return [secret] if secret else []


def run_async(fn: Callable[[], Awaitable[R]], *, dsn: str | None = None) -> R:
    """Run an async command body with ``anyio.run``; deliberate failures become one ``error:`` line, exit 1."""
    try:
        return anyio.run(fn)
    except _DELIBERATE as exc:
        fail(describe(exc, password_of(dsn)))
    except BaseExceptionGroup as group:
        # a failure inside a task group: report it if it is one of ours, else let it show as the bug it is
        leaf = _deliberate_leaf(group)
        if leaf is None:
            raise
        fail(describe(leaf, password_of(dsn)))
    except KeyboardInterrupt:
        fail("interrupted", 130)


async def watch_signals(
    on_first: Callable[[str], None], *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
) -> None:
    """Handle SIGINT and SIGTERM for a command: the first calls ``on_first(signal name)``; the second exits at once.

    The second signal leaves the embedded server (stopping it if this process started it and nobody else
    uses it), flushes the output and ends the process with status 130, without waiting for anything the
    first one is still stopping. Start it with ``await task_group.start(watch_signals, ...)`` before the
    work it guards: once started, no signal reaches the event loop's own handler, which turns a first
    Ctrl-C into a cancellation that shielded database calls may hold back and a second into a
    ``KeyboardInterrupt`` raised wherever the main thread happens to be.
    """
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        task_status.started()
        first = True
        async for signum in signals:
            name = signal.Signals(signum).name
            if first:
                first = False
                on_first(name)
            else:
                log.warning("cli.exit_now", signal=name, note="second signal: exiting without waiting")
                release_all_now()
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(130)


_DELIBERATE = (AgentMessagingError, ValidationError, pg_exc.Error)


def _deliberate_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException | None:
    """The first deliberate failure in ``group``, if every failure in it is one."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    if leaves and all(isinstance(leaf, _DELIBERATE) for leaf in leaves):
        return leaves[0]
    return None


def settings(dsn: str | None) -> Config:
    """The configuration of a command: ``--dsn`` if given, the rest (and a missing DSN) from the environment."""
    try:
        return Config(dsn=SecretStr(dsn)) if dsn else Config()
    except ValidationError as exc:
        fail(describe(exc, password_of(dsn)))


def data_dir(config: Config) -> Path:
    """Where the embedded server's data directory is for this command (absolute)."""
    return (Path.cwd() / config.embedded_data_dir.expanduser()).resolve()


def embedded_exists(config: Config) -> bool:
    """Whether the embedded data directory of ``config`` holds a database cluster."""
    return (data_dir(config) / "PG_VERSION").exists()


@contextlib.asynccontextmanager
async def open_database(config: Config, *, create: bool = False, schema: bool = False) -> AsyncIterator[Database]:
    """The command's database, open: the configured DSN, or the embedded server (stopped again after if unused).

    Without ``create``, a missing embedded database is a ``ConfigurationError`` saying how to point the
    command at one (inspecting must not create a 39 MB cluster wherever it is run). With ``schema``, a
    database without the agent-messaging tables (or with migrations pending) is one too.
    """
    dsn = config.dsn_value()
    embedded = None
    if dsn is None:
        if not create and not embedded_exists(config):
            raise ConfigurationError(
                f"no database here: neither --dsn nor AGENT_MESSAGING_DSN is set, and {data_dir(config)} holds no "
                "embedded database; pass --dsn, set AGENT_MESSAGING_DSN, or run the command from the project "
                "directory (where the runtime or 'agent-messaging demo' keeps .agent-messaging/)"
            )
        embedded = await start_embedded(data_dir(config))
        dsn = embedded.dsn
    try:
        db = Database(dsn, pool_size=2, connect_timeout=config.connect_timeout)
        await db.open()
        try:
            if schema:
                await _check_schema(db, config)
            yield db
        finally:
            await db.aclose()
    finally:
        if embedded is not None:
            await stop_embedded(embedded)


async def _check_schema(db: Database, config: Config) -> None:
    statuses = await migration_status(db)
    pending = [s for s in statuses if not s.applied]
    if not pending:
        return
    if len(pending) == len(statuses):
        state = "has no agent-messaging tables"
    else:
        state = f"has {len(pending)} schema migration(s) pending"
    raise ConfigurationError(
        f"the database {where(config)} {state}: run 'agent-messaging db migrate' on it (with the same --dsn), or "
        "open a runtime on it, which migrates it"
    )


def where(config: Config) -> str:
    """Which database a command uses, safe to print."""
    return config.redacted_dsn() or f"embedded PostgreSQL in {data_dir(config)}"


def _is_terminal() -> bool:
    return sys.stdout.isatty()


def json_value(value: Any) -> Any:
    """How a value that JSON has no type for is written: ISO 8601 for times, the text of uuids and enums."""
    if isinstance(value, datetime | date | time):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    return str(value)


def to_json(value: Any, *, indent: int | None = None) -> str:
    """``value`` as JSON, with :func:`json_value` for datetimes, uuids and the like."""
    return json.dumps(value, indent=indent, default=json_value)


def print_json(value: Any) -> None:
    """``value`` on stdout as indented JSON (ISO 8601 timestamps)."""
    typer.echo(to_json(value, indent=2))


def table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
    """A table on stdout: rich on a terminal, aligned plain text (title line, header, rows) otherwise."""
    if _is_terminal():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title, title_justify="left")
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    widths = [max([len(column), *(len(row[i]) for row in rows)]) for i, column in enumerate(columns)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(cell.ljust(width) for cell, width in zip(cells, widths, strict=True)).rstrip()

    typer.echo(title)
    typer.echo(line([column.upper() for column in columns]))
    for row in rows:
        typer.echo(line(row))
