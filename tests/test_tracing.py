"""OpenTelemetry tracing in one process, with the SDK's in-memory exporter: every kind of span, its parent and
its attributes; the trace context inside messages and never in user metadata; and tracing off (the default)
making no span and writing no trace context.

The trace across processes: ``tests/multiprocess/test_tracing_across_processes.py``.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio
import pytest
from opentelemetry import trace
from pydantic_ai import Agent as PydanticAgent
from pydantic_ai.capabilities import Instrumentation
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel

from agent_messaging import (
    AgentMessaging,
    Config,
    HandlerError,
    InvalidArgument,
    MessageContext,
    MessageKind,
    ReplyTimeout,
    Turn,
)
from agent_messaging._app import internals
from agent_messaging._tracing import TRACE_KEY
from agent_messaging.actors.envelope import new_envelope
from agent_messaging.llm import LLMAgent
from tests._helpers import eventually
from tests._tracing import Record, finished, memory_exporter, named, one, tree
from tests.conftest import repo_root

AM = AgentMessaging[Any]
AGENTS = ("alice", "bob", "carol", "p1")
TRACER = trace.get_tracer("tests")


@pytest.fixture
def spans() -> Callable[[], list[Record]]:
    """The spans finished during the test (the process's in-memory exporter, cleared first)."""
    exporter = memory_exporter()
    exporter.clear()
    return finished


@contextlib.asynccontextmanager
async def open_runtime(dsn: str, **settings: Any) -> AsyncIterator[AM]:
    """A runtime on the test's database with the organization and agents registered."""
    async with AgentMessaging[Any](Config(dsn=dsn, pool_size=4, connect_timeout=5, **settings)) as am:
        await am.register_organization("acme", "Acme")
        for name in AGENTS:
            await am.register_agent(name, "acme", name)
        yield am


@pytest.fixture
async def traced(dsn: str, spans: Callable[[], list[Record]]) -> AsyncIterator[AM]:
    """A runtime with tracing on (the spans of its set-up are not kept)."""
    async with open_runtime(dsn, tracing=True, max_attempts=2, restart_backoff_initial=0.001) as am:
        memory_exporter().clear()
        yield am


class Inbox:
    """A handler that keeps what it handled (payload and context) and replies with an echo."""

    def __init__(self) -> None:
        self.handled: list[tuple[Any, MessageContext[Any]]] = []

    async def __call__(self, message: Any, ctx: MessageContext[Any]) -> Any:
        self.handled.append((message, ctx))
        return {"echo": message}

    async def count(self, n: int) -> None:
        await eventually(lambda: len(self.handled) >= n)


async def stored_metadata(am: AM, message_id: Any) -> dict[str, Any]:
    value = await internals(am).database.fetch_val("SELECT metadata::text FROM messages WHERE id = $1", [message_id])
    result: dict[str, Any] = json.loads(value)
    return result


def messaging(span: Record, operation: str, destination: str | None, kind: str) -> None:
    """The messaging conventions' attributes of a send or process span."""
    assert span.kind == {"send": "PRODUCER", "process": "CONSUMER"}[operation]
    assert span.attributes["messaging.system"] == "agent_messaging"
    assert span.attributes["messaging.operation.type"] == operation
    assert span.attributes.get("messaging.destination.name") == destination
    assert span.attributes["agent_messaging.message.kind"] == kind


# ------------------------------------------------------------------------------------------------ messages


async def test_a_one_way_message_is_sent_and_handled_in_one_trace(
    traced: AM, spans: Callable[[], list[Record]]
) -> None:
    inbox = Inbox()
    traced.register_handler("bob")(inbox)
    [message_id] = await traced.one_way.send("alice", "bob", {"n": 1}, metadata={"topic": "x"})
    await inbox.count(1)
    await eventually(lambda: bool(named(spans(), "process bob")))
    found = spans()
    send, process = one(found, "send bob"), one(found, "process bob")
    messaging(send, "send", "bob", "one_way")
    messaging(process, "process", "bob", "one_way")
    assert send.parent_id is None
    assert process.parent_id == send.span_id
    assert process.trace_id == send.trace_id
    assert send.attributes["messaging.message.id"] == process.attributes["messaging.message.id"] == str(message_id)
    assert send.attributes["agent_messaging.sender"] == process.attributes["agent_messaging.sender"] == "alice"
    assert process.attributes["agent_messaging.attempt"] == 1
    # the writer's commit of the send: a child of the one span whose write it carried, with its counts
    commit = one(found, "writer commit")
    assert commit.parent_id == send.span_id
    assert commit.attributes["agent_messaging.writer.units"] == 1
    assert commit.attributes["agent_messaging.writer.rows"] == 1
    assert commit.attributes["db.system.name"] == "postgresql"
    # the trace context travels in the stored metadata, under the reserved key; users never see it
    stored = await stored_metadata(traced, message_id)
    assert stored["topic"] == "x"
    assert stored[TRACE_KEY]["traceparent"].startswith(f"00-{send.trace_id}-{send.span_id}-")  # W3C
    assert inbox.handled[0][1].metadata == {"topic": "x"}
    [received] = await traced.one_way.get_received_messages("bob")
    assert received.metadata == {"topic": "x"}


async def test_a_fan_out_is_one_send_span_for_all_its_messages(traced: AM, spans: Callable[[], list[Record]]) -> None:
    inbox = Inbox()
    traced.register_handler("bob", "carol")(inbox)
    ids = await traced.one_way.send("alice", ["bob", "carol"], {"n": 1})
    await inbox.count(2)
    await eventually(lambda: len(named(spans(), "process bob") + named(spans(), "process carol")) == 2)
    found = spans()
    send = one(found, "send")  # no single destination: the operation alone
    messaging(send, "send", None, "one_way")
    assert send.attributes["messaging.batch.message_count"] == 2
    assert list(send.attributes["agent_messaging.recipients"]) == ["bob", "carol"]
    for name, message_id in zip(("bob", "carol"), ids, strict=True):
        process = one(found, f"process {name}")
        assert process.parent_id == send.span_id
        assert process.attributes["messaging.message.id"] == str(message_id)


async def test_a_chat_line_carries_its_conversation(traced: AM, spans: Callable[[], list[Record]]) -> None:
    inbox = Inbox()
    traced.register_handler("bob")(inbox)
    with TRACER.start_as_current_span("the application's span") as outer:
        await traced.conversation.send("alice", "bob", {"hi": 1}, metadata={"m": 2})
    await inbox.count(1)
    await eventually(lambda: bool(named(spans(), "process bob")))
    found = spans()
    send, process = one(found, "send bob"), one(found, "process bob")
    messaging(send, "send", "bob", "chat")
    assert send.parent_id == format(outer.get_span_context().span_id, "016x")  # a child of the caller's span
    assert process.parent_id == send.span_id
    conversation = str(inbox.handled[0][1].conversation_id)
    assert send.attributes["messaging.message.conversation_id"] == conversation
    assert process.attributes["messaging.message.conversation_id"] == conversation
    assert inbox.handled[0][1].metadata == {"m": 2}


async def test_a_call_is_a_round_trip_span_over_the_request_its_handling_and_the_reply(
    traced: AM, spans: Callable[[], list[Record]]
) -> None:
    traced.register_handler("bob")(Inbox())
    reply = await traced.conversation.send_and_wait("alice", "bob", {"q": 1}, timeout=10)
    assert reply == {"echo": {"q": 1}}
    await eventually(lambda: bool(named(spans(), "process bob")))
    found = spans()
    print("\n" + tree(found))
    call, send = one(found, "call bob"), one(found, "send bob")
    process, answer = one(found, "process bob"), one(found, "reply alice")
    assert call.kind == "CLIENT"
    assert call.attributes["messaging.operation.name"] == "call"
    assert call.attributes["messaging.destination.name"] == "bob"
    assert call.attributes["agent_messaging.call.timeout"] == 10
    assert send.parent_id == call.span_id
    assert process.parent_id == send.span_id
    assert answer.parent_id == process.span_id  # the handler's return value is the reply
    messaging(send, "send", "bob", "request")
    messaging(process, "process", "bob", "request")
    messaging(answer, "send", "alice", "reply")
    assert answer.attributes["messaging.operation.name"] == "reply"
    assert answer.attributes["agent_messaging.in_reply_to"] == call.attributes["messaging.message.id"]
    assert answer.attributes["agent_messaging.reply.won"] is True
    assert call.attributes["agent_messaging.reply.id"] == answer.attributes["messaging.message.id"]
    assert len({s.trace_id for s in found}) == 1


async def test_a_reply_from_anywhere_is_a_span_of_its_caller(traced: AM, spans: Callable[[], list[Record]]) -> None:
    """bob is hosted nowhere: the application answers with ``reply()``, in a span of its own."""
    async with anyio.create_task_group() as tg:

        async def answer() -> None:
            await eventually(lambda: bool(named(spans(), "send bob")))
            with TRACER.start_as_current_span("operator"):
                await traced.conversation.reply("bob", "alice", {"a": 1})

        tg.start_soon(answer)
        assert await traced.conversation.send_and_wait("alice", "bob", {"q": 1}, timeout=10) == {"a": 1}
    found = spans()
    answer_span = one(found, "reply alice")
    assert answer_span.parent_id == one(found, "operator").span_id
    call = one(found, "call bob")
    assert call.attributes["agent_messaging.reply.id"] == answer_span.attributes["messaging.message.id"]


async def test_failures_mark_their_spans(traced: AM, spans: Callable[[], list[Record]]) -> None:
    attempts: list[int] = []

    async def flaky(message: Any, ctx: MessageContext[Any]) -> Any:
        attempts.append(ctx.attempt)
        if message.get("fail") == "always" or ctx.attempt == 1:
            raise ValueError(f"attempt {ctx.attempt} fails")
        return None

    traced.register_handler("bob")(flaky)
    # a one-way message whose first attempt fails: two process spans, the first failed, in the sender's trace
    await traced.one_way.send("alice", "bob", {"fail": "once"})
    await eventually(lambda: len(named(spans(), "process bob")) == 2)
    first, second = sorted(named(spans(), "process bob"), key=lambda s: s.attributes["agent_messaging.attempt"])
    send = one(spans(), "send bob")
    assert (first.status, second.status) == ("ERROR", "UNSET")
    assert first.attributes["error.type"] == "ValueError"
    assert first.events == ["exception"]
    assert first.parent_id == second.parent_id == send.span_id
    # a call whose handler always fails: answered with the error; the caller's span failed too
    memory_exporter().clear()
    with pytest.raises(HandlerError):
        await traced.conversation.send_and_wait("alice", "bob", {"fail": "always"}, timeout=10)
    found = spans()
    call = one(found, "call bob")
    assert call.status == "ERROR"
    assert call.attributes["error.type"] == "HandlerError"
    last = max(named(found, "process bob"), key=lambda s: s.attributes["agent_messaging.attempt"])
    assert last.status == "ERROR"
    assert last.events == ["exception"]  # recorded once, though the exception did not leave the actor
    answer = one(found, "reply alice")
    assert answer.parent_id == last.span_id
    assert answer.attributes["agent_messaging.reply.error"] == "ValueError"
    assert answer.status == "UNSET"  # the error reply itself was sent
    # a call nobody answers in time
    memory_exporter().clear()
    with pytest.raises(ReplyTimeout):
        await traced.conversation.send_and_wait("alice", "carol", {"q": 1}, timeout=0.2)
    call = one(spans(), "call carol")
    assert call.status == "ERROR"
    assert call.attributes["error.type"] == "ReplyTimeout"


async def test_a_malformed_trace_context_in_a_message_starts_a_new_trace(
    traced: AM, spans: Callable[[], list[Record]]
) -> None:
    """A message written by another client with garbage under the trace key is handled, in a trace of its own."""
    inbox = Inbox()
    traced.register_handler("bob")(inbox)
    services = internals(traced).services
    alice, bob = await services.directory.get("alice"), await services.directory.get("bob")
    for garbage in ({"traceparent": "00-not-a-context"}, {"traceparent": 7}):
        env = new_envelope(MessageKind.ONE_WAY, alice, bob, {"n": 1}, '{"n": 1}', metadata={"k": 1})
        env.trace = garbage  # type: ignore[assignment]
        await internals(traced).one_way._send([env])
    await inbox.count(2)
    await eventually(lambda: len(named(spans(), "process bob")) == 2)
    for process in named(spans(), "process bob"):
        assert process.parent_id is None
    assert [ctx.metadata for _, ctx in inbox.handled] == [{"k": 1}, {"k": 1}]


async def test_an_llm_agent_s_model_run_and_tool_calls_join_the_trace(
    traced: AM, spans: Callable[[], list[Record]]
) -> None:
    """pydantic-ai's own spans (its ``Instrumentation`` capability) are children of the message's ``process``
    span, and what the model sends through its tools joins the same trace: under pydantic-ai's tool span on
    asyncio; on trio (the model runs on asyncio in a worker thread, its tools back on trio in the handler's
    context) under the ``process`` span."""

    def model(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        requests = [m for m in messages if isinstance(m, ModelRequest)]
        if not any(isinstance(part, ToolReturnPart) for m in requests for part in m.parts):
            return ModelResponse(parts=[ToolCallPart("send_note", {"to": "bob", "message": "fyi"})])
        return ModelResponse(parts=[TextPart("done")])

    inbox = Inbox()
    traced.register_handler("bob")(inbox)
    traced.host("carol", LLMAgent(PydanticAgent(FunctionModel(model), capabilities=[Instrumentation()])))
    assert await traced.conversation.send_and_wait("alice", "carol", "go", timeout=10) == "done"
    await inbox.count(1)
    await eventually(lambda: bool(named(spans(), "process bob")))
    found = spans()
    print("\n" + tree(found))
    by_id = {s.span_id: s for s in found}

    def ancestors(span: Record) -> list[str]:
        chain = []
        while span.parent_id in by_id:
            span = by_id[span.parent_id]
            chain.append(span.name)
        return chain

    process = one(found, "process carol")
    ours = {"call carol", "send carol", "process carol", "reply alice", "send bob", "process bob", "writer commit"}
    model_runs = [s for s in found if s.parent_id == process.span_id and s.name not in ours]
    assert model_runs, tree(found)  # pydantic-ai's run, inside the handler's span
    note = one(found, "send bob")
    assert "process carol" in ancestors(note)
    assert one(found, "process bob").parent_id == note.span_id
    assert len({s.trace_id for s in found}) == 1


# ------------------------------------------------------------------------------------------------ the writer


async def test_a_batch_of_writes_from_several_spans_links_them(traced: AM, spans: Callable[[], list[Record]]) -> None:
    """Each committed batch that carries traced writes has one span: the child of the one span whose writes it
    carries, or (several) a root linked to each of them."""
    await traced.one_way.send("alice", "bob", {"warm": True})  # the directory knows both agents now
    memory_exporter().clear()
    async with anyio.create_task_group() as tg:
        for i in range(20):
            tg.start_soon(traced.one_way.send, "alice", "bob", {"i": i})
    found = spans()
    sends, commits = named(found, "send bob"), named(found, "writer commit")
    assert len(sends) == 20
    carried: list[str] = []
    for commit in commits:
        if commit.links:
            assert commit.parent_id is None
            assert len(commit.links) > 1
            carried += commit.links
        else:
            assert commit.parent_id is not None
            carried.append(commit.parent_id)
    assert sorted(carried) == sorted(s.span_id for s in sends)  # each send's write in exactly one batch
    assert sum(c.attributes["agent_messaging.writer.units"] for c in commits) >= 20
    assert any(c.links for c in commits), tree(found)  # sends made at once share batches


# ------------------------------------------------------------------------------------------------ meetings


async def test_meeting_commands_and_turns(traced: AM, spans: Callable[[], list[Record]]) -> None:
    async def take_turn(turn: Turn[Any]) -> Any:
        with TRACER.start_as_current_span("thinking"):
            return {"said": turn.agent, "turn": turn.turn_number}

    traced.register_turn_handler("p1")(take_turn)
    meeting = await traced.meeting.create_meeting("alice", ["p1"])
    first = await traced.meeting.start_meeting("alice", meeting, {"agenda": 1})
    await traced.meeting.end_meeting("alice", meeting)
    assert first.turn_number == 2
    await eventually(lambda: len(named(spans(), "meeting speak")) == 1)  # p1's, ended by the end
    found = spans()
    print("\n" + tree(found, ("agent_messaging.agent", "agent_messaging.meeting.turn_number")))
    mid = str(meeting)
    create = one(found, "meeting create")
    assert create.attributes["agent_messaging.meeting.id"] == mid
    assert create.attributes["agent_messaging.meeting.participants"] == 1
    # the host's start: the caller's span lasts until its next turn; the actor applies it in a child span
    start, apply_start = one(found, "meeting start"), one(found, "meeting apply start")
    assert start.kind == "CLIENT"
    assert apply_start.kind == "SERVER"
    assert apply_start.parent_id == start.span_id
    assert start.attributes["agent_messaging.meeting.turn_number"] == 2
    for span in (start, apply_start):
        assert span.attributes["agent_messaging.meeting.id"] == mid
        assert span.attributes["agent_messaging.meeting.operation"] == "start"
        assert span.attributes["agent_messaging.agent"] == "alice"
    # p1's hosted participant: attend -> its turn (the handler) -> what it says (speak -> apply speak)
    attend = one(found, "meeting attend")
    assert attend.attributes["agent_messaging.agent"] == "p1"
    turn = one(found, "meeting turn")
    assert turn.parent_id == attend.span_id  # the command that waited for the turn
    assert turn.attributes["agent_messaging.meeting.turn_number"] == 1
    assert one(found, "thinking").parent_id == turn.span_id  # the handler runs in the turn's span
    speak = one(found, "meeting speak")
    assert speak.parent_id == turn.span_id
    assert one(found, "meeting apply speak").parent_id == speak.span_id
    end = one(found, "meeting end")
    assert one(found, "meeting apply end").parent_id == end.span_id


# ------------------------------------------------------------------------------------------------ off, and the key


async def test_tracing_off_makes_no_span_and_writes_no_trace_context(
    dsn: str, spans: Callable[[], list[Record]]
) -> None:
    """The default: no span (though the application installed a TracerProvider), no trace context stored, and
    a message written with one by a tracing runtime is handled without a span, its metadata clean."""
    async with open_runtime(dsn) as am:
        inbox = Inbox()
        am.register_handler("bob")(inbox)
        am.register_turn_handler("p1")(_say)
        with TRACER.start_as_current_span("the application's span"):
            [plain] = await am.one_way.send("alice", "bob", {"n": 1}, metadata={"k": 1})
            await am.conversation.send_and_wait("alice", "bob", {"q": 1}, timeout=10)
            meeting = await am.meeting.create_meeting("alice", ["p1"])
            await am.meeting.start_meeting("alice", meeting, {"agenda": 1})
            await am.meeting.end_meeting("alice", meeting)
        await inbox.count(2)
        assert await stored_metadata(am, plain) == {"k": 1}
        rows = await internals(am).database.fetch("SELECT metadata::text AS m FROM messages")
        assert all(TRACE_KEY not in row["m"] for row in rows)
        assert [s.name for s in spans()] == ["the application's span"]
        # a message with a trace context, from a runtime that traces
        async with AgentMessaging[Any](Config(dsn=dsn, pool_size=4, tracing=True)) as other:
            [traced_id] = await other.one_way.send("alice", "bob", {"n": 2}, metadata={"k": 2})
        assert TRACE_KEY in await stored_metadata(am, traced_id)
        await inbox.count(3)  # woken by the other runtime's NOTIFY, read from the database
        assert inbox.handled[2][1].metadata == {"k": 2}
        [received] = [m for m in await am.one_way.get_received_messages("bob") if m.id == traced_id]
        assert received.metadata == {"k": 2}
    assert sorted(s.name for s in spans()) == ["send bob", "the application's span", "writer commit"]  # the other's


async def _say(turn: Turn[Any]) -> Any:
    return {"said": turn.agent}


async def test_the_trace_key_is_reserved_in_message_metadata(traced: AM) -> None:
    for send in (
        lambda: traced.one_way.send("alice", "bob", {"n": 1}, metadata={TRACE_KEY: {"traceparent": "x"}}),
        lambda: traced.conversation.send("alice", "bob", {"n": 1}, metadata={TRACE_KEY: 1, "k": 2}),
    ):
        with pytest.raises(InvalidArgument, match="reserved"):
            await send()
    assert await traced.one_way.get_received_messages("bob") == []


def test_tracing_on_without_opentelemetry_is_a_configuration_error() -> None:
    """Without the [otel] extra, a runtime with tracing on refuses to open, naming the extra (before connecting)."""
    program = (
        "import sys; sys.modules['opentelemetry'] = None\n"
        "import anyio\n"
        "from agent_messaging import AgentMessaging, Config, ConfigurationError\n"
        "async def main():\n"
        "    try:\n"
        "        async with AgentMessaging(Config(dsn='postgresql://nobody@127.0.0.1:1/none', tracing=True)):\n"
        "            pass\n"
        "    except ConfigurationError as exc:\n"
        "        print(exc)\n"
        "anyio.run(main)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MESSAGING_")}
    result = subprocess.run(
        [sys.executable, "-c", program],
        capture_output=True,
        text=True,
        timeout=60,
        env={**env, "PYTHONPATH": str(repo_root() / "src")},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'agent-messaging[otel]'" in result.stdout
    assert "AGENT_MESSAGING_TRACING=false" in result.stdout
