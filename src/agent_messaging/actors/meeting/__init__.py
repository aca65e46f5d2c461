"""Turn-based meetings of many agents.

- :mod:`.facade`: :class:`Meetings`, reached as ``am.meeting``
- :mod:`.actor`: the meeting actor, the only writer of its meeting's state
- :mod:`.runners`: the meeting supervisor, claims on meetings, recovery and takeover
- :mod:`.participants`: agents whose turns a handler here takes
- :mod:`.events`: the dispatcher of ``on_meeting_event`` handlers
- :mod:`.types`: commands, seats, selectors
"""

from .facade import Meetings
from .types import Selector

__all__ = ["Meetings", "Selector"]
