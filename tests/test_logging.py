"""The library configures no logging: a program that does not configure it sees only warnings and errors, on
stderr, and a handler failure comes with its traceback; a program that configures logging or structlog gets
everything its configuration asks for."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import repo_root

PROGRAM = repo_root() / "tests" / "_logging_program.py"


def run(dsn: str, mode: str, **env: str) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MESSAGING_")}
    return subprocess.run(
        [sys.executable, str(PROGRAM), mode],
        capture_output=True,
        text=True,
        timeout=90,
        env={**base, "AGENT_MESSAGING_DSN": dsn, "PYTHONPATH": str(repo_root() / "src"), **env},
        cwd=repo_root(),
        check=False,
    )


@pytest.mark.parametrize("cli_level", [None, "DEBUG"])
def test_unconfigured_program_sees_warnings_with_traceback_on_stderr_only(dsn: str, cli_level: str | None) -> None:
    """Nothing on stdout but the program's output; on stderr, the handler failure with its traceback, no info.

    ``AGENT_MESSAGING_LOG_LEVEL`` is a setting of the CLI: a program's logging is its own.
    """
    result = run(dsn, "plain", **({"AGENT_MESSAGING_LOG_LEVEL": cli_level} if cli_level else {}))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    failures = [line for line in result.stderr.splitlines() if line.startswith("agent.handler_failed")]
    assert len(failures) == 1, result.stderr
    assert "agent='worker'" in failures[0]
    assert "attempt=1" in failures[0]
    assert "Traceback (most recent call last):" in result.stderr
    assert 'raise RuntimeError("the first attempt fails")' in result.stderr
    for info in ("runtime.open", "runtime.closed", "presence.open", "agent.hosted", "actor.restarted"):
        assert info not in result.stderr


def test_program_that_configures_logging_gets_the_library_records(dsn: str) -> None:
    result = run(dsn, "stdlib")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    lines = result.stderr.splitlines()
    assert any(line.startswith("agent_messaging.runtime INFO runtime.open") for line in lines), result.stderr
    assert any(line.startswith("agent_messaging.agent WARNING agent.handler_failed") for line in lines)
    assert "Traceback (most recent call last):" in result.stderr


def test_program_that_configures_structlog_keeps_structlog(dsn: str) -> None:
    result = run(dsn, "structlog")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    events = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    names = [e["event"] for e in events]
    assert "runtime.open" in names
    [failed] = [e for e in events if e["event"] == "agent.handler_failed"]
    assert failed["level"] == "warning"
    assert failed["agent"] == "worker"
    assert "exc_info" in failed  # the application's processors decide how to render it
