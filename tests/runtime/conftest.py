"""Fixtures for the runtime and CLI tests (the backends come from the root conftest)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import structlog

from agent_messaging.cli._logging import CHATTY_LOGGERS


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """The CLI configures structlog and the root logger; put them back for the tests that follow."""
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_chatty = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    yield
    structlog.configure(**saved_structlog)
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    for name, level in saved_chatty.items():
        logging.getLogger(name).setLevel(level)
