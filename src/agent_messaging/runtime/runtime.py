"""``AgentMessaging``: the runtime object users open with ``async with``.

It owns the root task group and, inside it, everything else: the database
(embedded or DSN), migrations, and the services added by later layers. Its
lifecycle is an explicit state machine; entering twice or using it closed
raises ``LifecycleError``.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence
from enum import StrEnum
from typing import Any, Generic, TypeVar

import anyio
import structlog
from pydantic import TypeAdapter

from .._validation import check_id, check_metadata, check_name
from ..config import Config
from ..errors import LifecycleError
from ..models import Agent, Organization
from ..persistence.database import Database
from ..persistence.embedded import EmbeddedServer, start_embedded, stop_embedded
from ..persistence.migrations import apply_migrations
from ..persistence.repositories import AgentRepository, OrganizationRepository

__all__ = ["AgentMessaging", "RuntimeState"]

T = TypeVar("T")
log = structlog.get_logger("agent_messaging.runtime")


class RuntimeState(StrEnum):
    """Lifecycle of an ``AgentMessaging`` instance."""

    NEW = "new"
    OPENING = "opening"
    OPEN = "open"
    CLOSING = "closing"
    CLOSED = "closed"


class AgentMessaging(anyio.AsyncContextManagerMixin, Generic[T]):
    """The agent-messaging runtime.

    ``T`` is the message type (a pydantic model, or any type pydantic can
    validate); give it as ``AgentMessaging[MyMessage](config)`` or with
    ``message_type=``. Without it, payloads are any JSON-serializable values.

    Usage::

        async with AgentMessaging[Note](Config()) as am:
            await am.register_organization("acme", "Acme")
    """

    def __init__(self, config: Config | None = None, *, message_type: Any = None) -> None:
        self.config = config if config is not None else Config()
        self._message_type = message_type
        self._state = RuntimeState.NEW
        self._db: Database | None = None
        self._embedded: EmbeddedServer | None = None
        self._organizations: OrganizationRepository | None = None
        self._agents: AgentRepository | None = None

    # ----------------------------------------------------------------- types

    @property
    def message_type(self) -> Any:
        """The message type ``T`` (``Any`` when none was given)."""
        if self._message_type is None:
            orig = getattr(self, "__orig_class__", None)
            args = getattr(orig, "__args__", ())
            self._message_type = args[0] if args else Any
        return self._message_type

    @property
    def state(self) -> RuntimeState:
        """Where the runtime is in its lifecycle."""
        return self._state

    @property
    def database(self) -> Database:
        """The open database (``LifecycleError`` when the runtime is not open)."""
        self._check_open()
        assert self._db is not None
        return self._db

    def _adapter(self) -> TypeAdapter[Any]:
        return TypeAdapter(self.message_type)

    # -------------------------------------------------------------- lifecycle

    def _check_open(self) -> None:
        if self._state is not RuntimeState.OPEN:
            raise LifecycleError(f"the AgentMessaging runtime is {self._state.value}; use it inside 'async with'")

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[AgentMessaging[T]]:
        if self._state is not RuntimeState.NEW:
            raise LifecycleError(f"an AgentMessaging runtime can be opened only once (it is {self._state.value})")
        self._state = RuntimeState.OPENING
        try:
            async with contextlib.AsyncExitStack() as stack:
                await self._open_database(stack)
                async with anyio.create_task_group() as tg:
                    self._task_group = tg
                    self._state = RuntimeState.OPEN
                    log.info("runtime.open", database=self.database.redacted_dsn)
                    try:
                        yield self
                    finally:
                        self._state = RuntimeState.CLOSING
                        tg.cancel_scope.cancel()
        finally:
            self._state = RuntimeState.CLOSED
            log.info("runtime.closed")

    async def _open_database(self, stack: contextlib.AsyncExitStack) -> None:
        dsn = self.config.dsn_value()
        if dsn is None:
            self._embedded = await start_embedded(self.config.embedded_data_dir)
            stack.push_async_callback(stop_embedded, self._embedded)
            dsn = self._embedded.dsn
        db = Database(dsn, pool_size=self.config.pool_size, connect_timeout=self.config.connect_timeout)
        await db.open()
        stack.push_async_callback(db.aclose)
        if self.config.apply_migrations:
            applied = await apply_migrations(db)
            if applied:
                log.info("migrations.applied", versions=[m.version for m in applied])
        self._db = db
        self._organizations = OrganizationRepository(db)
        self._agents = AgentRepository(db)

    # ----------------------------------------------------- organizations/agents

    async def register_organization(
        self, external_id: str, name: str, metadata: dict[str, Any] | None = None
    ) -> Organization:
        """Register an organization; ``AlreadyExists`` if the external id is taken."""
        self._check_open()
        assert self._organizations is not None
        return await self._organizations.create(
            check_id(external_id, "organization external_id"), check_name(name), check_metadata(metadata)
        )

    async def get_organization(self, external_id: str) -> Organization:
        """The organization with this external id (``OrganizationNotFound`` otherwise)."""
        self._check_open()
        assert self._organizations is not None
        return await self._organizations.get(check_id(external_id, "organization external_id"))

    async def register_agent(
        self, external_id: str, organization_external_id: str, name: str, metadata: dict[str, Any] | None = None
    ) -> Agent:
        """Register an agent in an organization; ``AlreadyExists`` if a live agent has the external id."""
        self._check_open()
        assert self._agents is not None
        check_id(external_id, "agent external_id")
        organization = await self.get_organization(organization_external_id)
        return await self._agents.create(external_id, organization, check_name(name), check_metadata(metadata))

    async def get_agent(self, external_id: str) -> Agent:
        """The live agent with this external id (``AgentNotFound`` otherwise)."""
        self._check_open()
        assert self._agents is not None
        return await self._agents.get(check_id(external_id, "agent external_id"))

    async def list_agents(self, organization_external_id: str) -> list[Agent]:
        """The organization's live agents (``OrganizationNotFound`` for an unknown organization)."""
        organization = await self.get_organization(organization_external_id)
        assert self._agents is not None
        return await self._agents.list(organization)

    async def deregister_agent(self, external_id: str) -> Agent:
        """Deregister an agent: it can no longer send or receive; its history stays queryable."""
        self._check_open()
        assert self._agents is not None
        return await self._agents.deregister(check_id(external_id, "agent external_id"))

    async def _resolve(self, external_ids: Sequence[str]) -> dict[str, Agent]:
        assert self._agents is not None
        return await self._agents.get_many(list(external_ids))
