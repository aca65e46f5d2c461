"""Conversation benchmark: run ``python benchmarks/conversation.py`` (prints figures for asyncio and trio).

(a) sequential ``send_and_wait`` round trips to a hosted agent that replies at once: p50/p99
(b) 100 concurrent pairs calling in loops: round trips per second
(c) cross-instance ``wait_for_message`` wake-up latency (send in one runtime, woken in another): p50/p99

Sizes can be scaled down with ``--scale 0.1``. With ``AGENT_MESSAGING_DSN`` set it uses that server,
else an embedded one in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bulk_agents, fresh_database, percentile, runtime, server_dsn


async def answer(message: Any, ctx: Any) -> Any:
    """Reply at once."""
    return message


async def bench_sequential(dsn: str, n: int) -> dict[str, float]:
    async with runtime(dsn) as am:
        await am.register_organization("bench", "Bench")
        await bulk_agents(am, "bench", ["caller", "callee"])
        am.register_handler("callee")(answer)
        for i in range(20):  # warm up (hosting, caches, the pair's session)
            await am.conversation.send_and_wait("caller", "callee", {"i": i})
        latencies = []
        for i in range(n):
            t = time.perf_counter()
            await am.conversation.send_and_wait("caller", "callee", {"i": i})
            latencies.append(time.perf_counter() - t)
    return {"p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000}


async def bench_pairs(dsn: str, pairs: int, total: int) -> dict[str, float]:
    per_pair = max(1, total // pairs)
    async with runtime(dsn) as am:
        await am.register_organization("bench", "Bench")
        callers = [f"c{i}" for i in range(pairs)]
        callees = [f"e{i}" for i in range(pairs)]
        await bulk_agents(am, "bench", callers + callees)
        am.register_handler(*callees)(answer)
        for i in range(pairs):  # warm up: every callee hosted, every session open
            await am.conversation.send_and_wait(callers[i], callees[i], 0)

        async def loop(i: int) -> None:
            for k in range(per_pair):
                await am.conversation.send_and_wait(callers[i], callees[i], k)

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(pairs):
                tg.start_soon(loop, i)
        elapsed = time.perf_counter() - start
    return {"round_trips_per_s": pairs * per_pair / elapsed, "round_trips": pairs * per_pair}


async def bench_wakeup(dsn: str, n: int) -> dict[str, float]:
    async with runtime(dsn) as waiting_side, runtime(dsn) as sending_side:
        await waiting_side.register_organization("bench", "Bench")
        await bulk_agents(waiting_side, "bench", ["writer", "reader"])
        await sending_side.get_agent("writer")
        latencies: list[float] = []

        async def wait(woken: anyio.Event, sent_at: list[float]) -> None:
            await waiting_side.conversation.wait_for_message("reader", timeout=10)
            latencies.append(time.perf_counter() - sent_at[0])
            woken.set()

        for i in range(n):
            woken, sent_at = anyio.Event(), [0.0]
            async with anyio.create_task_group() as tg:
                tg.start_soon(wait, woken, sent_at)
                await anyio.sleep(0.005)  # the reader is parked on its signal
                sent_at[0] = time.perf_counter()
                await sending_side.conversation.send("writer", "reader", i)
                await woken.wait()
    return {"p50_ms": percentile(latencies, 50) * 1000, "p99_ms": percentile(latencies, 99) * 1000}


async def main(backend: str, server: str, scale: float) -> dict[str, Any]:
    n_seq = max(100, int(2000 * scale))
    n_pairs_total = max(1000, int(20_000 * scale))
    n_wake = max(50, int(500 * scale))
    results: dict[str, Any] = {"backend": backend}
    results["a_sequential"] = await bench_sequential(await fresh_database(server, f"bench_ca_{backend}"), n_seq)
    results["b_pairs"] = await bench_pairs(await fresh_database(server, f"bench_cb_{backend}"), 100, n_pairs_total)
    results["c_wakeup"] = await bench_wakeup(await fresh_database(server, f"bench_cc_{backend}"), n_wake)
    return results


def report(r: dict[str, Any]) -> None:
    a, b, c = r["a_sequential"], r["b_pairs"], r["c_wakeup"]
    print(f"[{r['backend']}]")
    print(f"  (a) sequential send_and_wait round trip: p50 {a['p50_ms']:.2f} ms, p99 {a['p99_ms']:.2f} ms")
    print(f"  (b) 100 concurrent pairs: {b['round_trips_per_s']:.0f} round trips/s ({b['round_trips']} calls)")
    print(f"  (c) cross-instance wait_for_message wake-up: p50 {c['p50_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    with server_dsn() as server:
        for backend in backends:
            result = anyio.run(main, backend, server, args.scale, backend=backend)
            print(json.dumps(result)) if args.json else report(result)
