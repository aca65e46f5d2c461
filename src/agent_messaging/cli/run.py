"""``agent-messaging run MODULE:ATTR``: host an application's agents as a long-running process.

``MODULE:ATTR`` names an :class:`AgentMessaging` instance, or a zero-argument
function (sync or async) returning one; the working directory is on
``sys.path``, so ``agent-messaging run examples.app:am`` works from the project
root. If the module also defines ``async def setup(am)``, it is awaited once the
runtime is open (register the organization and agents there: hosted agents
that are not registered yet start as soon as they are).

Opening the runtime recovers its work (unread messages, calls whose caller
died, active meetings with their remaining turn time). The process prints one
start line on standard output, logs to standard error (console renderer on a
terminal, JSON lines otherwise) and serves until SIGINT or SIGTERM. The first
signal stops intake, lets running handlers finish within ``--grace`` seconds,
flushes the persistence writer and exits 0; a second signal exits at once
(status 130: anything acknowledged is already committed), stopping the
embedded server first if this process started it and nobody else uses it. A
runtime that cannot open (database refused or unreachable) or crashes exits 1
with one ``error:`` line.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import anyio
import structlog
import typer
from pydantic import SecretStr

from .._app import AgentMessaging, internals
from ..errors import AgentMessagingError, ConfigurationError
from ..persistence.store import meetings as meeting_store, messages as message_store
from ._common import describe, fail, password_of, watch_signals, where
from ._logging import configure_logging

__all__ = ["load_app", "run"]

log = structlog.get_logger("agent_messaging.cli.run")
SetupHook = Callable[[AgentMessaging[Any]], Awaitable[None]]


class AppError(Exception):
    """The ``MODULE:ATTR`` target cannot be loaded (one-line message)."""


def load_app(target: str) -> tuple[AgentMessaging[Any], SetupHook | None]:
    """Import ``MODULE:ATTR`` and return its runtime and its module's ``setup`` hook (if any)."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        raise AppError(f"expected MODULE:ATTR (for example examples.app:am), not {target!r}")
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise AppError(f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:
        raise AppError(f"importing {module_name!r} failed: {type(exc).__name__}: {exc}") from None
    value: Any = module
    for part in attr.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise AppError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not isinstance(value, AgentMessaging) and callable(value):
        try:
            value = value()
        except Exception as exc:
            raise AppError(f"{target}() failed: {type(exc).__name__}: {exc}") from None
        if inspect.isawaitable(value):
            value = anyio.run(_await, value)
    if not isinstance(value, AgentMessaging):
        raise AppError(f"{target} is not an AgentMessaging instance or a factory of one (got {type(value).__name__})")
    setup = getattr(module, "setup", None)
    if setup is not None and not inspect.iscoroutinefunction(setup):
        raise AppError(f"{module_name}.setup must be an 'async def setup(am)' function")
    return value, setup


async def _await(value: Awaitable[Any]) -> Any:
    return await value


def _stop_on(stopping: anyio.Event) -> Callable[[str], None]:
    def first(name: str) -> None:
        log.info("run.stopping", signal=name)
        stopping.set()

    return first


async def _start_line(am: AgentMessaging[Any], target: str, since: datetime) -> str:
    """The one line ``run`` prints once serving: database, hosted agents, recovered work."""
    parts = internals(am)
    host = parts.host
    hosted = sorted(host.hosted or parts.registry.hosts)
    standby = sorted(host.standby)
    waiting = sorted(host.waiting)
    unread, calls = await message_store.backlog(parts.database, hosted, since)
    meetings = await meeting_store.count_active(parts.database)
    agents = ", ".join(hosted) if hosted else "none"
    turns = sorted(parts.registry.turn_handlers)
    extra = "".join(
        [
            f"; meeting turns: {', '.join(turns)}" if turns else "",
            f"; standby (hosted by another runtime): {', '.join(standby)}" if standby else "",
            f"; waiting for registration: {', '.join(waiting)}" if waiting else "",
        ]
    )
    return (
        f"agent-messaging run {target}: pid {os.getpid()}, database {where(am.config)}; "
        f"hosting {len(hosted)} agent(s): {agents}{extra}; "
        f"recovered {unread} unread message(s), {calls} pending call(s), {meetings} active meeting(s)"
    )


async def serve(am: AgentMessaging[Any], setup: SetupHook | None, target: str, phase: list[str]) -> None:
    """Open ``am``, run ``setup``, print the start line and serve until the first signal; then close gracefully.

    ``phase`` gets what it is doing ("open", "setup", "serve"), for the error line if it fails.
    """
    stopping = anyio.Event()
    async with anyio.create_task_group() as tg:
        await tg.start(watch_signals, _stop_on(stopping))
        try:
            since = datetime.now(UTC)
            phase.append("open")
            async with am:
                phase.append("setup")
                if setup is not None:
                    await setup(am)
                phase.append("serve")
                typer.echo(await _start_line(am, target, since))
                sys.stdout.flush()
                await stopping.wait()
                started = time.monotonic()
                log.info("run.draining", grace=am.config.shutdown_grace)
            log.info("run.stopped", seconds=round(time.monotonic() - started, 3))
        finally:
            tg.cancel_scope.cancel()


def run(
    ctx: typer.Context,
    target: Annotated[str, typer.Argument(metavar="MODULE:ATTR", help="The AgentMessaging instance (or factory).")],
    grace: Annotated[
        float | None,
        typer.Option(
            "--grace", min=0, help="Seconds running handlers get to finish on shutdown (Config.shutdown_grace)."
        ),
    ] = None,
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="debug, info, warning, error or critical (default info).", show_default=False),
    ] = None,
    backend: Annotated[str, typer.Option("--backend", help="Event loop: asyncio or trio.")] = "asyncio",
    dsn: Annotated[
        str | None,
        typer.Option("--dsn", help="PostgreSQL DSN, overriding the app's configuration.", show_default=False),
    ] = None,
) -> None:
    """Host the agents of MODULE:ATTR until SIGINT/SIGTERM (the module's 'async def setup(am)' runs first)."""
    state = ctx.obj
    level = log_level or getattr(state, "log_level", None) or "INFO"
    try:
        configure_logging(level)
    except ConfigurationError as exc:
        fail(str(exc), 2)
    if backend not in ("asyncio", "trio"):
        fail(f"--backend must be asyncio or trio, not {backend!r}", 2)
    try:
        am, setup = load_app(target)
    except AppError as exc:
        fail(str(exc), 2)
    updates: dict[str, Any] = {}
    if grace is not None:
        updates["shutdown_grace"] = grace
    if dsn:
        updates["dsn"] = SecretStr(dsn)
    if updates:
        am.config = am.config.model_copy(update=updates)
    secrets = password_of(am.config.dsn_value())
    phase: list[str] = []
    try:
        anyio.run(serve, am, setup, target, phase, backend=backend)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BaseException as exc:
        if isinstance(exc, typer.Exit | SystemExit):
            raise
        leaf = _leaf(exc)
        log.debug("run.crash_traceback", exc_info=leaf)
        text = describe(leaf, secrets)
        if not isinstance(leaf, AgentMessagingError):
            text = f"{type(leaf).__name__}: {text}"
        where_ = phase[-1] if phase else "open"
        if where_ == "open":
            fail(f"cannot open the runtime: {text}")
        if where_ == "setup":
            fail(f"{target.partition(':')[0]}.setup(am) failed: {text}")
        fail(f"runtime crashed: {text}")


def _leaf(exc: BaseException) -> BaseException:
    """The first non-group exception inside ``exc``."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc
