"""Every public method, fed hostile input: a typed error or a correct round trip, never anything else.

Hypothesis draws, for every public method of ``AgentMessaging``, ``am.one_way``, ``am.conversation`` and
``am.meeting``, arguments mixing valid values with hostile ones: NUL and lone surrogates, NaN and
infinities, ``10**400`` and ``2**63``, nesting thousands deep, strings of megabytes, ids with quotes,
backslashes and odd Unicode, wrong types, UUID strings, negative and huge timeouts, cursors and limits.
Each call is bounded by ``anyio.fail_after`` and must

- raise an ``AgentMessagingError`` (or, for the calls that wait, its ``TimeoutError`` subclasses), after
  which the database is as it was (row counts and states of every table compared before and after), or
- succeed, and then what it stored reads back equal (same types all the way down).

Any other exception, or a call that does not return, fails the test.

How it runs on both backends (and why not ``@given`` on an async test): each test function is sync,
parametrized by the ``anyio_backend`` fixture; it opens **one** runtime (on asyncio or trio) in a
blocking portal (``anyio.from_thread.start_blocking_portal``) and runs a sync ``@given`` function whose
examples draw their method and arguments with ``st.data()`` in the test's thread, then make the call in
the runtime's loop through the portal. Draws must stay out of the event loop: hypothesis aborts an
example by raising a ``BaseException`` from ``draw``, which kills anyio's test runner (or the portal) if
it is raised there. The database keeps what accepted calls wrote from one example to the next (later
examples read it back), so failures are not shrunk (state-dependent); the report shows the draws and the
call. ``test_every_public_method_is_fuzzed`` fails when a public method is added without a fuzzer here.
Each test prints how many examples it ran and how the calls ended.
"""

from __future__ import annotations

import math
import operator
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from agent_messaging import Agent, AgentMessaging, AgentMessagingError, Config, MeetingEventType, MessageKind
from agent_messaging._app import internals
from agent_messaging.actors.conversation import Conversations
from agent_messaging.actors.meeting import Meetings
from agent_messaging.actors.one_way import OneWay

AM = AgentMessaging[Any]
CALL_BOUND = 15.0  # seconds: no call here legitimately takes longer; past it, it is a hang
HOSTILE_SETTINGS = settings(
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large],
    print_blob=True,
)
#: Examples per test function (per backend); they add up to well over 2,000.
EXAMPLES = {"app": 450, "one_way": 600, "conversation": 650, "meeting": 450}

# ---------------------------------------------------------------------------------------- strategies

NASTY_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\ud800",
    "x\udfffy",
    "'; DROP TABLE agents; --",
    "\\",
    '"',
    "O'Brien",
    "\\x00",
    "\\u0000",
    "🤖",
    "\u202eevil",
    "line\nbreak",
    "\ufeffbom",
    "é" * 300,
    "x" * 256,
    "%s %(x)s {0}",
    "null",
]
WRONG_TYPES: list[Any] = [None, 0, -1, 1.5, True, False, b"bytes", bytearray(b"x"), [], {}, (), object(), {1, 2}]
NUMBERS: list[Any] = [
    math.nan,
    math.inf,
    -math.inf,
    10**400,
    -(10**400),
    2**63,
    2**63 - 1,
    2**64,
    -(2**63) - 1,
    1e300,
    -0.0,
    5e-324,
    2**70 + 1,
    0,
    -1,
    1,
    0.5,
    1e-9,
    Decimal("1.5"),
]
SURROGATE_TEXT = st.lists(st.one_of(st.characters(codec=None, categories=["Cs"]), st.characters()), max_size=6).map(
    "".join
)
HUGE_TEXT = st.builds(operator.mul, st.sampled_from(["x", "é", "\x00", "🤖"]), st.integers(0, 3_000_000))
HOSTILE_TEXT = st.one_of(st.sampled_from(NASTY_STRINGS), st.text(max_size=12), SURROGATE_TEXT, HUGE_TEXT)
HOSTILE = st.one_of(
    HOSTILE_TEXT, st.sampled_from(WRONG_TYPES), st.sampled_from(NUMBERS), st.uuids(), st.uuids().map(str)
)

CLEAN_TEXT = st.text(st.characters(exclude_characters="\x00"), max_size=30)
CLEAN_LEAF = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**400), 10**400),
    st.floats(allow_nan=False, allow_infinity=False),
    CLEAN_TEXT,
    st.sampled_from([10**400, 2**70 + 1, -(2**63) - 1, 1e23, 5e-324, -0.0, 1e16, 1.7976931348623157e308]),
)
CLEAN_JSON = st.recursive(
    CLEAN_LEAF,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(CLEAN_TEXT, inner, max_size=4),
    max_leaves=20,
)
BAD_LEAF = st.sampled_from(["\x00", "a\x00b", "\ud800", math.nan, math.inf, -math.inf, 10**4200, object(), b"\xff"])
MIXED_JSON = st.recursive(
    st.one_of(CLEAN_LEAF, BAD_LEAF),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.one_of(CLEAN_TEXT, HOSTILE_TEXT), inner, max_size=4),
    max_leaves=12,
)


