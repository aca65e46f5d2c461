"""Organizations and agents: registration, look-ups, status and restart counters.

Registration and look-ups go straight to the pool (not a hot path); the
restart counters are bookkeeping written through the group-commit writer.
"""

from __future__ import annotations

import uuid
from typing import Any

from ...errors import AgentNotFound, AlreadyExists, OrganizationNotFound
from ...models import AgentInfo, AgentStatus, Organization
from .._rows import as_uuid, json_dict, to_json
from ..database import Database, Row
from ..writer import NOTIFY_CHANNEL, Statement

__all__ = ["AGENT_RESTARTS", "Agents", "Organizations", "agent_from_row", "new_id", "organization_from_row"]


def new_id() -> uuid.UUID:
    """A new random id (ids are made client-side so that retried writes stay idempotent)."""
    return uuid.uuid4()


def organization_from_row(row: Row) -> Organization:
    """Build an ``Organization`` from a row."""
    return Organization(
        id=as_uuid(row["id"]),
        external_id=row["external_id"],
        name=row["name"],
        metadata=json_dict(row["metadata"]),
        created_at=row["created_at"],
    )


_AGENT_COLUMNS = """a.id, a.external_id, a.organization_id, o.external_id AS organization_external_id,
    a.name, a.metadata::text AS metadata, a.status, a.created_at"""
_AGENT_FROM = "agents a JOIN organizations o ON o.id = a.organization_id"


def agent_from_row(row: Row) -> AgentInfo:
    """Build an ``AgentInfo`` from a row selected with the agent columns."""
    return AgentInfo(
        id=as_uuid(row["id"]),
        external_id=row["external_id"],
        organization_id=as_uuid(row["organization_id"]),
        organization_external_id=row["organization_external_id"],
        name=row["name"],
        metadata=json_dict(row["metadata"]),
        status=AgentStatus(row["status"]),
        created_at=row["created_at"],
    )


#: An agent's restart count (absolute, so a retried batch stays idempotent) and its last error. A batch may hold
#: several of one agent (an UPDATE joined to two rows for one target row takes either): the highest count wins. Two
#: batches on two writer connections may commit in either order: an older count committed late keeps the newer error.
AGENT_RESTARTS = Statement(
    "agent.restarts",
    50,
    "UPDATE agents a SET restarts = greatest(a.restarts, u.restarts), "
    "last_error = CASE WHEN u.restarts >= a.restarts THEN coalesce(u.last_error, a.last_error) ELSE a.last_error END "
    "FROM (SELECT DISTINCT ON (id) id, restarts, last_error "
    "FROM unnest($1::uuid[], $2::int[], $3::text[]) AS v(id, restarts, last_error) ORDER BY id, restarts DESC) u "
    "WHERE a.id = u.id",
    updates="agents",
)


def _differences(
    fields: dict[str, tuple[str, str]], stored_metadata: dict[str, Any], metadata: dict[str, Any]
) -> list[str]:
    """What an existing record has that a repeated registration does not (empty when they match)."""
    found = [f"{field} {stored!r} (asked: {asked!r})" for field, (stored, asked) in fields.items() if stored != asked]
    if stored_metadata != metadata:
        keys = sorted(
            k
            for k in stored_metadata.keys() | metadata.keys()
            if stored_metadata.get(k) != metadata.get(k) or (k in stored_metadata) != (k in metadata)
        )
        found.append("metadata (keys that differ: " + ", ".join(map(repr, keys)) + ")")
    return found


