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
        self.threads = [threading.Thread(target=self._pump, args=(s,), daemon=True) for s in self._streams()]
        for thread in self.threads:
            thread.start()

    def _streams(self) -> list[Any]:
        return [self.proc.stdout, self.proc.stderr]

    def _pump(self, stream: Any) -> None:
        for line in stream:
            self.output.append(line)
            self.lines.put(line.rstrip("\n"))

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
