"""The ``agent-messaging`` CLI: ``--version`` and the ``db`` commands, on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from agent_messaging import __version__
from agent_messaging.cli import app
from agent_messaging.persistence.migrations import available_migrations

SRC = Path(__file__).resolve().parents[2] / "src"
UNREACHABLE = "postgresql://someone:s3cr3t-pw@127.0.0.1:1/nowhere"
# Variables the CLI reads, cleared so the machine's environment cannot change what a test sees.
CLEAN_ENV: dict[str, str | None] = {
    "AGENT_MESSAGING_DSN": None,
    "AGENT_MESSAGING_LOG_LEVEL": None,
    "AGENT_MESSAGING_EMBEDDED_DATA_DIR": None,
    "AGENT_MESSAGING_CONNECT_TIMEOUT": "1",
}


pytestmark = pytest.mark.usefixtures("restore_logging")


def invoke(*args: str, **env: str | None) -> Result:
    return CliRunner().invoke(app, list(args), env={**CLEAN_ENV, **env}, prog_name="agent-messaging")


def assert_one_line_error(result: Result, *, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ")
    assert "Traceback" not in result.stderr
    return lines[0]


def test_version() -> None:
    result = invoke("--version")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == f"agent-messaging {__version__}"


def test_no_command_shows_help() -> None:
    result = invoke()
    assert result.exit_code != 0
    assert "db" in result.output


def test_status_migrate_status(fresh_database: Callable[[bool], str]) -> None:
    dsn = fresh_database(False)

    before = invoke("db", "status", "--dsn", dsn)
    assert before.exit_code == 0, before.output
    row = next(line for line in before.stdout.splitlines() if line.startswith("0001"))
    assert row.split()[:4] == ["0001", "initial", "pending", "-"]
    shipped = available_migrations()
    assert f"{len(shipped)} pending" in before.stdout

    migrated = invoke("db", "migrate", "--dsn", dsn)
    assert migrated.exit_code == 0, migrated.output
    assert "applied 0001_initial" in migrated.stdout

    status = invoke("db", "status", "--json", "--dsn", dsn)
    assert status.exit_code == 0, status.output
    report = json.loads(status.stdout)
    assert report["pending"] == 0
    assert [(m["version"], m["name"], m["applied"]) for m in report["migrations"]] == [
        (m.version, m.name, True) for m in shipped
    ]
    assert report["migrations"][0]["applied_at"] is not None

    again = invoke("db", "migrate", "--json", "--dsn", dsn)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout)["applied"] == []


def test_dsn_from_environment(dsn: str) -> None:
    result = invoke("db", "status", "--json", AGENT_MESSAGING_DSN=dsn)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["pending"] == 0


def test_url_hides_password() -> None:
    result = invoke("db", "url", "--dsn", "postgresql://u:secret@h/db")
    assert result.exit_code == 0, result.output
    assert "secret" not in result.output
    assert result.stdout.strip() == "postgresql://u:***@h/db"

    from_env = invoke("db", "url", "--json", AGENT_MESSAGING_DSN="host=h user=u password=secret dbname=db")
    assert from_env.exit_code == 0, from_env.output
    assert "secret" not in from_env.output
    report = json.loads(from_env.stdout)
    assert report["source"] == "AGENT_MESSAGING_DSN"
    assert report["embedded"] is False


def test_url_without_dsn_names_the_embedded_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = invoke("db", "url")
    assert result.exit_code == 0, result.output
    assert "embedded" in result.stdout
    assert str(tmp_path.resolve() / ".agent-messaging" / "pgdata") in result.stdout

    report = json.loads(invoke("db", "url", "--json").stdout)
    assert report["embedded"] is True
    assert report["dsn"] is None
    assert report["data_dir"] == str(tmp_path.resolve() / ".agent-messaging" / "pgdata")
    assert not (tmp_path / ".agent-messaging").exists()  # `db url` starts nothing


@pytest.mark.parametrize("command", [["db", "status"], ["db", "migrate"]])
def test_unreachable_database_is_one_line(command: list[str]) -> None:
    line = assert_one_line_error(invoke(*command, "--dsn", UNREACHABLE))
    assert "127.0.0.1:1" in line
    assert "s3cr3t" not in line


def test_bad_log_level_is_one_line() -> None:
    line = assert_one_line_error(invoke("--log-level", "loud", "db", "url"), code=2)
    assert "loud" in line


def test_bad_configuration_is_one_line() -> None:
    line = assert_one_line_error(invoke("db", "url", AGENT_MESSAGING_POOL_SIZE="many"))
    assert "pool_size" in line


def test_entry_point_unreachable_database() -> None:
    """Through the real entry point (``python -m agent_messaging``): one line, no traceback, no secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MESSAGING_")}
    env["AGENT_MESSAGING_CONNECT_TIMEOUT"] = "1"
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))

    def entry_point(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "agent_messaging", *args],
            capture_output=True,
            text=True,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=60,
            check=False,
        )

    proc = entry_point("db", "status", "--dsn", UNREACHABLE)
    assert proc.returncode == 1, proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert proc.stderr.startswith("error: database unavailable at 127.0.0.1:1")
    assert "Traceback" not in proc.stderr
    assert "s3cr3t" not in proc.stderr

    version = entry_point("--version")
    assert version.returncode == 0, version.stderr
    assert version.stdout.startswith("agent-messaging ")
