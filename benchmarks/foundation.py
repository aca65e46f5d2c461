"""Foundation figures: embedded server cold/warm start, and the trio bridge's cost per query.

Run ``python benchmarks/foundation.py``. It starts the embedded PostgreSQL in a
temporary directory twice (cold: initdb + start; warm: start on existing data),
then times ``SELECT 1`` round trips and a 1,000-row insert through
``Database`` on asyncio (psqlpy in place) and on trio (psqlpy on the bridge's
asyncio thread).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import median, percentile

from agent_messaging.persistence.database import Database
from agent_messaging.persistence.embedded import _start, _stop


def embedded_starts(data_dir: Path) -> tuple[float, float, str]:
    """Cold then warm start of the embedded server in ``data_dir``; returns both times and a DSN of a warm one."""
    t = time.perf_counter()
    handle = _start(data_dir)
    cold = time.perf_counter() - t
    _stop(handle)
    t = time.perf_counter()
    handle = _start(data_dir)
    warm = time.perf_counter() - t
    return cold, warm, handle.dsn


async def per_query(dsn: str, n: int) -> dict[str, float]:
    db = Database(dsn, pool_size=2)
    await db.open()
    try:
        await db.execute("CREATE TABLE IF NOT EXISTS bench_rows (a int, b text)")
        samples = []
        for _ in range(n):
            t = time.perf_counter()
            await db.fetch_val("SELECT 1")
            samples.append(time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(20):
            await db.execute(
                "INSERT INTO bench_rows SELECT * FROM unnest($1::int[], $2::text[])",
                [list(range(1000)), ["x" * 20] * 1000],
            )
        batch = (time.perf_counter() - t) / 20
    finally:
        await db.aclose()
    return {"p50_us": median(samples) * 1e6, "p99_us": percentile(samples, 99) * 1e6, "batch_ms": batch * 1000}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=2000, help="SELECT 1 round trips per backend")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="am-bench-") as tmp:
        cold, warm, dsn = embedded_starts(Path(tmp) / "pgdata")
        print(f"embedded PostgreSQL: cold start {cold:.2f} s (initdb + start), warm start {warm:.2f} s")
        try:
            results = {backend: anyio.run(per_query, dsn, args.n, backend=backend) for backend in ("asyncio", "trio")}
        finally:
            from agent_messaging.persistence.embedded import EmbeddedServer

            _stop(EmbeddedServer((Path(tmp) / "pgdata").resolve(), dsn, True))
    a, t = results["asyncio"], results["trio"]
    for name, r in results.items():
        print(
            f"{name:>7}: SELECT 1 p50 {r['p50_us']:.0f} us, p99 {r['p99_us']:.0f} us; "
            f"1,000-row insert {r['batch_ms']:.2f} ms"
        )
    print(
        f"trio bridge overhead: {t['p50_us'] - a['p50_us']:+.0f} us per query (p50), "
        f"{t['batch_ms'] - a['batch_ms']:+.2f} ms per 1,000-row insert"
    )


if __name__ == "__main__":
    main()
