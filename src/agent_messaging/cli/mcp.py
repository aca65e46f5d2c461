"""``agent-messaging mcp --agent ID [--agent ID ...]``: serve the messaging tools to an MCP client (extra ``[mcp]``).

The command hosts no agent: it opens the database, acts as the given agents, and
serves until the client goes away (stdio) or SIGINT/SIGTERM. Logs go to standard
error; on stdio, standard output is the protocol channel. The server itself is
:mod:`agent_messaging.mcp` (``build_server``, ``serve``).

Importing this module does not import the ``mcp`` SDK (the CLI registers the
command whether or not the extra is installed): the command imports the server
when it runs, and without the extra ``[mcp]`` says how to install it.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer
from pydantic import ValidationError

from .._app import AgentMessaging
from .._validation import check_id
from ..errors import AgentMessagingError, ConfigurationError
from ._common import DsnOption, describe, fail, password_of, settings
from ._logging import configure_logging

__all__ = ["mcp_command"]


def mcp_command(
    ctx: typer.Context,
    agent: Annotated[
        list[str],
        typer.Option(
            "--agent",
            "-a",
            help="An agent to act as (repeat for several: every tool then takes 'as_agent').",
            show_default=False,
        ),
    ],
    dsn: DsnOption = None,
    http: Annotated[
        str | None,
        typer.Option(
            "--http",
            metavar="HOST:PORT",
            help="Serve streamable HTTP on HOST:PORT (endpoint /mcp) instead of stdio.",
            show_default=False,
        ),
    ] = None,
    max_wait: Annotated[
        float,
        typer.Option("--max-wait", min=0.001, help="Longest wait of any tool (a call, a message, a meeting turn), s."),
    ] = 60.0,
    message_type: Annotated[
        str | None,
        typer.Option(
            "--message-type",
            metavar="MODULE:ATTR",
            help="The message type (e.g. a pydantic model) of your system; default: text and JSON values.",
            show_default=False,
        ),
    ] = None,
    backend: Annotated[str, typer.Option("--backend", help="Event loop: asyncio or trio (stdio only).")] = "asyncio",
    log_level: Annotated[
        str | None,
        typer.Option("--log-level", help="debug, info, warning (default), error or critical.", show_default=False),
    ] = None,
) -> None:
    """Serve the messaging tools to an MCP client, acting only as the given agents (stdio; HTTP with --http)."""
    level = log_level or getattr(ctx.obj, "log_level", None) or "WARNING"
    try:
        configure_logging(level)
    except ConfigurationError as exc:
        fail(str(exc), 2)
    try:
        agents = list(dict.fromkeys(check_id(a, "--agent") for a in agent))
    except AgentMessagingError as exc:
        fail(str(exc), 2)
    if backend not in ("asyncio", "trio"):
        fail(f"--backend must be asyncio or trio, not {backend!r}", 2)
    address = _address(http) if http is not None else None
    if address is not None and backend != "asyncio":
        fail("--http needs --backend asyncio (the HTTP server, uvicorn, runs on asyncio)", 2)
    try:
        # here, not at the top: the CLI must load without the extra (this is the one import of the SDK)
        from ..mcp.server import serve
    except ImportError as exc:
        fail(f"the MCP server needs the 'mcp' extra: pip install 'agent-messaging[mcp]' ({exc})", 2)
    config = settings(dsn)
    am = AgentMessaging[Any](config, message_type=_message_type(message_type) if message_type else None)
    secrets = password_of(config.dsn_value())
    try:
        anyio.run(_serve, serve, am, agents, address, max_wait, backend=backend)
    except KeyboardInterrupt:
        fail("interrupted", 130)
    except BaseException as exc:
        if isinstance(exc, typer.Exit | SystemExit):
            raise
        leaf = exc
        while isinstance(leaf, BaseExceptionGroup) and leaf.exceptions:
            leaf = leaf.exceptions[0]
        if isinstance(leaf, AgentMessagingError | ValidationError | OSError):
            fail(describe(leaf, secrets))
        raise


async def _serve(serve: Any, am: Any, agents: list[str], address: tuple[str, int] | None, max_wait: float) -> None:
    await serve(am, agents, http=address, max_wait=max_wait)


def _address(value: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:PORT`` for IPv6) as a pair; exits 2 with a message when malformed."""
    host, sep, port = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        fail(f"--http takes HOST:PORT (for example 127.0.0.1:8765), not {value!r}", 2)
    return host, int(port)


def _message_type(target: str) -> Any:
    """Import ``MODULE:ATTR`` (the working directory is on ``sys.path``); exits 2 if it cannot."""
    module_name, sep, attr = target.partition(":")
    if not sep or not module_name or not attr:
        fail(f"--message-type takes MODULE:ATTR (for example myapp.models:Note), not {target!r}", 2)
    cwd = str(Path.cwd())
    if cwd not in sys.path:
        sys.path.insert(0, cwd)
    try:
        value: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            value = getattr(value, part)
    except (ImportError, AttributeError) as exc:
        fail(f"cannot load --message-type {target}: {exc}", 2)
    return value