class Nested(list[Any]):
    """Lists (odd depths) or objects (even ones) nested ``levels`` deep, shown short (hypothesis prints draws)."""

    def __init__(self, levels: int) -> None:
        value: Any = "bottom"
        for _ in range(levels - 1):
            value = [value] if levels % 2 else {"k": value}
        super().__init__([value])
        self.levels = levels

    def __repr__(self) -> str:
        return f"Nested({self.levels})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))


DEEP = st.integers(90, 5_000).map(Nested)


@dataclass(frozen=True)
class Arg:
    """What an argument may be: valid values, and hostile ones."""

    valid: st.SearchStrategy[Any]
    hostile: st.SearchStrategy[Any]
    kind: str = ""


def poison(clean: Any, bad: Any, depth: int) -> Any:
    """``clean`` next to ``bad`` buried ``depth`` levels down, as in ``{"ok": clean, "items": [0, {"text": bad}]}``."""
    for level in range(depth):
        bad = [0, bad] if level % 2 else {"text": bad}
    return {"ok": clean, "items": bad}


#: A valid JSON value with exactly one thing PostgreSQL cannot store somewhere inside.
POISONED = st.builds(poison, CLEAN_JSON, BAD_LEAF, st.integers(0, 4))
NOT_A_STR = st.sampled_from(WRONG_TYPES)
PAYLOAD = Arg(CLEAN_JSON, st.one_of(POISONED, POISONED, MIXED_JSON, DEEP, HUGE_TEXT, HOSTILE), "payload")
METADATA = Arg(
    st.one_of(st.none(), st.dictionaries(CLEAN_TEXT, CLEAN_JSON, max_size=4)),
    st.one_of(
        POISONED,
        st.dictionaries(CLEAN_TEXT, MIXED_JSON, min_size=1, max_size=3),
        st.builds(lambda n: {"blob": "x" * n}, st.integers(60_000, 3_000_000)),
        DEEP.map(lambda deep: {"deep": deep}),
        HOSTILE,
    ),
    "metadata",
)
NAME = Arg(CLEAN_TEXT.filter(str.strip), st.one_of(HOSTILE_TEXT, NOT_A_STR))
WAIT_TIMEOUT = Arg(
    st.floats(0.001, 0.03),
    st.one_of(
        st.sampled_from([0, -1, math.nan, math.inf, -math.inf, 1e300, 2**63, 10**400, 30 * 24 * 3600 + 1, "5", True]),
        st.sampled_from(WRONG_TYPES[1:]),
    ),
)
TURN_DURATION = Arg(st.one_of(st.none(), st.floats(0.05, 5)), WAIT_TIMEOUT.hostile)
CURSOR = Arg(
    st.one_of(st.none(), st.integers(0, 2**63 - 1), st.sampled_from([0, 1, 2**63 - 1])),
    st.one_of(st.integers(-5, -1), st.sampled_from([2**63, 2**64, 10**400, -(2**63)]), HOSTILE),
)
LIMIT = Arg(
    st.integers(1, 10_000),
    st.one_of(st.integers(-3, 0), st.integers(10_001, 20_000), st.sampled_from([True, 1.5, "5", None, 10**400])),
)
BOOL = Arg(st.booleans(), HOSTILE)


def ids(*valid: str) -> Arg:
    """One of the ``valid`` ids, or hostile text or a wrong type."""
    return Arg(st.sampled_from(valid), st.one_of(HOSTILE_TEXT, NOT_A_STR))


def maybe(arg: Arg) -> Arg:
    """``arg`` or None."""
    return Arg(st.one_of(st.none(), arg.valid), arg.hostile, arg.kind)


def any_of(*args: Arg) -> Arg:
    return Arg(st.one_of(*(a.valid for a in args)), st.one_of(*(a.hostile for a in args)))


# ---------------------------------------------------------------------------------------- the harness


def show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:60]}...({len(text)} chars)"


def same(a: Any, b: Any) -> bool:
    """Equal, with the same JSON types all the way down (``1e16`` is not ``10**16``)."""
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        return a is b
    if (isinstance(a, int) and isinstance(b, int)) or (isinstance(a, float) and isinstance(b, float)):
        return bool(a == b)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return False


def plain_json(value: Any) -> bool:
    """Whether ``value`` is made of JSON types only (what an untyped runtime reads back as itself)."""
    if value is None or isinstance(value, bool | str):
        return True
    if isinstance(value, int | float):
        return not isinstance(value, float) or math.isfinite(value)
    if type(value) is list:
        return all(plain_json(v) for v in value)
    if type(value) is dict:
        return all(isinstance(k, str) and plain_json(v) for k, v in value.items())
    return False


@dataclass
class Stage:
    """The meetings the blocking calls are made in: one started (h holding the floor), one not started."""

    running: uuid.UUID
    fresh: uuid.UUID


