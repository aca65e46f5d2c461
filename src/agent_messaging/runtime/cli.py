"""The ``agent-messaging`` command line.

::

    agent-messaging --version
    agent-messaging db migrate   [--dsn DSN] [--json]
    agent-messaging db status    [--dsn DSN] [--json]
    agent-messaging db url       [--dsn DSN] [--json]

The database is ``--dsn``, else ``AGENT_MESSAGING_DSN``, else the embedded
server in ``.agent-messaging/pgdata`` under the working directory. Results go to
standard output (a rich table on a terminal, plain text when piped, JSON with
``--json``); logs go to standard error. A deliberate failure (unreachable
database, bad configuration, bad input) exits 1 with one ``error:`` line and
no traceback; a DSN's password is never printed.

Adding a command group: make a ``typer.Typer``, ``app.add_typer`` it, and write
each command as ``_run(coroutine_function)`` around
``async with _database(_settings(dsn)) as db:``; print with :func:`_table` /
:func:`_print_json`.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import anyio
import typer
from psqlpy import exceptions as pg_exc
from pydantic import SecretStr, ValidationError

from .. import __version__
from ..config import Config, dsn_password
from ..errors import AgentMessagingError, ConfigurationError
from ..persistence.database import Database
from ..persistence.embedded import start_embedded, stop_embedded
from ..persistence.migrations import apply_migrations, available_migrations, migration_status
from ._logging import configure_logging

__all__ = ["app", "main"]

R = TypeVar("R")

app = typer.Typer(
    name="agent-messaging",
    help="Durable messaging between AI agents on PostgreSQL: run agents and inspect their messages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="The database: schema migrations, status, connection URL.", no_args_is_help=True)
app.add_typer(db_app, name="db")

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


# --------------------------------------------------------------------------- plumbing


@dataclass(frozen=True)
class CliState:
    """Options of the root command, kept in the click context's ``obj`` for every subcommand."""

    log_level: str | None


def _fail(message: str, code: int = 1) -> NoReturn:
    """Print one ``error:`` line to stderr and exit ``code``."""
    text = " ".join(message.split())  # one line, whatever the source put in it
    typer.echo(f"error: {text}", err=True)
    raise typer.Exit(code)


def _describe(exc: BaseException, secrets: Sequence[str] = ()) -> str:
    """A one-line description of a deliberate failure, with any secret masked."""
    if isinstance(exc, ValidationError):
        parts = [f"{'.'.join(str(p) for p in err['loc']) or 'value'}: {err['msg']}" for err in exc.errors()]
        text = "invalid configuration: " + "; ".join(parts)
    elif isinstance(exc, pg_exc.Error):
        text = f"database error: {exc}"
    else:
        text = str(exc) or type(exc).__name__
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _password(dsn: str | None) -> list[str]:
    """The password in ``dsn`` (to mask in error texts), if any."""
    secret = dsn_password(dsn) if dsn else None
    return [secret] if secret else []


def _run(fn: Callable[[], Awaitable[R]], *, dsn: str | None = None) -> R:
    """Run an async command body with ``anyio.run``; deliberate failures become one ``error:`` line, exit 1."""
    try:
        return anyio.run(fn)
    except _DELIBERATE as exc:
        _fail(_describe(exc, _password(dsn)))
    except BaseExceptionGroup as group:
        # a failure inside a task group: report it if it is one of ours, else let it show as the bug it is
        leaf = _deliberate_leaf(group)
        if leaf is None:
            raise
        _fail(_describe(leaf, _password(dsn)))
    except KeyboardInterrupt:
        _fail("interrupted", 130)


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


def _settings(dsn: str | None) -> Config:
    """The configuration of a command: ``--dsn`` if given, the rest (and a missing DSN) from the environment."""
    try:
        return Config(dsn=SecretStr(dsn)) if dsn else Config()
    except ValidationError as exc:
        _fail(_describe(exc, _password(dsn)))


def _data_dir(config: Config) -> Path:
    return (Path.cwd() / config.embedded_data_dir.expanduser()).resolve()


@contextlib.asynccontextmanager
async def _database(config: Config) -> AsyncIterator[Database]:
    """The command's database, open: the configured DSN, or the embedded server (stopped again after if unused)."""
    dsn = config.dsn_value()
    embedded = None
    if dsn is None:
        embedded = await start_embedded(_data_dir(config))
        dsn = embedded.dsn
    try:
        db = Database(dsn, pool_size=2, connect_timeout=config.connect_timeout)
        await db.open()
        try:
            yield db
        finally:
            await db.aclose()
    finally:
        if embedded is not None:
            await stop_embedded(embedded)


def _where(config: Config) -> str:
    """Which database a command uses, safe to print."""
    return config.redacted_dsn() or f"embedded PostgreSQL in {_data_dir(config)}"


def _is_terminal() -> bool:
    return sys.stdout.isatty()


def _print_json(value: Any) -> None:
    typer.echo(json.dumps(value, indent=2, default=str))


def _table(title: str, columns: Sequence[str], rows: Sequence[Sequence[str]]) -> None:
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


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agent-messaging {__version__}")
        raise typer.Exit()


# --------------------------------------------------------------------------- root


@app.callback()
def _root(
    ctx: typer.Context,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit."),
    ] = False,
    log_level: Annotated[
        str | None,
        typer.Option(
            "--log-level",
            envvar="AGENT_MESSAGING_LOG_LEVEL",
            help="debug, info, warning, error or critical (logs go to stderr).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """agent-messaging: notes, calls, chats and meetings between AI agents, on PostgreSQL."""
    ctx.obj = CliState(log_level=log_level)
    try:
        configure_logging(log_level or OPERATOR_LOG_LEVEL)
    except ConfigurationError as exc:
        _fail(str(exc), 2)


# --------------------------------------------------------------------------- db


def _migration_name(version: int, name: str) -> str:
    return f"{version:04d}_{name}"


@db_app.command("migrate")
def db_migrate(dsn: DsnOption = None, as_json: JsonOption = False) -> None:
    """Apply the pending schema migrations (safe to run while other processes use the database)."""
    config = _settings(dsn)

    async def go() -> tuple[list[str], int]:
        async with _database(config) as db:
            applied = await apply_migrations(db)
            return [_migration_name(m.version, m.name) for m in applied], len(available_migrations())

    applied, total = _run(go, dsn=dsn)
    if as_json:
        _print_json({"database": _where(config), "applied": applied, "total": total})
        return
    for name in applied:
        typer.echo(f"applied {name}")
    if applied:
        typer.echo(f"{len(applied)} migration(s) applied; the schema is up to date ({total} in all)")
    else:
        typer.echo(f"nothing to apply: the schema is up to date ({total} migration(s) applied)")


@db_app.command("status")
def db_status(dsn: DsnOption = None, as_json: JsonOption = False) -> None:
    """List the schema migrations, applied (with when) and pending."""
    config = _settings(dsn)

    async def go() -> list[Any]:
        async with _database(config) as db:
            return list(await migration_status(db))

    status = _run(go, dsn=dsn)
    pending = sum(1 for s in status if not s.applied)
    if as_json:
        _print_json(
            {
                "database": _where(config),
                "migrations": [
                    {
                        "version": s.version,
                        "name": s.name,
                        "applied": s.applied,
                        "applied_at": s.applied_at.isoformat() if s.applied_at else None,
                    }
                    for s in status
                ],
                "pending": pending,
            }
        )
        return
    rows = [
        [
            f"{s.version:04d}",
            s.name,
            "applied" if s.applied else "pending",
            s.applied_at.isoformat(sep=" ", timespec="seconds") if s.applied_at else "-",
        ]
        for s in status
    ]
    _table(f"Migrations of {_where(config)} ({pending} pending)", ["version", "name", "status", "applied at"], rows)


@db_app.command("url")
def db_url(dsn: DsnOption = None, as_json: JsonOption = False) -> None:
    """Print the database in use, with its password hidden."""
    config = _settings(dsn)
    redacted = config.redacted_dsn()
    source = "--dsn" if dsn else "AGENT_MESSAGING_DSN" if redacted else "embedded"
    data_dir = None if redacted else _data_dir(config)
    running = data_dir is not None and (data_dir / "postmaster.pid").exists()
    if as_json:
        _print_json(
            {
                "source": source,
                "dsn": redacted,
                "embedded": redacted is None,
                "data_dir": str(data_dir) if data_dir else None,
                "running": running if data_dir else None,
            }
        )
    elif redacted is not None:
        typer.echo(redacted)
    else:
        state = "running" if running else "started on demand"
        typer.echo(
            f"embedded PostgreSQL in {data_dir} ({state}; no --dsn or AGENT_MESSAGING_DSN set, "
            "so commands and runtimes started here use it)"
        )


# --------------------------------------------------------------------------- run, demo, inspection

# These commands live in their own modules and use the helpers above, so they are imported here.
from ._cli_demo import demo as _demo  # noqa: E402
from ._cli_inspect import agents_app, dead_letters_app, meetings_app, messages_app  # noqa: E402
from ._cli_run import run as _run_app  # noqa: E402

app.command("run")(_run_app)
app.command("demo")(_demo)
app.add_typer(agents_app, name="agents")
app.add_typer(messages_app, name="messages")
app.add_typer(meetings_app, name="meetings")
app.add_typer(dead_letters_app, name="dead-letters")


# --------------------------------------------------------------------------- entry point


def main() -> None:
    """Console-script entry point (``agent-messaging``, ``python -m agent_messaging``).

    Ends the process with ``os._exit`` once the command is done, its output
    flushed and the ``atexit`` handlers run: psqlpy's native threads can touch
    the interpreter while it finalizes, which intermittently aborted a finished
    command with "Fatal Python error: PyGILState_Release" and exit status 134
    (about 1 run in 40 measured). Skipping finalization avoids that.
    """
    code: int = 0
    try:
        app(prog_name="agent-messaging")
    except SystemExit as exc:
        if exc.code is None or isinstance(exc.code, int):
            code = exc.code or 0
        else:
            _flushed_echo(str(exc.code))
            code = 1
    except KeyboardInterrupt:
        _flushed_echo("error: interrupted")
        code = 130
    _exit_now(code)


def _flushed_echo(text: str) -> None:
    with contextlib.suppress(Exception):
        print(text, file=sys.stderr, flush=True)


def _exit_now(code: int) -> NoReturn:
    """Flush, run the ``atexit`` handlers and logging shutdown, then leave without interpreter finalization."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    with contextlib.suppress(Exception):
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
