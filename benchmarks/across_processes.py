"""Cross-process benchmark: run ``python benchmarks/across_processes.py`` (asyncio and trio in one run).

Every figure involves an ``agent-messaging run`` child process (``benchmarks/_across_app.py``) on the
same database as this process:

(a) call round trip from this (client) process to an agent hosted by a ``run`` child: p50, p99
    (target p50 <= 3 ms)
(b) meeting hand-off when the speaker is in another process than the runner: from the moment the
    remote participant's turn handler returned to the moment the next speaker (here, in the runner)
    holds the floor: p50 (target <= 5 ms)
(c) 1 meeting x 50 ``on_turn`` agents hosted across 2 ``run`` processes, run by this process: turns/s
    (target >= 500)

Sizes scale with ``--scale``. With ``AGENT_MESSAGING_DSN`` set it uses that server, else an embedded
one in a temporary directory. The children run on the same backend as this process. ``--no-sync-commit``
runs the same on databases with ``synchronous_commit = off`` (commits do not wait for the disk): not a
setting to deploy with, but it shows how much of each figure is the disk's commit latency.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bulk_agents, fresh_database, percentile, runtime, server_dsn

from agent_messaging.persistence.database import Database

ROOT = Path(__file__).resolve().parent.parent
APP = "_across_app:am"


@contextlib.contextmanager
def children(dsn: str, backend: str, *hosting: dict[str, str]) -> Iterator[list[subprocess.Popen[str]]]:
    """``agent-messaging run`` children, one per environment in ``hosting``; each serving once this returns."""
    env = {**os.environ, "AGENT_MESSAGING_DSN": dsn, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT / 'benchmarks'}"}
    env.pop("AGENT_MESSAGING_LOG_LEVEL", None)
    procs = []
    try:
        for extra in hosting:
            args = [sys.executable, "-m", "agent_messaging", "run", APP, "--backend", backend, "--log-level", "error"]
            proc = subprocess.Popen(
                args, cwd=ROOT / "benchmarks", env={**env, **extra}, stdout=subprocess.PIPE, text=True
            )
            procs.append(proc)
            assert proc.stdout is not None
            line = proc.stdout.readline()  # the start line: serving
            if not line.startswith("agent-messaging run"):
                raise RuntimeError(f"the run child did not start: {line!r}")
        yield procs
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


@contextlib.asynccontextmanager
async def client(dsn: str, agents: list[str]) -> AsyncIterator[Any]:
    async with runtime(dsn, pool_size=10, poll_interval=5.0) as am:
        await am.register_organization("bench", "Bench")
        await bulk_agents(am, "bench", agents)
        yield am


async def bench_calls(dsn: str, backend: str, n: int) -> dict[str, float]:
    async with client(dsn, ["caller", "echo"]) as am:
        with children(dsn, backend, {"AM_BENCH_HOST": "echo"}):
            for i in range(30):  # warm up: the pair's session, the child's caches
                await am.conversation.send_and_wait("caller", "echo", {"i": i}, timeout=30)
            latencies = []
            for i in range(n):
                t = time.perf_counter()
                await am.conversation.send_and_wait("caller", "echo", {"i": i}, timeout=30)
                latencies.append(time.perf_counter() - t)
    return {"p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000, "calls": n}


async def bench_handoff(dsn: str, backend: str, rounds: int) -> dict[str, float]:
    async with client(dsn, ["chair", "remote"]) as am:
        with children(dsn, backend, {"AM_BENCH_TURNS": "remote"}):
            meeting = await am.meeting.create_meeting("chair", ["remote"], turn_duration=None)
            turn = await am.meeting.start_meeting("chair", meeting, {"start": True})
            handoffs: list[float] = []
            for i in range(rounds):
                turn = await am.meeting.speak("chair", meeting, {"round": i})
                got = time.time()
                said = [m.message for m in turn.messages if m.agent == "remote"]
                if i >= 5 and said:  # after a warm-up
                    handoffs.append(got - said[-1]["at"])
            await am.meeting.end_meeting("chair", meeting)
    return {"p50_ms": percentile(handoffs, 50) * 1000, "p99_ms": percentile(handoffs, 99) * 1000}


async def bench_big_meeting(dsn: str, backend: str, rounds: int) -> dict[str, float]:
    agents = [f"t{i}" for i in range(50)]
    async with client(dsn, ["host", *agents]) as am:
        halves = [{"AM_BENCH_TURNS": ",".join(agents[:25])}, {"AM_BENCH_TURNS": ",".join(agents[25:])}]
        with children(dsn, backend, *halves):
            await anyio.sleep(0.5)  # both children have claimed their agents' turns
            meeting = await am.meeting.create_meeting("host", agents, turn_duration=None)
            await am.meeting.start_meeting("host", meeting, {"start": True})  # a first round, warm-up
            start = time.perf_counter()
            for i in range(rounds):
                await am.meeting.speak("host", meeting, {"round": i})
            elapsed = time.perf_counter() - start
            await am.meeting.end_meeting("host", meeting)
    turns = rounds * (len(agents) + 1)
    return {"turns_per_s": turns / elapsed, "turns": turns}


async def database(server: str, name: str, sync_commit: bool) -> str:
    """A fresh database; with ``sync_commit=False`` its commits do not wait for the disk."""
    dsn = await fresh_database(server, name)
    if not sync_commit:
        db = Database(server, pool_size=2)
        await db.open()
        try:
            await db.execute(f"ALTER DATABASE {name} SET synchronous_commit = off")
        finally:
            await db.aclose()
    return dsn


async def main(backend: str, server: str, scale: float, sync_commit: bool = True) -> dict[str, Any]:
    results: dict[str, Any] = {"backend": backend, "synchronous_commit": sync_commit}
    tag = uuid.uuid4().hex[:6]
    results["a_calls"] = await bench_calls(
        await database(server, f"bench_xa_{backend}_{tag}", sync_commit), backend, max(100, int(1000 * scale))
    )
    results["b_handoff"] = await bench_handoff(
        await database(server, f"bench_xb_{backend}_{tag}", sync_commit), backend, max(30, int(300 * scale))
    )
    results["c_big_meeting"] = await bench_big_meeting(
        await database(server, f"bench_xc_{backend}_{tag}", sync_commit), backend, max(4, int(40 * scale))
    )
    return results


def report(r: dict[str, Any]) -> None:
    a, b, c = r["a_calls"], r["b_handoff"], r["c_big_meeting"]
    print(f"[{r['backend']}]" + ("" if r["synchronous_commit"] else " (synchronous_commit = off)"))
    print(f"  (a) call to an agent hosted by a run child: p50 {a['p50_ms']:.2f} ms, p99 {a['p99_ms']:.2f} ms")
    print(
        f"  (b) meeting hand-off from a speaker in another process: p50 {b['p50_ms']:.2f} ms, p99 {b['p99_ms']:.2f} ms"
    )
    print(f"  (c) 1 meeting x 50 on_turn agents in 2 run children: {c['turns_per_s']:.0f} turns/s ({c['turns']} turns)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-sync-commit", action="store_true", help="commits do not wait for the disk")
    args = parser.parse_args()
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    with server_dsn() as server:
        all_results = [anyio.run(main, b, server, args.scale, not args.no_sync_commit, backend=b) for b in backends]
    for r in all_results:
        print(json.dumps(r) if args.json else "", end="\n" if args.json else "")
        if not args.json:
            report(r)
