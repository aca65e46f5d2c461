"""One-way messaging benchmark: run ``python benchmarks/one_way.py`` (prints figures for asyncio and trio).

(a) 1 sender -> 1 hosted recipient, sequential sends: msgs/s, send latency p50/p99
(b) 100 concurrent senders -> 100 hosted recipients: messages handled per second end to end
(c) a raw psqlpy multi-row insert of the same rows, and our (b) throughput as a ratio of it
(d) RSS with 10,000 hosted idle agents

Sizes can be scaled down with ``--scale 0.1`` (the test suite runs it that way).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bulk_agents, fresh_database, percentile, rss_mb, runtime, server_dsn

from agent_messaging._app import internals


def countdown(n: int) -> tuple[Callable[[Any, Any], Awaitable[None]], anyio.Event]:
    """A handler, and an event set once it has handled ``n`` messages."""
    done = anyio.Event()
    handled = 0

    async def handler(message: Any, ctx: Any) -> None:
        nonlocal handled
        handled += 1
        if handled == n:
            done.set()

    return handler, done


async def bench_sequential(dsn: str, n: int) -> dict[str, float]:
    async with runtime(dsn) as am:
        await am.register_organization("bench", "Bench")
        await am.register_agent("s", "bench", "S")
        await am.register_agent("r", "bench", "R")
        handler, done = countdown(n)
        am.register_handler("r")(handler)
        latencies = []
        start = time.perf_counter()
        for i in range(n):
            t = time.perf_counter()
            await am.one_way.send("s", "r", {"i": i})
            latencies.append(time.perf_counter() - t)
        elapsed = time.perf_counter() - start
        with anyio.fail_after(60):
            await done.wait()
    return {
        "msgs_per_s": n / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
    }


async def bench_concurrent(dsn: str, senders: int, total: int) -> dict[str, float]:
    per_sender = total // senders
    total = per_sender * senders
    async with runtime(dsn) as am:
        await am.register_organization("bench", "Bench")
        names = [f"s{i}" for i in range(senders)] + [f"r{i}" for i in range(senders)]
        await bulk_agents(am, "bench", names)
        handler, done = countdown(total)
        am.register_handler(*[f"r{i}" for i in range(senders)])(handler)
        await anyio.sleep(0.5)  # let the actors start

        async def sender(i: int) -> None:
            for k in range(per_sender):
                await am.one_way.send(f"s{i}", f"r{(i + k) % senders}", {"i": k})

        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for i in range(senders):
                tg.start_soon(sender, i)
        sent = time.perf_counter() - start
        with anyio.fail_after(120):
            await done.wait()
        elapsed = time.perf_counter() - start
        stats = internals(am).services.writer.statistics()
    return {
        "handled_per_s": total / elapsed,
        "sent_per_s": total / sent,
        "transactions": stats.transactions,
        "rows_per_tx": stats.rows / max(stats.transactions, 1),
    }


async def bench_raw(dsn: str, total: int, batch: int) -> dict[str, float]:
    """The same rows through a plain psqlpy multi-row INSERT ... unnest, batches of ``batch``."""
    async with runtime(dsn) as am:
        await am.register_organization("bench", "Bench")
        await am.register_agent("s", "bench", "S")
        await am.register_agent("r", "bench", "R")
        s, r = await am.get_agent("s"), await am.get_agent("r")
        start = time.perf_counter()
        for offset in range(0, total, batch):
            size = min(batch, total - offset)
            await internals(am).database.execute(
                "INSERT INTO messages (id, organization_id, kind, sender_id, recipient_id, payload) "
                "SELECT i, $2, 'one_way', $3, $4, p::jsonb FROM unnest($1::uuid[], $5::text[]) AS u(i, p)",
                [[uuid.uuid4() for _ in range(size)], s.organization_id, s.id, r.id, ['{"i":1}'] * size],
            )
        elapsed = time.perf_counter() - start
    return {"rows_per_s": total / elapsed}


async def bench_idle(dsn: str, agents: int) -> dict[str, float]:
    async with runtime(dsn, poll_interval=30.0) as am:
        await am.register_organization("bench", "Bench")
        names = [f"idle{i}" for i in range(agents)]
        await bulk_agents(am, "bench", names)
        before = rss_mb()

        async def handler(message: Any, ctx: Any) -> None:
            return None

        am.register_handler(*names)(handler)
        with anyio.fail_after(300):
            # hosting runs in the runtime's own tasks; no event to wait on
            while len(internals(am).host.hosted) < agents:  # noqa: ASYNC110
                await anyio.sleep(0.1)
        await anyio.sleep(1.0)
        after = rss_mb()
    return {"rss_mb": after, "rss_delta_mb": after - before, "kb_per_agent": (after - before) * 1024 / agents}


async def main(backend: str, server: str, scale: float) -> dict[str, Any]:
    n_seq = max(100, int(5000 * scale))
    n_total = max(1000, int(50_000 * scale))
    results: dict[str, Any] = {"backend": backend}
    results["a_sequential"] = await bench_sequential(await fresh_database(server, f"bench_a_{backend}"), n_seq)
    results["b_concurrent"] = await bench_concurrent(await fresh_database(server, f"bench_b_{backend}"), 100, n_total)
    results["c_raw"] = await bench_raw(await fresh_database(server, f"bench_c_{backend}"), n_total, 1000)
    results["c_ratio"] = results["b_concurrent"]["handled_per_s"] / results["c_raw"]["rows_per_s"]
    # (d) in a fresh process, so that what (a)-(c) left behind does not count
    done = await anyio.run_process(
        [sys.executable, __file__, "--part", "idle", "--backend", backend, "--server", server, "--scale", str(scale)],
        check=True,
    )
    results["d_idle"] = json.loads(done.stdout.decode().strip().splitlines()[-1])
    return results


async def idle_only(backend: str, server: str, scale: float) -> dict[str, Any]:
    n_idle = max(100, int(10_000 * scale))
    return await bench_idle(await fresh_database(server, f"bench_d_{backend}"), n_idle)


def report(r: dict[str, Any]) -> None:
    a, b, c, d = r["a_sequential"], r["b_concurrent"], r["c_raw"], r["d_idle"]
    print(f"[{r['backend']}]")
    print(
        f"  (a) 1->1 sequential: {a['msgs_per_s']:.0f} msgs/s, send p50 {a['p50_ms']:.2f} ms, p99 {a['p99_ms']:.2f} ms"
    )
    print(
        f"  (b) 100 senders -> 100 hosted: {b['handled_per_s']:.0f} handled/s end to end "
        f"({b['sent_per_s']:.0f} sent/s, {b['rows_per_tx']:.1f} rows per transaction)"
    )
    print(f"  (c) raw psqlpy unnest insert: {c['rows_per_s']:.0f} rows/s; ours = {r['c_ratio']:.2f} x raw")
    print(
        f"  (d) 10k idle hosted agents (fresh process): RSS {d['rss_mb']:.0f} MB "
        f"(+{d['rss_delta_mb']:.0f} MB, {d['kb_per_agent']:.1f} KB/agent)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0)
    parser.add_argument("--backend", choices=["asyncio", "trio", "both"], default="both")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--part", choices=["all", "idle"], default="all", help=argparse.SUPPRESS)
    parser.add_argument("--server", help=argparse.SUPPRESS)
    args = parser.parse_args()
    backends = ["asyncio", "trio"] if args.backend == "both" else [args.backend]
    if args.part == "idle":
        print(json.dumps(anyio.run(idle_only, backends[0], args.server, args.scale, backend=backends[0])))
        sys.exit(0)
    with server_dsn() as server:
        for backend in backends:
            result = anyio.run(main, backend, server, args.scale, backend=backend)
            print(json.dumps(result)) if args.json else report(result)
