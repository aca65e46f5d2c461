"""The wait-for graph of calls made inside handlers, shared by every runtime (deadlock detection).

A row says: a handler of ``caller_id`` is blocked in a call to ``target_id``. A
new row is added under a transaction-level advisory lock per organization, after
checking that no path leads back from the target to the caller, so two calls
closing a cycle at the same instant in two processes cannot both pass. Rows of a
runtime that died (its presence lock gone) are ignored; a row is deleted when its
call ends.
"""

from __future__ import annotations

import uuid

import psqlpy

from .._rows import as_uuid
from ..database import Database
from .hosts import ALIVE

__all__ = ["add_wait", "remove_wait"]

_LOCK_CLASS = 0x616D_6477  # "amdw": the advisory lock space of the wait-for graph

_PATH_BACK = f"""
WITH RECURSIVE walk(node, path) AS (
    SELECT $1::uuid, ARRAY[$1::uuid]
    UNION ALL
    SELECT h.target_id, walk.path || h.target_id
      FROM walk JOIN call_waits h ON h.caller_id = walk.node
     WHERE NOT h.target_id = ANY(walk.path) AND {ALIVE}
)
SELECT path FROM walk WHERE node = $2 LIMIT 1"""


async def add_wait(
    db: Database,
    request_id: uuid.UUID,
    organization_id: uuid.UUID,
    caller_id: uuid.UUID,
    target_id: uuid.UUID,
    runtime_key: int,
) -> list[uuid.UUID] | None:
    """Record ``caller -> target`` unless it closes a cycle; then return the path ``target -> ... -> caller``."""

    async def check_and_add(tx: psqlpy.Transaction) -> list[uuid.UUID] | None:
        await tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2::text))", [_LOCK_CLASS, str(organization_id)])
        rows = (await tx.execute(_PATH_BACK, [target_id, caller_id])).result()
        if rows:
            return [as_uuid(node) for node in rows[0]["path"]]
        await tx.execute(
            "INSERT INTO call_waits (request_id, organization_id, caller_id, target_id, runtime_key) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (request_id) DO NOTHING",
            [request_id, organization_id, caller_id, target_id, runtime_key],
        )
        return None

    return await db.transaction(check_and_add)


async def remove_wait(db: Database, request_id: uuid.UUID) -> None:
    """The call ended: forget its edge."""
    await db.execute("DELETE FROM call_waits WHERE request_id = $1", [request_id])


async def forget_runtime(db: Database, runtime_key: int) -> None:
    """Forget every edge recorded by the runtime ``runtime_key`` (it fenced itself: none of its calls waits)."""
    await db.execute("DELETE FROM call_waits WHERE runtime_key = $1", [runtime_key])
