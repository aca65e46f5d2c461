"""``AgentMessaging``: the runtime object users open with ``async with``.

It owns the root task group and, inside it, everything else: the database
(embedded or DSN), migrations, and the services added by later layers. Its
lifecycle is an explicit state machine; entering twice or using it closed
raises ``LifecycleError``.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncGenerator, Callable
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio
import structlog

from .._validation import check_id, check_metadata, check_name
from ..config import Config
from ..errors import ConfigurationError, InvalidArgument, LifecycleError
from ..models import Agent, DeadLetter, MeetingEventType, Organization
from ..persistence.database import Database
from ..persistence.embedded import EmbeddedServer, start_embedded, stop_embedded
from ..persistence.migrations import apply_migrations, migration_status
from ..persistence.repositories import AgentRepository, OrganizationRepository
from ..persistence.writer import Writer
from ._services import Codec, Directory, Services, Signals
from .registry import EventHandler, HostSpec, Registry, TurnHandler
from .supervisor import RestartType

if TYPE_CHECKING:
    from ..actors.agent import Agent as AgentClass
    from ..actors.conversation import Conversations
    from ..actors.meeting import Meetings
    from ..actors.one_way import OneWay

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
        self._services: Services[T] | None = None
        self.registry: Registry[T] = Registry()
        self._one_way: OneWay[T] | None = None
        self._conversation: Conversations[T] | None = None
        self._meeting: Meetings[T] | None = None

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

    # -------------------------------------------------------------- lifecycle

    def _check_open(self) -> None:
        if self._state is not RuntimeState.OPEN:
            raise LifecycleError(f"the AgentMessaging runtime is {self._state.value}; use it inside 'async with'")

    async def __aenter__(self) -> AgentMessaging[T]:  # type: ignore[misc]  # anyio marks it @final
        # checked here: the mixin itself would refuse a second entry with a bare RuntimeError
        if self._state is not RuntimeState.NEW:
            raise LifecycleError(f"an AgentMessaging runtime can be opened only once (it is {self._state.value})")
        return await super().__aenter__()

    @contextlib.asynccontextmanager
    async def __asynccontextmanager__(self) -> AsyncGenerator[AgentMessaging[T]]:
        self._state = RuntimeState.OPENING
        try:
            async with contextlib.AsyncExitStack() as stack:
                await self._open_database(stack)
                # An error from the user's block is re-raised as itself after the task groups
                # have closed, not wrapped in an ExceptionGroup.
                body_error: BaseException | None = None
                # the writer's group encloses the actors' group, so it flushes after every actor stopped
                async with anyio.create_task_group() as writer_group:
                    writer = self._make_writer()
                    await writer_group.start(writer.run)
                    try:
                        async with anyio.create_task_group() as tg:
                            await self._start_services(tg, writer)
                            self._state = RuntimeState.OPEN
                            log.info(
                                "runtime.open", database=self.database.redacted_dsn, hosted=sorted(self.registry.hosts)
                            )
                            try:
                                yield self
                            except BaseException as exc:
                                body_error = exc
                            finally:
                                self._state = RuntimeState.CLOSING
                                await self._stop_services(tg)
                    finally:
                        writer.close()
                if body_error is not None:
                    raise body_error
        finally:
            self._state = RuntimeState.CLOSED
            log.info("runtime.closed")

    async def _open_database(self, stack: contextlib.AsyncExitStack) -> None:
        dsn = self.config.dsn_value()
        if dsn is None:
            self._embedded = await start_embedded(self.config.embedded_data_dir)
            stack.push_async_callback(stop_embedded, self._embedded)
            dsn = self._embedded.dsn
        # one connection of pool_size is the presence connection (persistence/presence.py)
        db = Database(dsn, pool_size=self.config.pool_size - 1, connect_timeout=self.config.connect_timeout)
        await db.open()
        stack.push_async_callback(db.aclose)
        if self.config.apply_migrations:
            applied = await apply_migrations(db)
            if applied:
                log.info("migrations.applied", versions=[m.version for m in applied])
        else:
            pending = [f"{s.version:04d}_{s.name}" for s in await migration_status(db) if not s.applied]
            if pending:
                raise ConfigurationError(
                    f"the database schema is not up to date (pending migrations: {', '.join(pending)}); "
                    "run 'agent-messaging db migrate' or set AGENT_MESSAGING_APPLY_MIGRATIONS=true"
                )
        self._db = db
        self._organizations = OrganizationRepository(db)
        self._agents = AgentRepository(db)

    def _make_writer(self) -> Writer:
        assert self._db is not None
        cfg = self.config
        return Writer(
            self._db,
            batch_size=cfg.writer_batch_size,
            linger=cfg.writer_linger,
            connections=cfg.writer_connections,
            timeout=cfg.persistence_timeout,
            notify=cfg.notify,
            origin=uuid.uuid4().hex[:12],  # this runtime's id: its own NOTIFYs are ignored by its listener
        )

    async def _start_services(self, tg: anyio.abc.TaskGroup, writer: Writer) -> None:
        from ..actors.conversation import Conversations
        from ..actors.meeting import Meetings
        from ..actors.one_way import OneWay

        assert self._db is not None
        assert self._agents is not None
        cfg = self.config
        services: Services[T] = Services(
            config=cfg,
            db=self._db,
            writer=writer,
            directory=Directory(self._agents),
            codec=Codec(self.message_type, cfg.max_message_bytes),
            signals=Signals(),
            task_group=tg,
        )
        self._services = services
        self._one_way = OneWay(services, self.registry)
        self._conversation = Conversations(services)
        self._meeting = Meetings(services, self.registry)
        await tg.start(self._one_way.run)
        await tg.start(self._conversation.run)
        await tg.start(self._meeting.run)

    async def _stop_services(self, tg: anyio.abc.TaskGroup) -> None:
        with anyio.CancelScope(shield=True):
            assert self._one_way is not None
            with anyio.move_on_after(self.config.shutdown_grace):
                await self._one_way.drain()
            tg.cancel_scope.cancel()

    @property
    def services(self) -> Services[T]:
        """The open runtime's services (for the actors and the CLI)."""
        self._check_open()
        assert self._services is not None
        return self._services

    @property
    def one_way(self) -> OneWay[T]:
        """One-way messages: ``await am.one_way.send(sender, recipients, message)``."""
        self._check_open()
        assert self._one_way is not None
        return self._one_way

    @property
    def conversation(self) -> Conversations[T]:
        """Calls and chats between two agents."""
        self._check_open()
        assert self._conversation is not None
        return self._conversation

    @property
    def meeting(self) -> Meetings[T]:
        """Turn-based meetings of many agents."""
        self._check_open()
        assert self._meeting is not None
        return self._meeting

    # ---------------------------------------------------------------- hosting

    def register_handler(self, *agents: str, restart: str = "permanent") -> Callable[[Any], Any]:
        """Decorator: host ``agents`` here with ``async def handler(message, ctx) -> reply | None``."""
        names = [check_id(a, "agent") for a in agents]
        if not names:
            raise InvalidArgument("register_handler needs at least one agent id")

        def decorate(fn: Any) -> Any:
            if not callable(fn):
                raise InvalidArgument("register_handler decorates an async function")
            for name in names:
                self._add_host(HostSpec(agent=name, handler=fn, restart=_restart(restart)))
            return fn

        return decorate

    def host(self, agent: str, agent_class: type[AgentClass[T]], *, restart: str = "permanent") -> None:
        """Host ``agent`` here with an ``Agent`` subclass (a fresh instance per (re)start)."""
        from ..actors.agent import Agent as AgentBase

        name = check_id(agent, "agent")
        if not (isinstance(agent_class, type) and issubclass(agent_class, AgentBase)):
            raise InvalidArgument(f"host() takes an Agent subclass, not {agent_class!r}")
        self._add_host(HostSpec(agent=name, agent_class=agent_class, restart=_restart(restart)))

    def _add_host(self, spec: HostSpec) -> None:
        if self._state in (RuntimeState.CLOSING, RuntimeState.CLOSED):
            raise LifecycleError("cannot host agents on a closed runtime")
        self.registry.hosts[spec.agent] = spec
        if self._state is RuntimeState.OPEN and self._one_way is not None:
            self._one_way.host_soon(spec)

    def register_turn_handler(self, *agents: str) -> Callable[[TurnHandler], TurnHandler]:
        """Decorator: ``async def on_turn(turn) -> message | None`` takes ``agents``' meeting turns."""
        names = [check_id(a, "agent") for a in agents]
        if not names:
            raise InvalidArgument("register_turn_handler needs at least one agent id")

        def decorate(fn: TurnHandler) -> TurnHandler:
            for name in names:
                self.registry.turn_handlers[name] = fn
            return fn

        return decorate

    def on_meeting_event(self, *types: MeetingEventType | str) -> Callable[[EventHandler], EventHandler]:
        """Decorator: ``async def handler(event)`` for these meeting event types (all types if none given)."""
        try:
            keys: list[MeetingEventType | None] = [MeetingEventType(t) for t in types] or [None]
        except ValueError as exc:
            raise InvalidArgument(f"unknown meeting event type: {exc}") from None

        def decorate(fn: EventHandler) -> EventHandler:
            for key in keys:
                self.registry.event_handlers.setdefault(key, []).append(fn)
            return fn

        return decorate

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
        agent = await self._agents.create(external_id, organization, check_name(name), check_metadata(metadata))
        if self._one_way is not None:
            await self._one_way.agent_registered(agent)
        return agent

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
        agent = await self._agents.deregister(check_id(external_id, "agent external_id"))
        if self._services is not None:
            self._services.directory.forget(agent.external_id)
        return agent

    async def get_dead_letters(self, agent: str | None = None, *, limit: int = 100) -> list[DeadLetter]:
        """Messages whose handler failed ``max_attempts`` times (of one agent if given), oldest first."""
        return await self.one_way.get_dead_letters(agent, limit=limit)

    async def retry_dead_letter(self, dead_letter_id: int) -> None:
        """Requeue a dead letter's message for its agent (``DeadLetterNotFound`` if unknown or already retried)."""
        await self.one_way.retry_dead_letter(dead_letter_id)


def _restart(value: str) -> RestartType:
    try:
        return RestartType(value)
    except ValueError:
        raise InvalidArgument(f"restart must be 'permanent', 'transient' or 'temporary', not {value!r}") from None
