"""Conversations between two agents: calls (talk and wait) and chats (talk without waiting).

- :mod:`.facade`: :class:`Conversations`, reached as ``am.conversation``
- :mod:`.chat`: the read side (unread queue, waiting for a message, history, resuming a handler)
"""

from .chat import DEFAULT, Timeout
from .facade import Conversations

__all__ = ["DEFAULT", "Conversations", "Timeout"]
