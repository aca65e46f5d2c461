"""``AgentMessaging``: the runtime object users open with ``async with``, and the composition root.

It owns the root of the supervision tree and builds every part in one place::

    AgentMessaging (root task group)
    ├── database: embedded server (no DSN) -> pool -> migrations; presence connection
    ├── writer                 the persistence actor (group commit); encloses all below,
    │                          so it flushes after every actor stopped
    ├── news                   LISTEN connection + periodic sweep
    ├── calls                  reply slots, remote-reply watches, expiry of old requests
    ├── agents (supervisor)    one agent actor per hosted agent
    ├── meeting events         the event dispatcher (one worker per handler)
    ├── meetings (supervisor)  one meeting actor per meeting run here
    └── participants           hosted meeting participants, wherever their meetings run

Its lifecycle is an explicit state machine; entering twice or using it closed
raises ``LifecycleError``.
"""

from __future__ import annotations

import contextlib
import functools
import uuid
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, TypeVar

import anyio

from ._log import get_logger
from ._tracing import load as load_tracing
from ._validation import check_id, check_metadata, check_name
from .actors.agent import Agent
from .actors.calls import Calls
from .actors.conversation import Conversations
from .actors.hosting import RESTART_PREFIX, AgentHost
from .actors.meeting import Meetings
from .actors.meeting.events import EventDispatcher
from .actors.meeting.participants import HostedParticipants
from .actors.meeting.runners import MeetingRunners
from .actors.news import News, Signals
from .actors.one_way import OneWay
from .actors.registry import EventHandler, HostSpec, Registry, TurnHandler
from .actors.services import Codec, Directory, Services
from .config import Config
from .errors import ConfigurationError, InvalidArgument, InvalidOperation, LifecycleError
from .models import AgentInfo, DeadLetter, MeetingEventType, Organization
from .persistence.database import Database
from .persistence.embedded import EmbeddedServer, start_embedded, stop_embedded
from .persistence.migrations import apply_migrations, migration_status
from .persistence.presence import Presence
from .persistence.store.agents import Agents, Organizations
from .persistence.writer import Writer
from .runtime.supervisor import RestartType

__all__ = ["AgentMessaging", "Internals", "RuntimeState", "internals"]