_FINGERPRINT = """
SELECT (SELECT count(*) FROM organizations) AS organizations,
       (SELECT count(*) FROM agents) AS agents,
       (SELECT count(*) FROM agents WHERE deregistered_at IS NULL) AS live_agents,
       (SELECT count(*) FROM messages) AS messages,
       (SELECT count(read_at) FROM messages) AS read,
       (SELECT count(dead_at) FROM messages) AS dead,
       (SELECT count(replied_at) FROM messages) AS replied,
       (SELECT coalesce(max(seq), 0) FROM messages) AS last_seq,
       (SELECT count(*) FROM conversations) AS conversations,
       (SELECT count(*) FROM conversations WHERE status = 'ended') AS ended_conversations,
       (SELECT count(*) FROM dead_letters) AS dead_letters,
       (SELECT count(retried_at) FROM dead_letters) AS retried,
       (SELECT count(*) FROM meetings) AS meetings,
       (SELECT string_agg(status || ':' || turn_number || ':' || last_seq, ',' ORDER BY id) FROM meetings) AS states,
       (SELECT count(*) FROM meeting_events) AS events,
       (SELECT string_agg(status, ',' ORDER BY meeting_id, position) FROM meeting_participants) AS seats
"""


@dataclass
class Fuzz:
    """One runtime under fire, driven from hypothesis' (sync) thread through a blocking portal.

    Every draw happens in that thread (a draw may abort an example with a ``BaseException``, which must
    not cross into the event loop); every call runs in the runtime's loop.
    """

    am: AM
    portal: BlockingPortal
    counts: Counter[str] = field(default_factory=Counter)
    examples: int = 0
    started: float = field(default_factory=time.monotonic)
    stage: Stage | None = None
    mood: int = 0
    target: int = 0
    position: int = 0

    def begin(self, data: st.DataObject) -> None:
        """A new example: how hostile its arguments are.

        0: all valid; 1: each one in three; 2: each one in two; 3: exactly one; 4: only the payload;
        5: only the metadata.
        """
        self.examples += 1
        self.mood = data.draw(st.sampled_from([0, 1, 2, 3, 3, 4, 4, 5]), label="mood")
        self.target = data.draw(st.integers(0, 4), label="the hostile argument (mood 3)")
        self.position = 0

    def draw(self, data: st.DataObject, arg: Arg, label: str) -> Any:
        """One argument: valid or hostile, by this example's mood."""
        self.position += 1
        if self.mood == 0:
            hostile = False
        elif self.mood == 3:
            hostile = self.position - 1 == self.target
        elif self.mood == 4:
            hostile = arg.kind == "payload"
        elif self.mood == 5:
            hostile = arg.kind == "metadata"
        elif self.mood == 1:
            hostile = data.draw(st.integers(0, 2), label=f"{label} is hostile (0)") == 0
        else:
            hostile = data.draw(st.booleans(), label=f"{label} is hostile")
        return data.draw(arg.hostile if hostile else arg.valid, label=label)

    def run(self, fn: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Await ``fn(*args, **kwargs)`` in the runtime's event loop (bounded) and return its result."""

        async def bounded() -> Any:
            with anyio.fail_after(CALL_BOUND):
                return await fn(*args, **kwargs)

        return self.portal.call(bounded)

    async def fingerprint(self) -> dict[str, Any]:
        row = await internals(self.am).database.fetch_row(_FINGERPRINT)
        assert row is not None
        return row

    async def _attempt(self, fn: Callable[..., Awaitable[Any]], args: Any, kwargs: Any) -> tuple[str, Any]:
        before = await self.fingerprint()
        try:
            with anyio.fail_after(CALL_BOUND):
                result = await fn(*args, **kwargs)
        except AgentMessagingError as exc:
            if isinstance(exc, TimeoutError):
                return "timed out", exc
            return f"refused ({type(exc).__name__})", (exc, before, await self.fingerprint())
        except TimeoutError:
            return "hang", None
        except Exception as exc:
            return "raw", exc
        return "accepted", result

    def call(
        self, label: str, fn: Callable[..., Awaitable[Any]], *args: Any, may_time_out: bool = False, **kwargs: Any
    ) -> tuple[bool, Any]:
        """Make one public call; (True, result) if it succeeded, (False, error) if it refused or timed out.

        Fails the test on a non-library exception, a hang, a timeout of a call that does not wait, or a
        refusal that changed the database.
        """
        shown = f"{label}({', '.join([*map(show, args), *(f'{k}={show(v)}' for k, v in kwargs.items())])})"
        outcome, value = self.portal.call(self._attempt, fn, args, kwargs)
        self.counts[outcome] += 1
        if outcome == "hang":
            pytest.fail(f"{shown} did not return within {CALL_BOUND:g}s (a hang)")
        if outcome == "raw":
            raise AssertionError(f"{shown} let out a non-library exception: {value!r}") from value
        if outcome == "timed out":
            assert may_time_out, f"{shown} raised {value!r}, but it does not wait"
            return False, value
        if outcome.startswith("refused"):
            error, before, after = value
            assert after == before, f"{shown} refused ({error!r}) but changed the database:\n{before}\n{after}"
            return False, error
        return True, value

    def call_sync(self, label: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> tuple[bool, Any]:
        """The same for a method that does not await (and writes nothing)."""
        shown = f"{label}({', '.join([*map(show, args), *(f'{k}={show(v)}' for k, v in kwargs.items())])})"
        try:
            result = fn(*args, **kwargs)
        except AgentMessagingError as exc:
            self.counts[f"refused ({type(exc).__name__})"] += 1
            return False, exc
        except Exception as exc:
            raise AssertionError(f"{shown} let out a non-library exception: {exc!r}") from exc
        self.counts["accepted"] += 1
        return True, result

    def report(self) -> str:
        """How many examples ran, how long they took, and how the calls ended."""
        return (
            f"{self.examples} examples in {time.monotonic() - self.started:.1f}s "
            f"({', '.join(f'{k} {v}' for k, v in sorted(self.counts.items()))})"
        )


Fuzzer = Callable[[Fuzz, st.DataObject], None]
FUZZERS: dict[str, dict[str, Fuzzer]] = {"app": {}, "one_way": {}, "conversation": {}, "meeting": {}}
#: Public names that take no input (properties): nothing to fuzz.
NO_INPUT = {"app": {"conversation", "meeting", "message_type", "one_way", "state"}}


def fuzzes(facade: str, *names: str) -> Callable[[Fuzzer], Fuzzer]:
    def register(fn: Fuzzer) -> Fuzzer:
        for name in names:
            FUZZERS[facade][name] = fn
        return fn

    return register


# ---------------------------------------------------------------------------------------- AgentMessaging

ORGS = ("acme", "evil")
AGENTS = ("alice", "bob", "carol")


@fuzzes("app", "register_organization")
def _register_organization(fuzz: Fuzz, data: st.DataObject) -> None:
    external_id = fuzz.draw(data, ids(*(f"org-{i}" for i in range(50))), "external_id")
    name = fuzz.draw(data, NAME, "name")
    metadata = fuzz.draw(data, METADATA, "metadata")
    ok, org = fuzz.call("register_organization", fuzz.am.register_organization, external_id, name, metadata)
    if ok:
        stored = fuzz.run(fuzz.am.get_organization, external_id)
        assert (stored.name, stored.id) == (name, org.id)
        if plain_json(metadata):
            assert same(stored.metadata, metadata or {})
            assert same(org.metadata, metadata or {})


@fuzzes("app", "register_agent")
def _register_agent(fuzz: Fuzz, data: st.DataObject) -> None:
    external_id = fuzz.draw(data, ids(*(f"agent-{i}" for i in range(50))), "external_id")
    organization = fuzz.draw(data, ids(*ORGS), "organization")
    name = fuzz.draw(data, NAME, "name")
    metadata = fuzz.draw(data, METADATA, "metadata")
    ok, agent = fuzz.call("register_agent", fuzz.am.register_agent, external_id, organization, name, metadata)
    if ok:
        stored = fuzz.run(fuzz.am.get_agent, external_id)
        assert (stored.id, stored.name, stored.organization_external_id) == (agent.id, name, organization)
        if plain_json(metadata):
            assert same(stored.metadata, metadata or {})


@fuzzes("app", "get_organization", "get_agent", "list_agents", "deregister_agent", "restart_agent")
def _lookups(fuzz: Fuzz, data: st.DataObject) -> None:
    name = data.draw(
        st.sampled_from(["get_organization", "get_agent", "list_agents", "deregister_agent", "restart_agent"])
    )
    external_id = fuzz.draw(data, ids(*ORGS, *AGENTS, "agent-1", "nobody"), "external_id")
    fuzz.call(name, getattr(fuzz.am, name), external_id)


@fuzzes("app", "get_dead_letters", "retry_dead_letter")
def _app_dead_letters(fuzz: Fuzz, data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        agent = fuzz.draw(data, maybe(ids(*AGENTS)), "agent")
        fuzz.call("get_dead_letters", fuzz.am.get_dead_letters, agent, limit=fuzz.draw(data, LIMIT, "limit"))
    else:
        fuzz.call("retry_dead_letter", fuzz.am.retry_dead_letter, fuzz.draw(data, CURSOR, "dead_letter_id"))


class _Quiet(Agent[Any]):
    async def on_message(self, message: Any, ctx: Any) -> None:
        return None


@fuzzes("app", "register_handler", "register_turn_handler", "on_meeting_event", "host")
def _registrations(fuzz: Fuzz, data: st.DataObject) -> None:
    # on a runtime that is not open: registering records a handler and writes nothing
    spare: AM = AgentMessaging[Any]()
    agents = [fuzz.draw(data, ids(*AGENTS), "agent") for _ in range(data.draw(st.integers(0, 3)))]
    which = data.draw(st.sampled_from(["register_handler", "register_turn_handler", "on_meeting_event", "host"]))
    if which == "register_handler":
        restart = data.draw(st.one_of(st.sampled_from(["permanent", "transient", "temporary"]), HOSTILE))
        ok, decorate = fuzz.call_sync(which, spare.register_handler, *agents, restart=restart)
        if ok:
            target = data.draw(st.one_of(st.just(_Quiet().on_message), HOSTILE), label="handler")
            fuzz.call_sync("register_handler(...)", decorate, target)
    elif which == "register_turn_handler":
        ok, decorate = fuzz.call_sync(which, spare.register_turn_handler, *agents)
        if ok:
            fuzz.call_sync("register_turn_handler(...)", decorate, _Quiet().on_message)
    elif which == "on_meeting_event":
        types = data.draw(st.lists(st.one_of(st.sampled_from(list(MeetingEventType)), HOSTILE), max_size=3))
        fuzz.call_sync(which, spare.on_meeting_event, *types)
    else:
        target = data.draw(st.one_of(st.just(_Quiet), st.just(_Quiet()), HOSTILE), label="agent_class")
        restart = data.draw(st.one_of(st.just("permanent"), HOSTILE), label="restart")
        fuzz.call_sync(which, spare.host, fuzz.draw(data, ids(*AGENTS), "agent"), target, restart=restart)


# ---------------------------------------------------------------------------------------- am.one_way

PEOPLE = ("alice", "bob", "carol", "mallory")  # mallory is in another organization


def check_received(fuzz: Fuzz, recipients: list[str], sent: list[uuid.UUID], message: Any, meta: Any) -> None:
    """What ``send`` acknowledged reads back equal, for every recipient."""
    for recipient, message_id in zip(recipients, sent, strict=True):
        [newest] = fuzz.run(fuzz.am.one_way.get_received_messages, recipient, limit=1)
        assert newest.id == message_id
        if plain_json(message):
            assert same(newest.payload, message), f"sent {show(message)}, read back {show(newest.payload)}"
        if plain_json(meta):
            assert same(newest.metadata, meta or {})


@fuzzes("one_way", "send")
def _one_way_send(fuzz: Fuzz, data: st.DataObject) -> None:
    sender = fuzz.draw(data, ids(*PEOPLE), "sender")
    one, many = ids(*PEOPLE), st.lists(st.sampled_from(PEOPLE[:3]), min_size=1, max_size=3)
    recipients = fuzz.draw(
        data,
        Arg(
            st.one_of(one.valid, many, many.map(tuple)),
            st.one_of(one.hostile, st.lists(st.one_of(one.valid, one.hostile), max_size=3), st.just(())),
        ),
        "recipients",
    )
    message = fuzz.draw(data, PAYLOAD, "message")
    metadata = fuzz.draw(data, METADATA, "metadata")
    ok, sent = fuzz.call("send", fuzz.am.one_way.send, sender, recipients, message, metadata=metadata)
    if ok:
        names = [recipients] if isinstance(recipients, str) else list(dict.fromkeys(recipients))
        check_received(fuzz, names, sent, message, metadata)


@fuzzes("one_way", "get_sent_messages", "get_received_messages")
def _one_way_pages(fuzz: Fuzz, data: st.DataObject) -> None:
    agent = fuzz.draw(data, ids(*PEOPLE), "agent")
    kwargs: dict[str, Any] = {"limit": fuzz.draw(data, LIMIT, "limit"), "before": fuzz.draw(data, CURSOR, "before")}
    if data.draw(st.booleans()):
        fuzz.call("get_sent_messages", fuzz.am.one_way.get_sent_messages, agent, **kwargs)
    else:
        kwargs["include_read"] = fuzz.draw(data, BOOL, "include_read")
        fuzz.call("get_received_messages", fuzz.am.one_way.get_received_messages, agent, **kwargs)


@fuzzes("one_way", "get_dead_letters", "retry_dead_letter")
def _one_way_dead_letters(fuzz: Fuzz, data: st.DataObject) -> None:
    if data.draw(st.booleans()):
        agent = fuzz.draw(data, maybe(ids(*PEOPLE)), "agent")
        limit = fuzz.draw(data, LIMIT, "limit")
        fuzz.call("get_dead_letters", fuzz.am.one_way.get_dead_letters, agent, limit=limit)
    else:
        dead_letter_id = fuzz.draw(data, CURSOR, "dead_letter_id")
        fuzz.call("retry_dead_letter", fuzz.am.one_way.retry_dead_letter, dead_letter_id)


# ---------------------------------------------------------------------------------------- am.conversation


def pair(fuzz: Fuzz, data: st.DataObject, first: str, second: str) -> tuple[Any, Any]:
    """Two agents of a conversation; valid ones are two different agents (one may be of another organization)."""
    a = fuzz.draw(data, ids(*PEOPLE), first)
    return a, fuzz.draw(data, ids(*(p for p in PEOPLE if p != a)), second)


def claim_newest(fuzz: Fuzz, agent: str, sender: str, message_id: uuid.UUID, message: Any) -> None:
    """The message ``sender`` just committed for ``agent`` is claimed and reads back equal."""
    claimed = fuzz.run(fuzz.am.conversation.get_unread_messages, agent, from_agent=sender, limit=10_000)
    assert claimed
    assert claimed[-1].id == message_id
    if plain_json(message):
        assert same(claimed[-1].payload, message), f"sent {show(message)}, read back {show(claimed[-1].payload)}"


@fuzzes("conversation", "send")
def _chat_send(fuzz: Fuzz, data: st.DataObject) -> None:
    sender, recipient = pair(fuzz, data, "sender", "recipient")
    message, metadata = fuzz.draw(data, PAYLOAD, "message"), fuzz.draw(data, METADATA, "metadata")
    ok, message_id = fuzz.call(
        "conversation.send", fuzz.am.conversation.send, sender, recipient, message, metadata=metadata
    )
    if ok:
        claim_newest(fuzz, recipient, sender, message_id, message)


@fuzzes("conversation", "send_and_wait")
def _send_and_wait(fuzz: Fuzz, data: st.DataObject) -> None:
    # nobody answers: a valid call ends in ReplyTimeout, and leaves a request for reply() to answer
    sender, recipient = pair(fuzz, data, "sender", "recipient")
    message, timeout = fuzz.draw(data, PAYLOAD, "message"), fuzz.draw(data, WAIT_TIMEOUT, "timeout")
    call = fuzz.am.conversation.send_and_wait
    fuzz.call("send_and_wait", call, sender, recipient, message, timeout=timeout, may_time_out=True)


async def _recent_requests(am: AM) -> list[uuid.UUID]:
    rows = await internals(am).database.fetch(
        "SELECT id FROM messages WHERE kind = 'request' ORDER BY seq DESC LIMIT 5"
    )
    return [uuid.UUID(str(row["id"])) for row in rows]


@fuzzes("conversation", "reply")
def _reply(fuzz: Fuzz, data: st.DataObject) -> None:
    responder, waiting = pair(fuzz, data, "responder", "waiting_agent")
    # which recent request (by position: the draws must not depend on what the database holds)
    choice = fuzz.draw(
        data,
        Arg(st.one_of(st.none(), st.integers(0, 4), st.integers(-5, -1)), st.one_of(st.uuids(), HOSTILE)),
        "request_id (n >= 0: the n-th recent request as a UUID, -1-n: as a str)",
    )
    request_id: Any = choice
    if isinstance(choice, int) and not isinstance(choice, bool) and -5 <= choice <= 4:
        recent = fuzz.run(_recent_requests, fuzz.am)
        index = choice if choice >= 0 else -1 - choice
        request_id = None if index >= len(recent) else recent[index] if choice >= 0 else str(recent[index])
    message = fuzz.draw(data, PAYLOAD, "message")
    ok, reply_id = fuzz.call("reply", fuzz.am.conversation.reply, responder, waiting, message, request_id=request_id)
    if ok:
        claim_newest(fuzz, waiting, responder, reply_id, message)


@fuzzes("conversation", "end_conversation")
def _end_conversation(fuzz: Fuzz, data: st.DataObject) -> None:
    a, b = pair(fuzz, data, "agent_a", "agent_b")
    message = fuzz.draw(data, maybe(PAYLOAD), "message")
    ok, _ = fuzz.call("end_conversation", fuzz.am.conversation.end_conversation, a, b, message=message)
    if ok and message is not None:
        claimed = fuzz.run(fuzz.am.conversation.get_unread_messages, b, from_agent=a, limit=10_000)
        assert claimed
        assert claimed[-1].kind is MessageKind.END
        if plain_json(message):
            assert same(claimed[-1].payload, message)


@fuzzes("conversation", "get_unread_messages", "wait_for_message")
def _claims(fuzz: Fuzz, data: st.DataObject) -> None:
    agent = fuzz.draw(data, ids(*PEOPLE), "agent")
    from_agent = fuzz.draw(data, maybe(ids(*(p for p in PEOPLE if p != agent))), "from_agent")
    conversation = fuzz.am.conversation
    if data.draw(st.booleans()):
        limit = fuzz.draw(data, LIMIT, "limit")
        fuzz.call("get_unread_messages", conversation.get_unread_messages, agent, from_agent=from_agent, limit=limit)
    else:
        timeout = fuzz.draw(data, WAIT_TIMEOUT, "timeout")
        call = conversation.wait_for_message
        fuzz.call("wait_for_message", call, agent, from_agent=from_agent, timeout=timeout, may_time_out=True)


@fuzzes(
    "conversation", "get_messages_from_agent", "get_conversation_history", "get_recent_messages", "resume_agent_handler"
)
def _conversation_reads(fuzz: Fuzz, data: st.DataObject) -> None:
    which = data.draw(
        st.sampled_from(
            ["get_messages_from_agent", "get_conversation_history", "get_recent_messages", "resume_agent_handler"]
        )
    )
    agent, other = pair(fuzz, data, "agent", "other")
    conversation = fuzz.am.conversation
    if which == "get_messages_from_agent":
        fuzz.call(
            which,
            conversation.get_messages_from_agent,
            agent,
            other,
            include_read=fuzz.draw(data, BOOL, "include_read"),
            limit=fuzz.draw(data, LIMIT, "limit"),
            after_seq=fuzz.draw(data, CURSOR, "after_seq"),
        )
    elif which == "get_conversation_history":
        fuzz.call(
            which,
            conversation.get_conversation_history,
            agent,
            other,
            after_seq=fuzz.draw(data, CURSOR, "after_seq"),
            limit=fuzz.draw(data, LIMIT, "limit"),
        )
    elif which == "get_recent_messages":
        before = fuzz.draw(data, Arg(st.one_of(st.none(), st.uuids(), st.uuids().map(str)), HOSTILE), "before")
        limit = fuzz.draw(data, LIMIT, "limit")
        fuzz.call(which, conversation.get_recent_messages, agent, other, before=before, limit=limit)
    else:
        fuzz.call(which, conversation.resume_agent_handler, agent)


# ---------------------------------------------------------------------------------------- am.meeting
#
# The host "h" calls; "p" takes its turns through a hosted turn handler that passes, so every valid
# blocking call of h returns once p has passed. "x" is in no meeting, "mallory" in another organization.

MEETING_PEOPLE = ("h", "p", "x", "mallory")


async def new_meeting(am: AM, *, start: bool) -> uuid.UUID:
    mid = await am.meeting.create_meeting("h", ["p"])
    if start:
        await am.meeting.start_meeting("h", mid, "opening")
    return mid


async def _stage(fuzz: Fuzz) -> Stage:
    """The stage, its meetings replaced by new ones when an example ended, started or emptied them."""
    current = fuzz.stage
    if current is None:
        current = fuzz.stage = Stage(await new_meeting(fuzz.am, start=True), await new_meeting(fuzz.am, start=False))
    running = await fuzz.am.meeting.get_meeting_status(current.running)
    if running.state.value != "active" or running.floor_holder != "h" or not _all_present(running):
        current.running = await new_meeting(fuzz.am, start=True)
    fresh = await fuzz.am.meeting.get_meeting_status(current.fresh)
    if fresh.state.value != "created" or not _all_present(fresh):
        current.fresh = await new_meeting(fuzz.am, start=False)
    return current


def stage(fuzz: Fuzz) -> Stage:
    result: Stage = fuzz.run(_stage, fuzz)
    return result


def _all_present(status: Any) -> bool:
    return all(p.status.value == "present" for p in status.participants)


def meeting_ids(*valid: uuid.UUID) -> Arg:
    """One of the ``valid`` meetings (a ``UUID`` or its str), or a stranger's uuid, or something hostile.

    One branch per meeting, whatever the ids: the draws must not depend on what the database holds.
    """
    good = st.sampled_from(valid) if len(valid) == 2 else st.sampled_from([*valid, *valid])
    return Arg(st.one_of(good, good.map(str)), st.one_of(st.uuids(), HOSTILE))


async def _last_spoken(am: AM, mid: uuid.UUID) -> Any:
    history = await am.meeting.get_meeting_history(mid, limit=10_000)
    return [e for e in history if e.type in (MeetingEventType.AGENT_SPOKE, MeetingEventType.MEETING_ENDED)][-1]


def last_spoken(fuzz: Fuzz, mid: Any) -> Any:
    return fuzz.run(_last_spoken, fuzz.am, mid if isinstance(mid, uuid.UUID) else uuid.UUID(mid))


@fuzzes("meeting", "create_meeting")
def _create_meeting(fuzz: Fuzz, data: st.DataObject) -> None:
    host = fuzz.draw(data, ids(*MEETING_PEOPLE), "host")
    one = ids(*MEETING_PEOPLE)
    participants = fuzz.draw(
        data,
        Arg(
            st.one_of(st.just(["p"]), st.lists(one.valid, min_size=1, max_size=3)),
            st.one_of(st.lists(st.one_of(one.valid, one.hostile), max_size=3), HOSTILE),
        ),
        "participants",
    )
    duration = fuzz.draw(data, TURN_DURATION, "turn_duration")
    selection = fuzz.draw(
        data, Arg(st.sampled_from(["round_robin", lambda status, last: "nobody"]), HOSTILE), "speaker_selection"
    )
    ok, mid = fuzz.call(
        "create_meeting",
        fuzz.am.meeting.create_meeting,
        host,
        participants,
        turn_duration=duration,
        speaker_selection=selection,
    )
    if ok:
        status = fuzz.run(fuzz.am.meeting.get_meeting_status, mid)
        assert status.host == host
        assert status.turn_duration == duration
        fuzz.run(fuzz.am.meeting.end_meeting, host, mid)  # idle meetings with timed turns would write by themselves


@fuzzes("meeting", "speak", "pass_turn", "attend_meeting")
def _turns(fuzz: Fuzz, data: st.DataObject) -> None:
    where = stage(fuzz)
    which = data.draw(st.sampled_from(["speak", "pass_turn", "attend_meeting"]))
    if which == "attend_meeting":
        # p is left alone (a second wait for p would take over its hosted participant's), and so is the
        # meeting not started: attending it is a legitimate wait for a start that never comes
        agent = fuzz.draw(data, ids("h", "x", "mallory"), "agent")
        mid = fuzz.draw(data, meeting_ids(where.running), "meeting_id")
    else:
        agent = fuzz.draw(data, ids(*MEETING_PEOPLE), "agent")
        mid = fuzz.draw(data, meeting_ids(where.running, where.fresh), "meeting_id")
    meeting = fuzz.am.meeting
    if which == "speak":
        message = fuzz.draw(data, PAYLOAD, "message")
        next_speaker = fuzz.draw(data, maybe(ids("p", "h", "x")), "next_speaker")
        ok, _ = fuzz.call(which, meeting.speak, agent, mid, message, next_speaker=next_speaker)
        if ok:
            spoken = last_spoken(fuzz, where.running)
            assert spoken.agent == "h"
            if plain_json(message):
                assert same(spoken.message, message), f"said {show(message)}, history has {show(spoken.message)}"
    elif which == "pass_turn":
        fuzz.call(which, meeting.pass_turn, agent, mid)
    else:
        fuzz.call(which, meeting.attend_meeting, agent, mid)


@fuzzes("meeting", "start_meeting", "leave_meeting", "end_meeting")
def _lifecycle(fuzz: Fuzz, data: st.DataObject) -> None:
    where = stage(fuzz)
    which = data.draw(st.sampled_from(["start_meeting", "leave_meeting", "end_meeting"]))
    meeting = fuzz.am.meeting
    if which == "start_meeting":
        mid = fuzz.draw(data, meeting_ids(where.fresh, where.running), "meeting_id")
        agent = fuzz.draw(data, ids(*MEETING_PEOPLE), "host")
        message = fuzz.draw(data, PAYLOAD, "message")
        next_speaker = fuzz.draw(data, maybe(ids("p", "h", "x")), "next_speaker")
        ok, _ = fuzz.call(which, meeting.start_meeting, agent, mid, message, next_speaker=next_speaker)
        if ok and plain_json(message):
            assert same(last_spoken(fuzz, where.fresh).message, message)
    elif which == "leave_meeting":
        # in the meeting not started a leave is applied at once; in the running one p's leave would
        # legitimately wait for h's turn to end
        agent = fuzz.draw(data, ids(*MEETING_PEOPLE), "agent")
        mid = fuzz.draw(data, meeting_ids(where.fresh), "meeting_id")
        fuzz.call(which, meeting.leave_meeting, agent, mid)
    else:
        mid = fuzz.draw(data, meeting_ids(where.fresh, where.running), "meeting_id")
        agent = fuzz.draw(data, ids(*MEETING_PEOPLE), "host")
        message = fuzz.draw(data, maybe(PAYLOAD), "message")
        ok, _ = fuzz.call(which, meeting.end_meeting, agent, mid, message=message)
        if ok and message is not None and plain_json(message):
            ended = last_spoken(fuzz, mid)
            assert ended.type is MeetingEventType.MEETING_ENDED
            assert same(ended.message, message)


@fuzzes("meeting", "get_meeting_status", "get_meeting_history", "list_meetings")
def _meeting_reads(fuzz: Fuzz, data: st.DataObject) -> None:
    where = stage(fuzz)
    which = data.draw(st.sampled_from(["get_meeting_status", "get_meeting_history", "list_meetings"]))
    mid = fuzz.draw(data, meeting_ids(where.running, where.fresh), "meeting_id")
    meeting = fuzz.am.meeting
    if which == "get_meeting_status":
        fuzz.call(which, meeting.get_meeting_status, mid)
    elif which == "get_meeting_history":
        after_seq = fuzz.draw(data, Arg(st.integers(0, 2**63 - 1), CURSOR.hostile), "after_seq")
        limit = fuzz.draw(data, LIMIT, "limit")
        fuzz.call(which, meeting.get_meeting_history, mid, after_seq=after_seq, limit=limit)
    else:
        fuzz.call(which, meeting.list_meetings, active=fuzz.draw(data, maybe(BOOL), "active"))


# ---------------------------------------------------------------------------------------- the tests


async def people(am: AM) -> None:
    for org in ("acme", "evil"):
        await am.register_organization(org, org.title())
    for name in ("alice", "bob", "carol", "h", "p", "x"):
        await am.register_agent(name, "acme", name.title())
    await am.register_agent("mallory", "evil", "Mallory")

    @am.register_turn_handler("p")
    async def p_passes(turn: Any) -> None:
        return None


def hostile(facade: str, backend: str, config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    """Run ``EXAMPLES[facade]`` examples against one runtime on ``backend``."""
    with (
        start_blocking_portal(backend=backend) as portal,
        portal.wrap_async_context_manager(AgentMessaging[Any](config)) as am,
    ):
        fuzz = Fuzz(am, portal)
        fuzz.run(people, am)

        @given(data=st.data())
        @settings(HOSTILE_SETTINGS, max_examples=EXAMPLES[facade])
        def example(data: st.DataObject) -> None:
            fuzz.begin(data)
            name = data.draw(st.sampled_from(sorted(FUZZERS[facade])), label="method")
            FUZZERS[facade][name](fuzz, data)

        example()
        with capsys.disabled():
            print(f"\n[hostile input] {facade} on {backend}: {fuzz.report()}")
        assert fuzz.examples >= 0.9 * EXAMPLES[facade], f"only {fuzz.examples} examples ran"


def test_hostile_input_to_app(anyio_backend: str, config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    hostile("app", anyio_backend, config, capsys)


def test_hostile_input_to_one_way(anyio_backend: str, config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    hostile("one_way", anyio_backend, config, capsys)


def test_hostile_input_to_conversation(anyio_backend: str, config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    hostile("conversation", anyio_backend, config, capsys)


def test_hostile_input_to_meeting(anyio_backend: str, config: Config, capsys: pytest.CaptureFixture[str]) -> None:
    hostile("meeting", anyio_backend, config, capsys)


def public_names(obj: type) -> set[str]:
    return {name for name in dir(obj) if not name.startswith("_")}


@pytest.mark.parametrize(
    ("facade", "cls"),
    [("app", AgentMessaging), ("one_way", OneWay), ("conversation", Conversations), ("meeting", Meetings)],
)
def test_every_public_method_is_fuzzed(facade: str, cls: type) -> None:
    names = public_names(cls)
    missing = names - set(FUZZERS[facade]) - NO_INPUT.get(facade, set())
    assert not missing, f"public names of {cls.__name__} with no fuzzer in {__file__}: {sorted(missing)}"
    assert not set(FUZZERS[facade]) - names, "fuzzers of names that are gone"


def test_the_examples_add_up_to_more_than_2000() -> None:
    assert sum(EXAMPLES.values()) >= 2_000
