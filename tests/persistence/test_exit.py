"""A process that exits right after closing its database exits cleanly.

psqlpy's threads may take the GIL a few milliseconds after a query returned; if
the interpreter is finalizing by then, CPython aborts the process (exit -6,
"Fatal Python error: PyGILState_Release"). Without the bridge's exit quiet
period a script like the one below aborted in about one run in ten; the test
runs it 24 times, four at a time, and expects every run to exit 0.
"""

from __future__ import annotations

import os
import sys

import anyio
import pytest

from tests.conftest import repo_root

pytestmark = pytest.mark.anyio

RUNS = 24
AT_ONCE = 4  # more at once slows every run's way to exit, and the race with psqlpy's threads gets rare

SCRIPT = """
import sys
import anyio
from agent_messaging.persistence.database import Database

async def main(dsn):
    db = Database(dsn, pool_size=4)
    await db.open()
    async with anyio.create_task_group() as tg:
        for _ in range(40):
            tg.start_soon(db.fetch, "SELECT 1")
    await db.aclose()

anyio.run(main, sys.argv[1], backend=sys.argv[2])
"""


async def test_processes_exit_cleanly_right_after_closing(dsn: str, anyio_backend: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(repo_root() / "src")}
    results: list[tuple[int, str]] = []
    limiter = anyio.CapacityLimiter(AT_ONCE)

    async def run_once() -> None:
        async with limiter:
            done = await anyio.run_process([sys.executable, "-c", SCRIPT, dsn, anyio_backend], env=env, check=False)
        results.append((done.returncode, done.stderr.decode(errors="replace")))

    with anyio.fail_after(100):
        async with anyio.create_task_group() as tg:
            for _ in range(RUNS):
                tg.start_soon(run_once)

    failures = [(code, err) for code, err in results if code != 0 or "Fatal Python error" in err]
    assert not failures, failures[0][1]
