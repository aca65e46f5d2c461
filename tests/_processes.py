"""Child processes for the tests: ``agent-messaging run`` children, servers and plain scripts on the test's database.

:class:`Child` collects a child's output lines in threads, so a test can wait
for a line with a timeout; the ``spawn`` fixture (``tests/conftest.py``) starts
children with the test's DSN and kills whatever is still running at the end of
the test.
"""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parent.parent
#: Bound on anything one step of a test waits for.
STEP = 60


def child_env(dsn: str) -> dict[str, str]:
    """The environment of a child process: the test's database, the source tree first on the path."""
    env = {**os.environ, "AGENT_MESSAGING_DSN": dsn, "PYTHONPATH": str(ROOT / "src")}
    env.pop("AGENT_MESSAGING_LOG_LEVEL", None)
    return env


class Child:
    """A child process whose output lines are collected by threads (so reads can time out)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        self._grew = threading.Condition()
        self.threads = [threading.Thread(target=self._pump, args=(s,), daemon=True) for s in self._streams()]
        for thread in self.threads:
            thread.start()

    def _streams(self) -> list[Any]:
        return [self.proc.stdout, self.proc.stderr]

    def _pump(self, stream: Any) -> None:
        for line in stream:
            with self._grew:
                self.output.append(line)
                self._grew.notify_all()
            self.lines.put(line.rstrip("\n"))

    def count(self, text: str) -> int:
        """How many output lines so far contain ``text``."""
        return sum(text in line for line in list(self.output))

    def wait_for_count(self, text: str, count: int, timeout: float = STEP) -> None:
        """Block until ``count`` output lines contain ``text`` (run it in a thread)."""
        with self._grew:
            if not self._grew.wait_for(lambda: self.count(text) >= count, timeout=timeout):
                output = "".join(self.output)[-4000:]
                raise AssertionError(f"fewer than {count} lines with {text!r} within {timeout}s; output:\n{output}")

    async def seen(self, text: str, count: int = 1, timeout: float = STEP) -> None:  # noqa: ASYNC109 - a thread waits
        """Wait (without blocking the event loop) until ``count`` output lines contain ``text``."""
        await anyio.to_thread.run_sync(self.wait_for_count, text, count, timeout)

    def wait_for_line(self, prefix: str, timeout: float = STEP) -> str:
        """The first output line (stdout or stderr) starting with ``prefix`` (blocking: run it in a thread)."""
        end = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, end - time.monotonic()))
            except queue.Empty:
                output = "".join(self.output)[-4000:]
                raise AssertionError(f"no line {prefix!r} within {timeout}s; output:\n{output}") from None
            if line.startswith(prefix):
                return line

    async def line(self, prefix: str, timeout: float = STEP) -> str:  # noqa: ASYNC109 - a thread waits
        """:meth:`wait_for_line` without blocking the event loop."""
        return await anyio.to_thread.run_sync(self.wait_for_line, prefix, timeout)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=30)
        for thread in self.threads:
            thread.join(timeout=10)
        for stream in self._streams():
            if stream is not None:
                stream.close()