T = TypeVar("T")
log = get_logger("agent_messaging.runtime")


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
        self._organizations: Organizations | None = None
        self._agents: Agents | None = None
        self._registry: Registry[T] = Registry()
        self._parts: Internals[T] | None = None

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
            if self.config.tracing and not load_tracing():
                raise ConfigurationError(
                    "Config.tracing is on but OpenTelemetry is not installed: "
                    "pip install 'agent-messaging[otel]', or set AGENT_MESSAGING_TRACING=false"
                )
            async with contextlib.AsyncExitStack() as stack:
                db = await self._open_database(stack)
                runtime_id = uuid.uuid4().hex[:12]  # its own NOTIFYs are ignored by its listener
                presence = Presence(db, runtime_id, self.config.ownership_lease)
                await presence.open()
                stack.push_async_callback(presence.close)
                # An error from the user's block is re-raised as itself after the task groups
                # have closed, not wrapped in an ExceptionGroup.
                body_error: BaseException | None = None
                # the writer's group encloses the actors' group, so it flushes after every actor stopped
                async with anyio.create_task_group() as writer_group:
                    writer = self._make_writer(db, runtime_id)
                    await writer_group.start(writer.run)
                    try:
                        async with anyio.create_task_group() as tg:
                            parts = self._build(db, writer, presence, runtime_id)
                            await self._start(tg, parts)
                            self._state = RuntimeState.OPEN
                            log.info("runtime.open", database=db.redacted_dsn, hosted=sorted(self._registry.hosts))
                            try:
                                yield self
                            except BaseException as exc:
                                body_error = exc
                            finally:
                                self._state = RuntimeState.CLOSING
                                await self._stop(tg, parts)
                    finally:
                        writer.close()
                if body_error is not None:
                    raise body_error
        finally:
            opened = self._state is RuntimeState.CLOSING  # reached OPEN: not a runtime that failed to open
            self._state = RuntimeState.CLOSED
            self._parts = None
            if opened:
                log.info("runtime.closed")

    async def _open_database(self, stack: contextlib.AsyncExitStack) -> Database:
        dsn = self.config.dsn_value()
        if dsn is None:
            self._embedded = await start_embedded(self.config.embedded_data_dir)
            stack.push_async_callback(stop_embedded, self._embedded)
            dsn = self._embedded.dsn
        # pool_size counts every connection: the presence connection (persistence/presence.py) and the
        # LISTEN connection (actors/news.py, which psqlpy opens beside the pool) are not in the pool
        pool = self.config.pool_size - 1 - (1 if self.config.notify else 0)
        db = Database(dsn, pool_size=pool, connect_timeout=self.config.connect_timeout)
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
        self._organizations = Organizations(db)
        self._agents = Agents(db)
        return db

    def _make_writer(self, db: Database, runtime_id: str) -> Writer:
        cfg = self.config
        return Writer(
            db,
            batch_size=cfg.writer_batch_size,
            linger=cfg.writer_linger,
            connections=cfg.writer_connections,
            timeout=cfg.persistence_timeout,
            notify=cfg.notify,
            origin=runtime_id,
            tracing=cfg.tracing,
        )

    def _build(self, db: Database, writer: Writer, presence: Presence, runtime_id: str) -> Internals[T]:
        """Make every part of the runtime and wire them together (nothing runs yet)."""
        cfg = self.config
        assert self._agents is not None
        signals = Signals()
        services: Services[T] = Services(
            config=cfg,
            runtime_id=runtime_id,
            db=db,
            writer=writer,
            presence=presence,
            directory=Directory(self._agents),
            codec=Codec(self.message_type, cfg.max_message_bytes),
            signals=signals,
            news=News(
                db,
                signals,
                runtime_id,
                notify=cfg.notify,
                poll_interval=cfg.poll_interval,
                check_interval=cfg.ownership_lease / 4,
            ),
            tracing=cfg.tracing,
        )
        registry = self._registry
        calls: Calls[T] = Calls(services)
        host: AgentHost[T] = AgentHost(services, registry, calls, bind=self._bind)
        events = EventDispatcher(registry)
        runners: MeetingRunners[T] = MeetingRunners(services, registry, events.publish)
        meetings: Meetings[T] = Meetings(services, registry, runners)
        participants: HostedParticipants[T] = HostedParticipants(services, registry, host.takes_turns)
        participants.submit = meetings._participant_command
        host.on_turns_taken = participants.turns_taken
        runners.on_started.append(participants.attend_local)
        parts = Internals(
            database=db,
            services=services,
            registry=registry,
            calls=calls,
            host=host,
            events=events,
            runners=runners,
            participants=participants,
            one_way=OneWay(services, host),
            conversation=Conversations(services, host, calls),
            meeting=meetings,
        )
        self._parts = parts
        return parts

    @staticmethod
    async def _start(tg: anyio.abc.TaskGroup, parts: Internals[T]) -> None:
        """Start the tree, leaves first: news, calls, agents (hosting recovers their backlog), meetings."""
        await tg.start(parts.services.news.run)
        await tg.start(parts.calls.run)
        await tg.start(parts.host.run)
        await tg.start(parts.events.run)
        await tg.start(parts.runners.run)
        await tg.start(parts.participants.run)
        watch = parts.services.presence.watch
        await tg.start(watch, functools.partial(_fence, parts), functools.partial(_restore, parts))

    async def _stop(self, tg: anyio.abc.TaskGroup, parts: Internals[T]) -> None:
        """Stop intake, let running handlers finish within the grace period, then cancel the rest."""
        with anyio.CancelScope(shield=True):
            with anyio.move_on_after(self.config.shutdown_grace):
                await parts.host.drain()
            tg.cancel_scope.cancel()

    def _bind(self, agent: Agent[Any], external_id: str) -> None:
        """Give a hosted agent instance its runtime and id (before ``on_start``)."""
        agent.messaging = self
        agent.agent_id = external_id

    def _open_parts(self) -> Internals[T]:
        self._check_open()
        assert self._parts is not None
        return self._parts

    @property
    def one_way(self) -> OneWay[T]:
        """One-way messages: ``await am.one_way.send(sender, recipients, message)``."""
        return self._open_parts().one_way

    @property
    def conversation(self) -> Conversations[T]:
        """Calls and chats between two agents."""
        return self._open_parts().conversation

    @property
    def meeting(self) -> Meetings[T]:
        """Turn-based meetings of many agents."""
        return self._open_parts().meeting

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

    def host(self, agent: str, agent_class: type[Agent[T]] | Agent[T], *, restart: str = "permanent") -> None:
        """Host ``agent`` here with an ``Agent`` subclass (a fresh instance per (re)start) or an ``Agent`` instance
        (the same instance across restarts, e.g. ``LLMAgent(...)``; one instance per agent).

        An instance gets its ``messaging`` and ``agent_id`` at once; a subclass's fresh instances get them before
        their ``on_start``."""
        name = check_id(agent, "agent")
        if isinstance(agent_class, Agent):
            spec = HostSpec(agent=name, instance=agent_class, restart=_restart(restart))
        elif isinstance(agent_class, type) and issubclass(agent_class, Agent):
            spec = HostSpec(agent=name, agent_class=agent_class, restart=_restart(restart))
        else:
            raise InvalidArgument(f"host() takes an Agent subclass or instance, not {agent_class!r}")
        self._add_host(spec)
        if spec.instance is not None:
            # bound now, not only before on_start: its on_turn (a meeting turn) may run before its actor starts
            self._bind(spec.instance, name)

    def _add_host(self, spec: HostSpec) -> None:
        if self._state in (RuntimeState.CLOSING, RuntimeState.CLOSED):
            raise LifecycleError("cannot host agents on a closed runtime")
        self._registry.hosts[spec.agent] = spec
        if self._state is RuntimeState.OPEN and self._parts is not None:
            self._parts.host.host_soon(spec)

    def register_turn_handler(self, *agents: str) -> Callable[[TurnHandler], TurnHandler]:
        """Decorator: ``async def on_turn(turn) -> message | None`` takes ``agents``' meeting turns."""
        names = [check_id(a, "agent") for a in agents]
        if not names:
            raise InvalidArgument("register_turn_handler needs at least one agent id")

        def decorate(fn: TurnHandler) -> TurnHandler:
            for name in names:
                self._registry.turn_handlers[name] = fn
                if self._state is RuntimeState.OPEN and self._parts is not None and name not in self._registry.hosts:
                    self._parts.host.host_soon(HostSpec(agent=name, turns_only=True))
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
                self._registry.event_handlers.setdefault(key, []).append(fn)
            return fn

        return decorate

    # ----------------------------------------------------- organizations/agents

    async def register_organization(
        self, external_id: str, name: str, metadata: dict[str, Any] | None = None, *, exist_ok: bool = False
    ) -> Organization:
        """Register an organization; ``AlreadyExists`` if the external id is taken.

        With ``exist_ok=True`` an organization already registered with the same name and metadata is
        returned instead, so a program can run any number of times; one that differs still raises
        ``AlreadyExists``, naming what differs. Safe when several processes do it at the same instant.
        """
        self._check_open()
        assert self._organizations is not None
        return await self._organizations.create(
            check_id(external_id, "organization external_id"),
            check_name(name),
            check_metadata(metadata),
            exist_ok=exist_ok,
        )

    async def get_organization(self, external_id: str) -> Organization:
        """The organization with this external id (``OrganizationNotFound`` otherwise)."""
        self._check_open()
        assert self._organizations is not None
        return await self._organizations.get(check_id(external_id, "organization external_id"))

    async def register_agent(
        self,
        external_id: str,
        organization_external_id: str,
        name: str,
        metadata: dict[str, Any] | None = None,
        *,
        exist_ok: bool = False,
    ) -> AgentInfo:
        """Register an agent in an organization; ``AlreadyExists`` if a live agent has the external id.

        With ``exist_ok=True`` a live agent already registered in the same organization with the same name
        and metadata is returned instead; one that differs still raises ``AlreadyExists``, naming what differs.
        Safe when several processes do it at the same instant.
        """
        self._check_open()
        assert self._agents is not None
        check_id(external_id, "agent external_id")
        organization = await self.get_organization(organization_external_id)
        agent = await self._agents.create(
            external_id, organization, check_name(name), check_metadata(metadata), exist_ok=exist_ok
        )
        if self._parts is not None:
            await self._parts.host.registered(agent)
        return agent

    async def get_agent(self, external_id: str) -> AgentInfo:
        """The live agent with this external id (``AgentNotFound`` otherwise)."""
        self._check_open()
        assert self._agents is not None
        return await self._agents.get(check_id(external_id, "agent external_id"))

    async def list_agents(self, organization_external_id: str) -> list[AgentInfo]:
        """The organization's live agents (``OrganizationNotFound`` for an unknown organization)."""
        organization = await self.get_organization(organization_external_id)
        assert self._agents is not None
        return await self._agents.in_organization(organization)

    async def deregister_agent(self, external_id: str) -> AgentInfo:
        """Deregister an agent: it can no longer send or receive; its history stays queryable."""
        self._check_open()
        assert self._agents is not None
        agent = await self._agents.deregister(check_id(external_id, "agent external_id"))
        if self._parts is not None:
            self._parts.services.directory.forget(agent.external_id)
        return agent

    async def restart_agent(self, external_id: str) -> AgentInfo:
        """Restart a ``failed`` agent (one past its restart intensity), from any process.

        The runtime that hosts it starts it again (or, if that runtime is gone, the next one to take it
        over does). ``AgentNotFound`` for an unknown agent, ``InvalidOperation`` if it is not failed.
        """
        parts = self._open_parts()
        assert self._agents is not None
        name = check_id(external_id, "agent external_id")
        agent_id = await self._agents.reactivate(name, RESTART_PREFIX, parts.services.runtime_id)
        agent = await self._agents.get(name)  # AgentNotFound for an unknown agent
        if agent_id is None:
            raise InvalidOperation(f"agent {name!r} is {agent.status.value}, not failed: there is nothing to restart")
        hosted = parts.host.by_id.get(agent_id)
        if hosted is not None:  # hosted here: restart it now (the NOTIFY is for the other runtimes)
            await parts.host.restart(hosted)
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