class Organizations:
    """Reads and writes the organizations table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self, external_id: str, name: str, metadata: dict[str, Any], *, exist_ok: bool = False
    ) -> Organization:
        """Insert a new organization; ``AlreadyExists`` if the external id is taken.

        With ``exist_ok`` an existing organization with the same name and metadata is returned instead
        (``AlreadyExists`` naming what differs otherwise).
        """
        while True:
            # ON CONFLICT also covers two processes creating the same organization at once: the loser
            # waits for the winner's commit, inserts nothing, and its next statement sees the winner's row
            row = await self.db.fetch_row(
                "INSERT INTO organizations (id, external_id, name, metadata) VALUES ($1, $2, $3, $4::text::jsonb) "
                "ON CONFLICT (external_id) DO NOTHING "
                "RETURNING id, external_id, name, metadata::text AS metadata, created_at",
                [new_id(), external_id, name, to_json(metadata)],
            )
            if row is not None:
                return organization_from_row(row)
            if not exist_ok:
                raise AlreadyExists("organization", external_id)
            try:
                existing = await self.get(external_id)
            except OrganizationNotFound:  # pragma: no cover - organizations are never deleted
                continue
            differences = _differences({"name": (existing.name, name)}, existing.metadata, metadata)
            if differences:
                raise AlreadyExists("organization", external_id, differences)
            return existing

    async def get(self, external_id: str) -> Organization:
        """The organization with this external id, or ``OrganizationNotFound``."""
        row = await self.db.fetch_row(
            "SELECT id, external_id, name, metadata::text AS metadata, created_at "
            "FROM organizations WHERE external_id = $1",
            [external_id],
        )
        if row is None:
            raise OrganizationNotFound(external_id)
        return organization_from_row(row)


class Agents:
    """Reads and writes the agents table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(
        self,
        external_id: str,
        organization: Organization,
        name: str,
        metadata: dict[str, Any],
        *,
        exist_ok: bool = False,
    ) -> AgentInfo:
        """Insert a live agent; ``AlreadyExists`` if a live agent has the external id.

        With ``exist_ok`` an existing live agent of the same organization, name and metadata is returned
        instead (``AlreadyExists`` naming what differs otherwise).
        """
        while True:
            row = await self.db.fetch_row(
                "INSERT INTO agents (id, organization_id, external_id, name, metadata) "
                "VALUES ($1, $2, $3, $4, $5::text::jsonb) "
                "ON CONFLICT (external_id) WHERE deregistered_at IS NULL DO NOTHING "
                "RETURNING id, external_id, organization_id, $6::text AS organization_external_id, "
                "name, metadata::text AS metadata, status, created_at",
                [new_id(), organization.id, external_id, name, to_json(metadata), organization.external_id],
            )
            if row is not None:
                return agent_from_row(row)
            if not exist_ok:
                raise AlreadyExists("agent", external_id)
            try:
                existing = await self.get(external_id)
            except AgentNotFound:  # deregistered between the two statements: insert again
                continue
            differences = _differences(
                {
                    "organization": (existing.organization_external_id, organization.external_id),
                    "name": (existing.name, name),
                },
                existing.metadata,
                metadata,
            )
            if differences:
                raise AlreadyExists("agent", external_id, differences)
            return existing

    async def get(self, external_id: str) -> AgentInfo:
        """The live agent with this external id, or ``AgentNotFound``."""
        row = await self.db.fetch_row(
            f"SELECT {_AGENT_COLUMNS} FROM {_AGENT_FROM} WHERE a.external_id = $1 AND a.deregistered_at IS NULL",
            [external_id],
        )
        if row is None:
            raise AgentNotFound(external_id)
        return agent_from_row(row)

    async def get_many(self, external_ids: list[str]) -> dict[str, AgentInfo]:
        """The live agents among ``external_ids``, by external id (missing ones are absent)."""
        rows = await self.db.fetch(
            f"SELECT {_AGENT_COLUMNS} FROM {_AGENT_FROM} "
            "WHERE a.external_id = ANY($1::text[]) AND a.deregistered_at IS NULL",
            [external_ids],
        )
        return {row["external_id"]: agent_from_row(row) for row in rows}

    async def by_ids(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, AgentInfo]:
        """Agents (also deregistered ones) by internal id."""
        rows = await self.db.fetch(f"SELECT {_AGENT_COLUMNS} FROM {_AGENT_FROM} WHERE a.id = ANY($1::uuid[])", [ids])
        return {as_uuid(row["id"]): agent_from_row(row) for row in rows}

    async def in_organization(self, organization: Organization) -> list[AgentInfo]:
        """The organization's live agents, oldest first."""
        rows = await self.db.fetch(
            f"SELECT {_AGENT_COLUMNS} FROM {_AGENT_FROM} "
            "WHERE a.organization_id = $1 AND a.deregistered_at IS NULL ORDER BY a.created_at, a.external_id",
            [organization.id],
        )
        return [agent_from_row(row) for row in rows]

    async def deregister(self, external_id: str) -> AgentInfo:
        """Mark the live agent deregistered (its history stays); ``AgentNotFound`` if there is none."""
        agent = await self.get(external_id)
        await self.db.execute(
            "UPDATE agents SET status = 'deregistered', deregistered_at = now() "
            "WHERE id = $1 AND deregistered_at IS NULL",
            [agent.id],
        )
        return agent.model_copy(update={"status": AgentStatus.DEREGISTERED})

    async def set_status(self, agent_id: uuid.UUID, status: AgentStatus) -> None:
        """Record an agent's status (for example ``failed`` past its restart intensity)."""
        await self.db.execute(
            "UPDATE agents SET status = $2 WHERE id = $1 AND deregistered_at IS NULL", [agent_id, status.value]
        )

    async def restart_counts(self, agent_ids: list[uuid.UUID]) -> dict[uuid.UUID, int]:
        """The agents' restart counts as stored (the base a runtime that hosts them counts on from)."""
        if not agent_ids:
            return {}
        rows = await self.db.fetch("SELECT id, restarts FROM agents WHERE id = ANY($1::uuid[])", [agent_ids])
        return {as_uuid(row["id"]): int(row["restarts"]) for row in rows}

    async def failed(self, agent_ids: list[uuid.UUID]) -> set[uuid.UUID]:
        """Those of the agents whose stored status is ``failed``."""
        if not agent_ids:
            return set()
        rows = await self.db.fetch(
            "SELECT id FROM agents WHERE id = ANY($1::uuid[]) AND status = 'failed'", [agent_ids]
        )
        return {as_uuid(row["id"]) for row in rows}

    async def overview(self, organization: str | None) -> list[Row]:
        """Live agents (of one organization if given) with unread and dead-letter counts, restarts and last error.

        ``OrganizationNotFound`` for an unknown organization.
        """
        where, params = "", []
        if organization is not None:
            if await self.db.fetch_val("SELECT 1 FROM organizations WHERE external_id = $1", [organization]) is None:
                raise OrganizationNotFound(organization)
            where, params = " AND o.external_id = $1", [organization]
        return await self.db.fetch(
            "SELECT a.id, a.external_id AS agent, o.external_id AS organization, a.name, a.status, "
            "a.restarts, a.last_error, "
            "(SELECT count(*) FROM messages m WHERE m.recipient_id = a.id AND m.read_at IS NULL "
            " AND m.dead_at IS NULL) AS unread, "
            "(SELECT count(*) FROM dead_letters d WHERE d.agent_id = a.id AND d.retried_at IS NULL) AS dead "
            f"FROM {_AGENT_FROM} WHERE a.deregistered_at IS NULL{where} ORDER BY o.external_id, a.external_id",
            params,
        )

    async def reactivate(self, external_id: str, notify_key_prefix: str, origin: str) -> uuid.UUID | None:
        """Mark a ``failed`` live agent active again and NOTIFY its host (in one statement).

        Returns its id, or None if no live agent with this external id is failed.
        """
        value = await self.db.fetch_val(
            "WITH a AS (UPDATE agents SET status = 'active' WHERE external_id = $1 AND deregistered_at IS NULL "
            "AND status = 'failed' RETURNING id), "
            "n AS (SELECT pg_notify($2, $3 || '|' || $4 || a.id::text) FROM a) "
            "SELECT a.id FROM a, (SELECT count(*) FROM n) AS notified",
            [external_id, NOTIFY_CHANNEL, origin, notify_key_prefix],
        )
        return None if value is None else as_uuid(value)

    async def live_id(self, external_id: str) -> uuid.UUID:
        """The internal id of the live agent with this external id (``AgentNotFound``)."""
        value = await self.db.fetch_val(
            "SELECT id FROM agents WHERE external_id = $1 AND deregistered_at IS NULL", [external_id]
        )
        if value is None:
            raise AgentNotFound(external_id)
        return as_uuid(value)
