"""Organizations and agents: registration and look-ups (straight to the pool; not on a hot path)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from ..errors import AgentNotFound, AlreadyExists, OrganizationNotFound
from ..models import Agent, AgentStatus, Organization
from .database import Database, Row
from .writer import to_json

__all__ = ["AgentRepository", "OrganizationRepository", "new_id"]


def new_id() -> uuid.UUID:
    """A new random id (ids are made client-side so that retried writes stay idempotent)."""
    return uuid.uuid4()


def _json(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        loaded: dict[str, Any] = json.loads(value)
        return loaded
    return dict(value or {})


def organization_from_row(row: Row) -> Organization:
    """Build an ``Organization`` from a row."""
    return Organization(
        id=row["id"],
        external_id=row["external_id"],
        name=row["name"],
        metadata=_json(row["metadata"]),
        created_at=row["created_at"],
    )


_AGENT_COLUMNS = """a.id, a.external_id, a.organization_id, o.external_id AS organization_external_id,
    a.name, a.metadata, a.status, a.created_at"""


def agent_from_row(row: Row) -> Agent:
    """Build an ``Agent`` from a row selected with the agent columns."""
    return Agent(
        id=row["id"],
        external_id=row["external_id"],
        organization_id=row["organization_id"],
        organization_external_id=row["organization_external_id"],
        name=row["name"],
        metadata=_json(row["metadata"]),
        status=AgentStatus(row["status"]),
        created_at=row["created_at"],
    )


class OrganizationRepository:
    """Reads and writes the organizations table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, external_id: str, name: str, metadata: dict[str, Any]) -> Organization:
        """Insert a new organization; ``AlreadyExists`` if the external id is taken."""
        # metadata goes as JSON text cast in SQL: psqlpy maps a dict's integers to int32 (larger ones overflow);
        # ON CONFLICT also covers two processes creating the same organization at once
        row = await self.db.fetch_row(
            "INSERT INTO organizations (id, external_id, name, metadata) VALUES ($1, $2, $3, $4::text::jsonb) "
            "ON CONFLICT (external_id) DO NOTHING RETURNING id, external_id, name, metadata, created_at",
            [new_id(), external_id, name, to_json(metadata)],
        )
        if row is None:
            raise AlreadyExists("organization", external_id)
        return organization_from_row(row)

    async def get(self, external_id: str) -> Organization:
        """The organization with this external id, or ``OrganizationNotFound``."""
        row = await self.db.fetch_row(
            "SELECT id, external_id, name, metadata, created_at FROM organizations WHERE external_id = $1",
            [external_id],
        )
        if row is None:
            raise OrganizationNotFound(external_id)
        return organization_from_row(row)


class AgentRepository:
    """Reads and writes the agents table."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, external_id: str, organization: Organization, name: str, metadata: dict[str, Any]) -> Agent:
        """Insert a live agent; ``AlreadyExists`` if a live agent has the external id."""
        row = await self.db.fetch_row(
            "INSERT INTO agents (id, organization_id, external_id, name, metadata) "
            "VALUES ($1, $2, $3, $4, $5::text::jsonb) "
            "ON CONFLICT (external_id) WHERE deregistered_at IS NULL DO NOTHING "
            "RETURNING id, external_id, organization_id, $6::text AS organization_external_id, "
            "name, metadata, status, created_at",
            [new_id(), organization.id, external_id, name, to_json(metadata), organization.external_id],
        )
        if row is None:
            raise AlreadyExists("agent", external_id)
        return agent_from_row(row)

    async def get(self, external_id: str) -> Agent:
        """The live agent with this external id, or ``AgentNotFound``."""
        row = await self.db.fetch_row(
            f"SELECT {_AGENT_COLUMNS} FROM agents a JOIN organizations o ON o.id = a.organization_id "
            "WHERE a.external_id = $1 AND a.deregistered_at IS NULL",
            [external_id],
        )
        if row is None:
            raise AgentNotFound(external_id)
        return agent_from_row(row)

    async def get_many(self, external_ids: list[str]) -> dict[str, Agent]:
        """The live agents among ``external_ids``, by external id (missing ones are absent)."""
        rows = await self.db.fetch(
            f"SELECT {_AGENT_COLUMNS} FROM agents a JOIN organizations o ON o.id = a.organization_id "
            "WHERE a.external_id = ANY($1::text[]) AND a.deregistered_at IS NULL",
            [external_ids],
        )
        return {row["external_id"]: agent_from_row(row) for row in rows}

    async def by_ids(self, ids: list[uuid.UUID]) -> dict[uuid.UUID, Agent]:
        """Agents (also deregistered ones) by internal id."""
        rows = await self.db.fetch(
            f"SELECT {_AGENT_COLUMNS} FROM agents a JOIN organizations o ON o.id = a.organization_id "
            "WHERE a.id = ANY($1::uuid[])",
            [ids],
        )
        return {row["id"]: agent_from_row(row) for row in rows}

    async def list(self, organization: Organization) -> list[Agent]:
        """The organization's live agents, oldest first."""
        rows = await self.db.fetch(
            f"SELECT {_AGENT_COLUMNS} FROM agents a JOIN organizations o ON o.id = a.organization_id "
            "WHERE a.organization_id = $1 AND a.deregistered_at IS NULL ORDER BY a.created_at, a.external_id",
            [organization.id],
        )
        return [agent_from_row(row) for row in rows]

    async def deregister(self, external_id: str) -> Agent:
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