@dataclass(frozen=True, eq=False)
class Internals(Generic[T]):
    """The parts of an open runtime (see :func:`internals`)."""

    database: Database
    services: Services[T]
    registry: Registry[T]
    calls: Calls[T]
    host: AgentHost[T]
    events: EventDispatcher
    runners: MeetingRunners[T]
    participants: HostedParticipants[T]
    one_way: OneWay[T]
    conversation: Conversations[T]
    meeting: Meetings[T]


def internals(am: AgentMessaging[T]) -> Internals[T]:
    """The escape hatch: the parts of an open runtime, for tests, benchmarks and the CLI.

    ``internals(am).database`` runs raw SQL on the runtime's pool; the other parts are
    the runtime's own. None of it is a stable API (hence no public name): it changes
    with the implementation. ``LifecycleError`` when the runtime is not open.
    """
    return am._open_parts()


async def _fence(parts: Internals[Any]) -> None:
    """The runtime lost its presence lock: stop all handling at once (turn handlers, agents, meetings)."""
    parts.participants.fence()
    await parts.host.fence()
    await parts.runners.fence()


async def _restore(parts: Internals[Any]) -> None:
    """The runtime holds its presence lock again: re-claim and restart what was its own, listen again."""
    parts.services.news.renew()
    await parts.host.restore()  # before the meetings: their participants' turns are taken here again
    await parts.runners.restore()
