"""``agent-messaging demo`` through the real entry point, in a fresh working directory."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from tests.conftest import repo_root

PATTERNS = ["1. Note (one-way)", "2. Call (send_and_wait)", "3. Chat (send, read later)", "4. Meeting"]


def demo(cwd: Path, dsn: str | None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(repo_root() / "src")}
    env.pop("AGENT_MESSAGING_DSN", None)
    env.pop("AGENT_MESSAGING_EMBEDDED_DATA_DIR", None)
    if dsn is not None:
        env["AGENT_MESSAGING_DSN"] = dsn
    return subprocess.run(
        [sys.executable, "-m", "agent_messaging", "demo"],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def check(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for heading in PATTERNS:
        assert heading in out, out
    assert "let the turn run out" in out
    assert "1 turn timeout" in out
    assert "wait_for_message -> bob" in out
    assert "opens the unread queue: 2 message(s)" in out
    assert "oracle" in out
    assert "reply in" in out
    assert "Summary" in out
    assert "data lives in:" in out
    return out


def test_demo_twice_on_a_dsn(dsn: str, tmp_path: Path) -> None:
    first = check(demo(tmp_path, dsn))
    assert "first demo run on this database" in first
    assert "postgresql://" in first
    assert "data lives in: postgresql://" in first
    second = check(demo(tmp_path, dsn))
    assert "found from earlier demo runs: 1 run left 7 messages and 1 meeting" in second
    assert "from 2 demo runs" in second
    assert not (tmp_path / ".agent-messaging").exists()  # a DSN was set: no embedded server


def test_demo_on_the_embedded_server_in_a_fresh_directory() -> None:
    home = Path(tempfile.mkdtemp(prefix="am-demo-"))  # not under pytest's basetemp (see tests/conftest.py)
    try:
        out = check(demo(home, None))
        assert f"embedded PostgreSQL in {home / '.agent-messaging' / 'pgdata'}" in out
        assert (home / ".agent-messaging" / "pgdata" / "PG_VERSION").exists()
        assert not (home / ".agent-messaging" / "pgdata" / "postmaster.pid").exists()  # stopped again
        assert "found from earlier demo runs" in check(demo(home, None))
    finally:
        shutil.rmtree(home, ignore_errors=True)
