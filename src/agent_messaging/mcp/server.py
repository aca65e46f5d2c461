"""The MCP server: the messaging operations as Model Context Protocol tools, acting only as the given agents.

``build_server(am, ["alice"])`` returns an ``mcp`` SDK ``MCPServer`` whose tools
(``send_note``, ``call_agent``, ``reply``, ``read_messages``,
``wait_for_message``, ``list_agents``, the meeting tools...) run on one
:class:`~agent_messaging.AgentSession` per agent: a client sees and touches
only those agents' messages and the meetings they take part in. With more
than one agent every tool takes an ``as_agent`` argument; with one it is
implied. A refused or failed operation is a tool error (``isError``) whose
text says what went wrong and what to do; never a traceback.

``serve(am, agents, http=None)`` opens the runtime (it hosts nothing) and
serves over stdio, or streamable HTTP on ``(host, port)`` at ``/mcp``, until
the client goes away (stdio) or SIGINT/SIGTERM; then it closes the runtime
gracefully. Tool calls run concurrently: a long ``call_agent`` does not hold
up the others. Stdio works on asyncio and trio; HTTP (uvicorn) needs asyncio.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator, Sequence
from functools import partial
from typing import Any

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations

from .. import __version__
from .._acting import AgentSession, explain
from .._agent_tools import ToolSpec, param, tool_function, tool_specs
from .._app import AgentMessaging
from .._log import get_logger
from ..errors import AgentMessagingError, AgentNotFound

__all__ = ["build_server", "serve"]

log = get_logger("agent_messaging.mcp")
_READ_ONLY = {"list_agents", "meeting_status", "meeting_history"}


def build_server(messaging: AgentMessaging[Any], agents: Sequence[str], *, max_wait: float = 60.0) -> MCPServer[Any]:
    """An MCP server whose tools act as ``agents`` (and nobody else) on the open runtime ``messaging``.

    ``max_wait`` caps every wait (calls, waiting for a message or a meeting turn), in seconds.
    """
    sessions = {agent: AgentSession(messaging, agent, max_wait=max_wait) for agent in agents}
    if not sessions:
        raise ValueError("build_server needs at least one agent to act as")
    names = list(sessions)
    server: MCPServer[Any] = MCPServer(
        "agent-messaging", instructions=_instructions(names, max_wait), version=__version__, log_level="WARNING"
    )
    extra = []
    if len(names) > 1:
        extra.append(param("as_agent", str, f"Which of your agents acts: one of {', '.join(map(repr, names))}."))
    for spec in tool_specs(messaging.message_type, max_wait).values():
        fn = tool_function(spec, partial(_invoke, spec, sessions), extra)
        server.add_tool(
            fn,
            name=spec.name,
            description=spec.description,
            annotations=ToolAnnotations(read_only_hint=spec.name in _READ_ONLY),
            structured_output=False,
        )
    return server


def _instructions(agents: list[str], max_wait: float) -> str:
    who = (
        f"You act as the agent {agents[0]!r}"
        if len(agents) == 1
        else f"You act as the agents {', '.join(map(repr, agents))} (say which in each tool's as_agent)"
    )
    return (
        f"{who} in agent-messaging, where AI agents of one organization message each other. "
        "send_note sends a one-way note; call_agent calls an agent and waits for its answer; read_messages and "
        "wait_for_message give you what others sent (answer calls, kind 'request', with reply); list_agents shows "
        "who you can talk to. Meetings are turn-based: attend_meeting waits for your turn, then speak or pass_turn "
        f"while you hold the floor. Every wait lasts at most {max_wait:g}s: call again to keep waiting."
    )


async def _invoke(spec: ToolSpec, sessions: dict[str, AgentSession[Any]], arguments: dict[str, Any]) -> Any:
    """Run one tool call as the chosen agent; errors become tool errors a model can act on."""
    as_agent = arguments.pop("as_agent", None)
    if as_agent is None:
        session = next(iter(sessions.values()))
    elif as_agent in sessions:
        session = sessions[as_agent]
    else:
        raise ToolError(
            f"InvalidOperation: this server acts only as {', '.join(map(repr, sessions))}; it cannot act as, or read "
            f"the messages of, {as_agent!r}. Set as_agent to one of them."
        )
    try:
        return await spec.run(session, **arguments)
    except AgentMessagingError as exc:
        raise ToolError(explain(exc, session.agent)) from None
    except Exception as exc:
        log.exception("mcp.tool_failed", tool=spec.name, agent=session.agent)
        raise ToolError(
            f"internal error ({type(exc).__name__}) in {spec.name}; the server's log has the details"
        ) from None


# ---------------------------------------------------------------------------- serving

#: Seconds the stdio transport gets, after SIGINT/SIGTERM, to notice (its stdin read cannot be cancelled).
STDIO_GRACE = 3.0


async def serve(
    messaging: AgentMessaging[Any],
    agents: Sequence[str],
    *,
    http: tuple[str, int] | None = None,
    max_wait: float = 60.0,
) -> None:
    """Open ``messaging`` and serve the MCP tools for ``agents`` over stdio (or HTTP) until done or signalled.

    Prints one line on standard error once serving: who it acts as, and where.
    """
    async with messaging:
        unknown = []
        for agent in agents:
            try:
                await messaging.get_agent(agent)
            except AgentNotFound:
                unknown.append(agent)
        if unknown:
            log.warning("mcp.unregistered_agents", agents=unknown, note="their tools fail until they are registered")
        server = build_server(messaging, agents, max_wait=max_wait)
        where = "stdio" if http is None else f"http://{_netloc(*http)}/mcp"
        pending = f"; not registered yet: {', '.join(unknown)}" if unknown else ""
        async with anyio.create_task_group() as tg:
            if http is None:
                done = anyio.Event()
                tg.start_soon(_serve_stdio, server, tg.cancel_scope, done)
                tg.start_soon(_on_signal, partial(_stop_stdio, tg.cancel_scope, done))
            else:
                app = server.streamable_http_app(host=http[0])
                config = uvicorn.Config(
                    app, host=http[0], port=http[1], log_config=None, access_log=False, timeout_graceful_shutdown=5
                )
                web = _Uvicorn(config)
                tg.start_soon(_serve_http, web, tg.cancel_scope)
                tg.start_soon(_on_signal, partial(_stop_http, web))
            print(f"agent-messaging mcp: acting as {', '.join(agents)}; serving on {where}{pending}", file=sys.stderr)
            sys.stderr.flush()


async def _serve_stdio(server: MCPServer[Any], scope: anyio.CancelScope, done: anyio.Event) -> None:
    try:
        await server.run_stdio_async()  # returns when the client closes our stdin
        log.info("mcp.client_gone")
    finally:
        done.set()
        scope.cancel()


async def _stop_stdio(scope: anyio.CancelScope, done: anyio.Event) -> None:
    scope.cancel()
    with anyio.CancelScope(shield=True), anyio.move_on_after(STDIO_GRACE):
        await done.wait()
    if not done.is_set():  # the transport is still blocked reading stdin: leave (everything sent is committed)
        log.warning("mcp.exit_now", reason="stdin still open after the signal")
        sys.stderr.flush()
        os._exit(0)


async def _serve_http(web: uvicorn.Server, scope: anyio.CancelScope) -> None:
    await web.serve()
    scope.cancel()


async def _stop_http(web: uvicorn.Server) -> None:
    web.should_exit = True


async def _on_signal(stop: Callable[[], Awaitable[None]]) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            log.info("mcp.stopping", signal=signal.Signals(signum).name)
            await stop()


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling (``serve`` handles SIGINT/SIGTERM for both transports)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
