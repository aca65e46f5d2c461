"""Test infrastructure: one real PostgreSQL per session, one fresh database per test.

With ``AGENT_MESSAGING_TEST_DSN`` set, the suite uses that server; otherwise it
starts the embedded server once in a temporary directory. A template database
is migrated once; every test gets its own database cloned from it.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anyio
import psqlpy
import pytest
import structlog

from agent_messaging import AgentMessaging, Config
from agent_messaging.cli._logging import CHATTY_LOGGERS
from agent_messaging.persistence.database import Database
from agent_messaging.persistence.embedded import _start, _stop
from agent_messaging.persistence.migrations import apply_migrations
from tests._processes import Child, child_env

TEMPLATE = "am_test_template"
_counter = itertools.count()


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    """The CLI (run in-process by some tests) configures structlog and the root logger: put them back after
    every test, so that the next one sees the library's defaults (structlog not configured)."""
    was_configured = structlog.is_configured()
    saved_structlog = structlog.get_config()
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    saved_chatty = {name: logging.getLogger(name).level for name in CHATTY_LOGGERS}
    yield
    if was_configured:
        structlog.configure(**saved_structlog)
    else:
        structlog.reset_defaults()
    root.handlers[:] = saved_handlers
    root.setLevel(saved_level)
    for name, level in saved_chatty.items():
        logging.getLogger(name).setLevel(level)


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Every async test runs on asyncio and on trio."""
    return str(request.param)


def with_database(dsn: str, name: str) -> str:
    """``dsn`` pointed at database ``name``."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        return urlunsplit((parts.scheme, parts.netloc, "/" + name, parts.query, parts.fragment))
    words = [w for w in dsn.split() if not w.startswith("dbname=")]
    return " ".join([*words, f"dbname={name}"])


def admin(dsn: str, *statements: str) -> list[dict[str, Any]]:
    """Run statements on a short-lived connection (sync, outside the test's event loop)."""

    async def go() -> list[dict[str, Any]]:
        conn = await psqlpy.connect(dsn=dsn)
        try:
            result: list[dict[str, Any]] = []
            for sql in statements:
                result = (await conn.execute(sql)).result()
            return result
        finally:
            conn.close()

    return anyio.run(go, backend="asyncio")


@pytest.fixture(scope="session")
def server_dsn() -> Iterator[str]:
    """DSN of the session's PostgreSQL server (maintenance database)."""
    external = os.environ.get("AGENT_MESSAGING_TEST_DSN")
    if external:
        yield external
        return
    # not under pytest's rotating basetemp: a concurrent pytest session could delete it
    home = Path(tempfile.mkdtemp(prefix="am-test-pg-"))
    handle = _start(home / "pgdata")
    try:
        yield handle.dsn
    finally:
        _stop(handle)
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def template_dsn(server_dsn: str) -> str:
    """A migrated template database, made once per session."""
    admin(server_dsn, f"DROP DATABASE IF EXISTS {TEMPLATE} WITH (FORCE)", f"CREATE DATABASE {TEMPLATE}")
    dsn = with_database(server_dsn, TEMPLATE)

    async def migrate() -> None:
        db = Database(dsn, pool_size=2)
        await db.open()
        try:
            await apply_migrations(db)
        finally:
            await db.aclose()

    anyio.run(migrate, backend="asyncio")
    return dsn


@pytest.fixture
def fresh_database(server_dsn: str) -> Iterator[Callable[[bool], str]]:
    """Factory of new databases: ``fresh_database(migrated=True)`` returns a DSN; all dropped after the test."""
    made: list[str] = []

    def make(migrated: bool = True) -> str:
        name = f"am_test_{os.getpid()}_{next(_counter)}"
        template = f" TEMPLATE {TEMPLATE}" if migrated else ""
        admin(server_dsn, f"CREATE DATABASE {name}{template}")
        made.append(name)
        return with_database(server_dsn, name)

    yield make
    for name in made:
        with contextlib.suppress(Exception):
            admin(server_dsn, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture
def dsn(template_dsn: str, fresh_database: Callable[[bool], str]) -> str:
    """DSN of this test's own migrated database."""
    return fresh_database(True)


@pytest.fixture
def config(dsn: str) -> Config:
    """A Config for this test's database (fast timeouts for tests)."""
    return Config(dsn=dsn, pool_size=4, connect_timeout=5, persistence_timeout=5)


@pytest.fixture
async def am(config: Config) -> AsyncIterator[AgentMessaging[Any]]:
    """An open runtime on this test's database."""
    async with AgentMessaging[Any](config) as runtime:
        yield runtime


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> None:
    """Mark every async test function anyio (before parametrization, so it runs on both backends)."""
    if isinstance(collector, pytest.Class | pytest.Module) and collector.funcnamefilter(name) and _is_async(obj):
        pytest.mark.anyio(obj)


def _is_async(obj: object) -> bool:
    return inspect.iscoroutinefunction(obj)


def repo_root() -> Path:
    """The project's root folder."""
    return Path(__file__).resolve().parent.parent


@pytest.fixture
def spawn(dsn: str, tmp_path: Path) -> Iterator[Callable[..., Child]]:
    """``spawn(*args, **env)``: ``python *args`` on the test's database; killed at the end of the test."""
    started: list[Child] = []
    env = {**child_env(dsn), "AM_HANDLED_FILE": str(tmp_path / "handled")}

    def start(*args: str, **extra: str) -> Child:
        child = Child(list(args), {**env, **extra})
        started.append(child)
        return child

    yield start
    for child in started:
        child.stop()
        # kept for a failing test's post-mortem (pytest keeps the last runs' tmp_path)
        (tmp_path / f"child-{child.proc.pid}.log").write_text("".join(child.output))
