"""A server that refuses the connection is reported at once, with its reason and the fix; a DSN the driver
would misread is refused before connecting. Neither ever shows the password.

The test server trusts every local connection, so the tests make their own refusals on it: a throw-away role
with a password, for which a ``pg_hba.conf`` line (added for this role alone, removed after) demands
``scram-sha-256``; a database and a role that do not exist; a role without LOGIN.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from agent_messaging import AgentMessaging, Config, ConfigurationError, PersistenceUnavailable
from agent_messaging.config import dsn_host, dsn_password, redact_dsn
from agent_messaging.persistence.database import Database
from tests.conftest import admin, repo_root, with_database

pytestmark = pytest.mark.anyio

PASSWORD = "right-Pw-77"
WRONG = "wrong-Pw-13"
SLOW = 30.0  # a connect timeout the refusals must not wait for


def with_user(dsn: str, user: str, password: str | None = None) -> str:
    """``dsn`` (URL or key=value) connecting as ``user``."""
    if "://" in dsn:
        scheme, rest = dsn.split("://", 1)
        hostpart = rest.rpartition("@")[2] if "@" in rest.split("/", 1)[0] else rest
        secret = f":{password}" if password else ""
        return f"{scheme}://{user}{secret}@{hostpart}"
    words = [w for w in dsn.split() if not w.startswith(("user=", "password="))]
    return " ".join([*words, f"user={user}", *([f"password={password}"] if password else [])])


@pytest.fixture(scope="module")
def password_role(server_dsn: str) -> Iterator[str]:
    """A role that must give its password (``PASSWORD``) to connect; its name."""
    role = f"am_pw_{os.getpid()}"
    hba = Path(admin(server_dsn, "SHOW hba_file")[0]["hba_file"])
    if not os.access(hba, os.W_OK):
        pytest.skip(f"cannot edit the test server's {hba} to demand a password")
    admin(server_dsn, f"DROP ROLE IF EXISTS {role}", f"CREATE ROLE {role} LOGIN PASSWORD '{PASSWORD}'")
    original = hba.read_text()
    hba.write_text(f"local all {role} scram-sha-256\nhost all {role} all scram-sha-256\n{original}")
    try:
        admin(server_dsn, "SELECT pg_reload_conf()")
        wrong = with_user(server_dsn, role, WRONG)
        deadline = time.monotonic() + 10
        while True:  # the reload is asynchronous: wait until the server asks this role for its password
            try:
                admin(wrong, "SELECT 1")
            except Exception:
                break
            assert time.monotonic() < deadline, "the server never started asking for the password"
            time.sleep(0.05)
        yield role
    finally:
        hba.write_text(original)
        admin(server_dsn, "SELECT pg_reload_conf()")
        admin(server_dsn, f"DROP ROLE IF EXISTS {role}")


async def refused(dsn: str) -> ConfigurationError:
    """Open a Database on ``dsn``: it must fail with ConfigurationError well before the connect timeout."""
    database = Database(dsn, pool_size=2, connect_timeout=SLOW)
    started = time.monotonic()
    with anyio.fail_after(SLOW / 2), pytest.raises(ConfigurationError) as caught:
        await database.open()
    assert time.monotonic() - started < 5, "a refusal was retried"
    assert not isinstance(caught.value, PersistenceUnavailable)
    return caught.value


async def test_wrong_password_is_reported_at_once_with_the_fix(server_dsn: str, password_role: str) -> None:
    good = with_user(server_dsn, password_role, PASSWORD)
    database = Database(good, pool_size=2, connect_timeout=5)
    await database.open()  # the right password gets in: the refusal below is about the password
    assert await database.fetch_val("SELECT current_user") == password_role
    await database.aclose()

    error = await refused(with_user(server_dsn, password_role, WRONG))
    text = str(error)
    assert f'password authentication failed for user "{password_role}"' in text
    assert "check the user name and password in the DSN (AGENT_MESSAGING_DSN" in text
    assert WRONG not in text
    assert WRONG not in repr(error)
    assert error.__cause__ is None
    assert error.__suppress_context__


async def test_missing_password_is_reported_at_once(server_dsn: str, password_role: str) -> None:
    text = str(await refused(with_user(server_dsn, password_role)))
    assert "password missing" in text
    assert "add it to the DSN" in text


async def test_missing_database_says_to_create_it(server_dsn: str) -> None:
    text = str(await refused(with_database(server_dsn, "am_no_such_database")))
    assert 'database "am_no_such_database" does not exist' in text
    assert 'create the database (createdb "am_no_such_database"' in text


async def test_missing_role_says_to_create_it(server_dsn: str) -> None:
    text = str(await refused(with_user(server_dsn, "am_no_such_role", "some-Secret-1")))
    assert 'role "am_no_such_role" does not exist' in text
    assert 'CREATE ROLE "am_no_such_role" LOGIN' in text
    assert "some-Secret-1" not in text


async def test_role_without_login_says_to_allow_it(server_dsn: str) -> None:
    role = f"am_nologin_{os.getpid()}"
    await anyio.to_thread.run_sync(admin, server_dsn, f"DROP ROLE IF EXISTS {role}")
    await anyio.to_thread.run_sync(admin, server_dsn, f"CREATE ROLE {role} NOLOGIN")
    try:
        text = str(await refused(with_user(server_dsn, role)))
        assert f'role "{role}" is not permitted to log in' in text
        assert f'ALTER ROLE "{role}" LOGIN' in text
    finally:
        await anyio.to_thread.run_sync(admin, server_dsn, f"DROP ROLE IF EXISTS {role}")


async def test_runtime_on_a_refusing_server_raises_configuration_error_at_once(
    server_dsn: str, password_role: str
) -> None:
    config = Config(dsn=with_user(server_dsn, password_role, WRONG), connect_timeout=SLOW)
    started = time.monotonic()
    with anyio.fail_after(SLOW / 2), pytest.raises(ConfigurationError, match="password authentication failed"):
        async with AgentMessaging[Any](config):
            pytest.fail("the runtime opened with a wrong password")
    assert time.monotonic() - started < 5


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://alice:p@ss@127.0.0.1:5432/db",  # '@' in the password
        "postgresql://alice:pa/ss@127.0.0.1:5432/db",  # '/' in the password
        "postgresql://alice:p@s:s/w@127.0.0.1/db",  # all three
        "postgresql://alice:pa?ss@127.0.0.1/db",
        "postgresql://alice:pa#ss@127.0.0.1/db",
        "postgresql://alice:secretpw/db",  # no '@' before the host: the password would be the port
        "postgresql://alice:p@ss/w:rd@127.0.0.1/db",  # the driver would connect to host "ss"
        "postgresql://alice:p@s?s@127.0.0.1/db",
        "mysql://alice:secretpw@127.0.0.1/db",
    ],
)
def test_a_dsn_the_driver_would_misread_is_refused_before_connecting(dsn: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        Database(dsn)
    text = str(caught.value)
    for part in ("p@ss", "pa/ss", "s:s/w", "pa?ss", "pa#ss", "secretpw", "p@s?s"):
        assert part not in text
    assert "percent-encode" in text or "postgresql://" in text


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://alice:p%40ss%2Fw%3Fo%23r%3Ad@127.0.0.1:5432/db",  # the same characters, encoded
        "postgresql://alice:pa:ss@127.0.0.1/db",  # ':' in a password is fine
        "postgresql://postgres@/postgres?host=/tmp/sockets",
        "postgresql://u@h1:5432,h2:5433/db",
        "postgresql://u@[::1]:5432/db",
        "host=/tmp user=alice password='p@ss/w?o#rd' dbname=db",
    ],
)
def test_well_formed_dsns_pass(dsn: str) -> None:
    assert Database(dsn).redacted_dsn


async def test_unreachable_server_names_the_last_error_and_what_to_check() -> None:
    database = Database("postgresql://u:s3cr3t-pw@127.0.0.1:1/db", pool_size=2, connect_timeout=0.5)
    with anyio.fail_after(30), pytest.raises(PersistenceUnavailable) as caught:
        await database.open()
    text = str(caught.value)
    assert text.startswith("database unavailable at 127.0.0.1:1: not reachable within 0.5s")
    assert "last error: error connecting to server: Connection refused" in text
    assert "check that PostgreSQL is running there" in text
    assert "s3cr3t-pw" not in text


# --------------------------------------------------------------------------- the command line


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    """``agent-messaging ARGS`` through the real entry point."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MESSAGING_")}
    env["PYTHONPATH"] = str(repo_root() / "src")
    env["AGENT_MESSAGING_CONNECT_TIMEOUT"] = str(SLOW)
    return subprocess.run(
        [sys.executable, "-m", "agent_messaging", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=repo_root(),
        stdin=subprocess.DEVNULL,
        timeout=60,
        check=False,
    )


def one_error_line(result: subprocess.CompletedProcess[str], *secrets: str) -> str:
    assert result.returncode == 1, result.stderr
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    for secret in secrets:
        assert secret not in result.stderr
    return lines[0]


def test_cli_reports_a_wrong_password_at_once(server_dsn: str, password_role: str) -> None:
    started = time.monotonic()
    line = one_error_line(cli("agents", "list", "--dsn", with_user(server_dsn, password_role, WRONG)), WRONG)
    assert time.monotonic() - started < 10  # not the 30 s connect timeout
    assert "refused the connection: password authentication failed" in line
    assert "check the user name and password" in line


@pytest.mark.parametrize(
    "dsn",
    [
        "postgresql://u:p@ss/w:rd@127.0.0.1:5432/db",
        "postgresql://u:pa/ss@127.0.0.1/db",
        "postgresql://u:p@s?s@127.0.0.1/db",
    ],
)
@pytest.mark.parametrize("command", [["db", "status"], ["agents", "list"]])
def test_cli_reports_a_malformed_dsn_in_one_line(dsn: str, command: list[str]) -> None:
    password = dsn.split("://", 1)[1].split(":", 1)[1].rpartition("@")[0]
    line = one_error_line(cli(*command, "--dsn", dsn), password)
    assert "percent-encode" in line or "postgresql://" in line


@pytest.mark.parametrize(
    ("dsn", "password", "host"),
    [
        ("postgresql://alice:pa/ss@db.example.com:5433/app", "pa/ss", "db.example.com:5433"),
        ("postgresql://alice:p@ss/w:rd@db/app", "p@ss/w:rd", "db"),
        ("postgresql://alice:pa?ss@db/app", "pa?ss", "db"),
        ("postgresql://alice:pa#ss@db/app", "pa#ss", "db"),
    ],
)
def test_a_malformed_dsn_is_still_shown_without_its_password(dsn: str, password: str, host: str) -> None:
    """``db url``, start lines and logs show ``redact_dsn``: the whole password is hidden, whatever it holds."""
    assert dsn_password(dsn) == password
    assert redact_dsn(dsn) == f"postgresql://alice:***@{dsn.rpartition('@')[2]}"
    assert dsn_host(dsn) == host
