"""The library's loggers: structlog when the application configured it, the standard ``logging`` module otherwise.

Library code never configures logging, and a program that uses the library
without configuring logging sees nothing of it below warning. structlog left
unconfigured would print every event, info included, to standard output (mixed
with the program's own output), so each call of a logger made here checks
``structlog.is_configured()``:

- configured (by the application, or by the CLI in ``cli/_logging.py``): the
  call goes to ``structlog.get_logger(name)`` as it always did: the
  application's processors, renderer and level filter apply, and context bound
  with ``structlog.contextvars`` is merged by them;
- not configured: the call becomes one record of the standard logger ``name``
  (``agent_messaging.runtime``, ``agent_messaging.agent``...), its text
  ``event key=value ...`` (context bound with ``structlog.contextvars``
  included) and its traceback from ``exc_info``. Python's defaults then apply:
  with no handler configured, warnings and errors go to standard error and
  nothing below; ``logging.basicConfig(level=logging.INFO)`` or a
  ``dictConfig`` in the application shows (or silences) them like any other
  library's.
"""

from __future__ import annotations

import logging
from typing import Any

import structlog

__all__ = ["Logger", "get_logger"]


class Logger:
    """A named logger with structlog's call style: ``log.warning("event.name", key=value, exc_info=exc)``."""

    __slots__ = ("_std", "_struct", "name")

    def __init__(self, name: str) -> None:
        self.name = name
        self._std = logging.getLogger(name)
        self._struct: Any = structlog.get_logger(name)

    def __repr__(self) -> str:
        return f"Logger({self.name!r})"

    def debug(self, event: str, **fields: Any) -> None:
        """Log ``event`` at debug level."""
        self._log(logging.DEBUG, "debug", event, fields)

    def info(self, event: str, **fields: Any) -> None:
        """Log ``event`` at info level."""
        self._log(logging.INFO, "info", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Log ``event`` at warning level."""
        self._log(logging.WARNING, "warning", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Log ``event`` at error level."""
        self._log(logging.ERROR, "error", event, fields)

    def exception(self, event: str, **fields: Any) -> None:
        """Log ``event`` at error level with the exception being handled (its traceback)."""
        self._log(logging.ERROR, "exception", event, fields)

    def critical(self, event: str, **fields: Any) -> None:
        """Log ``event`` at critical level."""
        self._log(logging.CRITICAL, "critical", event, fields)

    def _log(self, level: int, method: str, event: str, fields: dict[str, Any]) -> None:
        if structlog.is_configured():
            getattr(self._struct, method)(event, **fields)
            return
        if not self._std.isEnabledFor(level):
            return
        exc_info = fields.pop("exc_info", True if method == "exception" else None)
        context = structlog.contextvars.get_contextvars()
        items = {**context, **fields}
        text = " ".join([event, *(f"{key}={value!r}" for key, value in items.items())])
        # stacklevel: the record names the library function that logged, not this module
        self._std.log(level, "%s", text, exc_info=exc_info, stacklevel=3)


def get_logger(name: str) -> Logger:
    """The library's logger ``name`` (an ``agent_messaging.*`` name)."""
    return Logger(name)
