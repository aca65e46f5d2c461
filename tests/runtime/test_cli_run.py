"""``agent-messaging run`` as a real subprocess on the test database: start line, SIGTERM drain, SIGKILL under load."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import admin, repo_root

ROOT = repo_root()
APP = "tests.runtime._run_app:am"
BACKENDS = ["asyncio", "trio"]


class Runner:
    """A subprocess whose stdout lines are collected by a thread (so reads can time out)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(args, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        self.threads = [threading.Thread(target=fn, daemon=True) for fn in (self._pump, self._pump_err)]
        for thread in self.threads:
            thread.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def _pump_err(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def line(self, timeout: float = 60) -> str:
        try:
            return self.lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError(f"no output within {timeout}s; stderr:\n{''.join(self.stderr)[-3000:]}") from None

    def wait(self, timeout: float = 60) -> int:
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for thread in self.threads:
            thread.join(timeout=10)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def spawn(dsn: str, tmp_path: Path) -> Iterator[Callable[..., Runner]]:
    """Start processes with the test's DSN; every one still running at the end is killed."""
    started: list[Runner] = []
    env = {
        **os.environ,
        "AGENT_MESSAGING_DSN": dsn,
        "PYTHONPATH": str(ROOT / "src"),
        "AM_HANDLED_FILE": str(tmp_path / "handled"),
    }
    env.pop("AGENT_MESSAGING_LOG_LEVEL", None)

    def start(*args: str, **extra: str) -> Runner:
        runner = Runner([sys.executable, *args], {**env, **extra})
        started.append(runner)
        return runner

    yield start
    for runner in started:
        runner.stop()


def run_app(spawn: Callable[..., Runner], backend: str, *extra: str, **env: str) -> Runner:
    return spawn("-m", "agent_messaging", "run", APP, "--backend", backend, "--log-level", "warning", *extra, **env)


def ids(path: Path) -> list[str]:
    return path.read_text().split() if path.exists() else []


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def sender(spawn: Callable[..., Runner], dsn: str, workdir: Path, count: int | None = None) -> Runner:
    args = [str(ROOT / "tests" / "runtime" / "_run_sender.py"), dsn, str(workdir)]
    proc = spawn(*args, *([str(count)] if count is not None else []))
    wait_until(lambda: (workdir / "ready").exists() or proc.proc.poll() is not None, 60, "the sender to be ready")
    assert proc.proc.poll() is None, "".join(proc.stderr)
    return proc


def start_line(runner: Runner) -> str:
    line = runner.line()
    assert line.startswith(f"agent-messaging run {APP}:"), line
    return line


@pytest.mark.parametrize("backend", BACKENDS)
def test_start_line_and_sigterm_drains(spawn: Callable[..., Runner], dsn: str, tmp_path: Path, backend: str) -> None:
    # 30 messages wait for the worker before the runner starts: they are recovered work
    load = sender(spawn, dsn, tmp_path, count=30)
    assert load.wait() == 0, "".join(load.stderr)
    acked = ids(tmp_path / "acked")
    assert len(acked) == 30

    runner = run_app(spawn, backend, "--grace", "10", AM_HANDLER_DELAY="0.1")
    line = start_line(runner)
    assert "hosting 1 agent(s): worker; meeting turns: p1, p2;" in line, line
    assert "recovered 30 unread message(s), 0 pending call(s), 0 active meeting(s)" in line, line
    time.sleep(0.5)  # some handled, some not yet
    runner.proc.send_signal(signal.SIGTERM)
    assert runner.wait(30) == 0, "".join(runner.stderr)

    handled = set(ids(tmp_path / "handled"))
    assert handled, "the handler ran before the signal"
    rows = admin(dsn, "SELECT id::text AS id, read_at IS NULL AS unread, handled_at IS NOT NULL AS done FROM messages")
    state = {r["id"]: r for r in rows}
    for message_id in acked:  # nothing lost: handled, or still unread for the next start
        assert message_id in handled or state[message_id]["unread"], message_id
    for message_id in handled:  # a handler that ran had its result committed before the exit
        assert state[message_id]["done"], message_id

    # the next start handles the rest
    runner = run_app(spawn, backend)
    assert f"recovered {len(set(acked) - handled)} unread message(s)" in start_line(runner)
    wait_until(lambda: set(acked) <= set(ids(tmp_path / "handled")), 60, "every message to be handled")
    runner.proc.send_signal(signal.SIGINT)
    assert runner.wait(30) == 0


def test_bad_target_is_one_line_error(spawn: Callable[..., Runner]) -> None:
    for target, text in [
        ("no_colon", "expected MODULE:ATTR"),
        ("no_such_module_xyz:am", "cannot import 'no_such_module_xyz'"),
        ("tests.runtime._run_app:nothing", "has no attribute 'nothing'"),
        ("tests.runtime._run_app:ORG", "is not an AgentMessaging instance"),
    ]:
        runner = spawn("-m", "agent_messaging", "run", target)
        assert runner.wait() == 2
        err = "".join(runner.stderr).strip()
        assert err.startswith("error: "), err
        assert text in err, err
        assert "\n" not in err, err


def test_unreachable_database_exits_non_zero(spawn: Callable[..., Runner]) -> None:
    runner = spawn(
        "-m",
        "agent_messaging",
        "run",
        APP,
        "--log-level",
        "critical",
        AGENT_MESSAGING_DSN="postgresql://u:s3cret@127.0.0.1:1/x",
        AGENT_MESSAGING_CONNECT_TIMEOUT="1",
    )
    assert runner.wait() == 1
    err = "".join(runner.stderr).strip()
    assert err.startswith("error: cannot open the runtime: database unavailable at 127.0.0.1:1"), err
    assert "\n" not in err, err
    assert "s3cret" not in err
    assert "Traceback" not in err


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_sigkill_under_load(spawn: Callable[..., Runner], dsn: str, tmp_path: Path, backend: str) -> None:
    load = sender(spawn, dsn, tmp_path)  # before the meeting exists (it starts in the runner's setup)
    first = run_app(spawn, backend, AM_MEETING="1")
    start_line(first)
    wait_until(lambda: len(ids(tmp_path / "handled")) >= 100, 60, "load to be handled")

    def meeting() -> tuple[str, int]:
        [row] = admin(dsn, "SELECT id::text AS id, last_seq FROM meetings WHERE status <> 'ended'")
        return row["id"], int(row["last_seq"])

    meeting_id, _ = meeting()
    first.proc.send_signal(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    _, seq_at_kill = meeting()
    time.sleep(1.0)  # the sender keeps sending and calling while nobody hosts the worker

    second = run_app(spawn, backend, AM_MEETING="1")
    line = start_line(second)
    assert "1 active meeting(s)" in line, line
    time.sleep(1.5)
    (tmp_path / "stop").touch()
    assert load.wait(60) == 0, "".join(load.stderr)

    acked = ids(tmp_path / "acked")
    assert len(acked) > 100
    wait_until(lambda: set(acked) <= set(ids(tmp_path / "handled")), 60, "every acknowledged message to be handled")
    # every call was answered: its reply is recorded (the caller got it, or it waits in its unread)
    unanswered = admin(
        dsn,
        "SELECT count(*) AS n FROM messages r WHERE r.kind = 'request' "
        "AND NOT EXISTS (SELECT 1 FROM messages p WHERE p.in_reply_to = r.id)",
    )
    assert unanswered[0]["n"] == 0
    answered, timed_out = map(int, (tmp_path / "calls").read_text().split())
    assert answered > 0
    if timed_out:  # a late reply lands in the caller's unread
        late = admin(
            dsn,
            "SELECT count(*) AS n FROM messages m JOIN agents a ON a.id = m.recipient_id "
            "WHERE a.external_id = 'client' AND m.kind = 'reply' AND m.read_at IS NULL",
        )
        assert late[0]["n"] >= timed_out
    # the meeting resumed in the new runner: same meeting, history moving on
    wait_until(lambda: meeting()[1] > seq_at_kill + 3, 30, "the meeting to resume")
    assert meeting()[0] == meeting_id
    second.proc.send_signal(signal.SIGTERM)
    assert second.wait(30) == 0, "".join(second.stderr)
