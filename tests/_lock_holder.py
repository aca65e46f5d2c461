"""Holds database state for a test, from a process of its own (not a test module).

Usage: ``python _lock_holder.py DSN HOLD_JSON RELEASE_JSON``: runs each ``[sql, params]`` of HOLD on one
connection (``BEGIN`` first keeps a transaction, and its locks, open), prints ``ready``, waits until its stdin
closes, then runs each of RELEASE. A process of its own, so a test on either backend can hold a lock its
runtime must wait behind, or shut the database's door while it keeps a connection of its own.
"""

from __future__ import annotations

import json
import sys

import anyio
import psqlpy


async def main(dsn: str, hold: list[tuple[str, list[object]]], release: list[tuple[str, list[object]]]) -> None:
    conn = await psqlpy.connect(dsn=dsn)
    for sql, params in hold:
        await conn.execute(sql, params)
    print("ready", flush=True)
    await anyio.to_thread.run_sync(sys.stdin.read)
    for sql, params in release:
        await conn.execute(sql, params)
    conn.close()


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]), backend="asyncio")
