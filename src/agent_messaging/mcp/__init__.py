"""agent-messaging as a Model Context Protocol server (extra ``[mcp]``).

``agent-messaging mcp --agent alice`` serves the messaging operations (notes,
calls, replies, unread messages, meetings...) as MCP tools to a client such as
a desktop assistant or an IDE, acting as ``alice`` and nobody else. See
``docs/llm-agents.md``.

- :func:`build_server` / :func:`serve` (in :mod:`agent_messaging.mcp.server`):
  the server, to embed or run yourself. Importing this package imports the
  ``mcp`` SDK.
- The ``agent-messaging mcp`` command is the CLI's
  (``agent_messaging.cli.mcp.mcp_command``); it imports this package only when
  it runs, so the CLI works without the extra.
"""

from .server import build_server as build_server, serve as serve

__all__ = ["build_server", "serve"]
