"""One trace across three processes: a call from this process (A) to bob, hosted by an ``agent-messaging run``
child (B), whose handler calls carol, hosted by another child (C).

This process exports its spans to the SDK's in-memory exporter; each child writes its own to a JSON-lines
file (``AM_TRACE_FILE``, see ``tests/multiprocess/_app.py``). The trace context travels inside the messages
(their stored metadata), so the spans of the three processes make one tree.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

from agent_messaging import AgentMessaging, Config
from tests._helpers import eventually
from tests._tracing import Record, finished, memory_exporter, named, one, read_records, tree
from tests.multiprocess._app import setup

SHOWN = ("messaging.destination.name", "agent_messaging.sender", "agent_messaging.message.kind")


async def test_a_call_through_three_processes_is_one_trace(
    dsn: str, run_child: Callable[..., Any], tmp_path: Path
) -> None:
    exporter = memory_exporter()
    exporter.clear()
    b_file, c_file = tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    b = await run_child(host="bob", AM_TRACE_FILE=str(b_file), AGENT_MESSAGING_TRACING="true")
    c = await run_child(host="carol", AM_TRACE_FILE=str(c_file), AGENT_MESSAGING_TRACING="true")
    config = Config(dsn=dsn, pool_size=5, poll_interval=0.2, connect_timeout=10, tracing=True)
    async with AgentMessaging[Any](config) as am:
        await setup(am)
        exporter.clear()  # only the call's spans
        with anyio.fail_after(30):
            reply = await am.conversation.send_and_wait(
                "user", "bob", {"op": "call", "to": "carol", "then": {"op": "echo", "text": "hi"}}
            )
    assert reply == {"echo": "hi", "by": "carol", "pid": c.proc.pid}

    # the children end their spans just after the replies they wrote committed: wait for the last ones
    async def all_ended() -> bool:
        return bool(named(read_records(b_file), "reply user")) and bool(named(read_records(c_file), "reply bob"))

    await eventually(all_ended, 30)
    a_spans = finished(f"pid {os.getpid()}")
    b_spans, c_spans = read_records(b_file), read_records(c_file)
    spans = a_spans + b_spans + c_spans
    print("\n" + tree(spans, SHOWN))

    assert {s.process for s in a_spans} == {f"pid {os.getpid()}"}
    assert {s.process for s in b_spans} == {f"pid {b.proc.pid}"}
    assert {s.process for s in c_spans} == {f"pid {c.proc.pid}"}
    # A: the caller's round trip, and the request it sent
    call_bob, send_bob = one(a_spans, "call bob"), one(a_spans, "send bob")
    assert call_bob.parent_id is None
    assert send_bob.parent_id == call_bob.span_id
    # B: bob handles the request as a child of A's send, calls carol from the handler, and replies to user
    # (carol's reply goes to the waiting call only, never to bob's handler: one "process bob")
    process_bob = one(b_spans, "process bob")
    assert process_bob.parent_id == send_bob.span_id
    call_carol, send_carol = one(b_spans, "call carol"), one(b_spans, "send carol")
    assert call_carol.parent_id == process_bob.span_id
    assert send_carol.parent_id == call_carol.span_id
    assert one(b_spans, "reply user").parent_id == process_bob.span_id  # the handler's return value
    # C: carol handles B's request and replies to bob
    process_carol = one(requests(c_spans), "process carol")
    assert process_carol.parent_id == send_carol.span_id
    assert one(c_spans, "reply bob").parent_id == process_carol.span_id
    # one trace, every span in it, across the three processes (the writers' commits too: one unit each)
    assert {s.trace_id for s in spans} == {call_bob.trace_id}
    commits = named(spans, "writer commit")
    assert {s.process for s in commits} == {s.process for s in spans}
    ids = {s.span_id for s in spans}
    assert all(s.parent_id in ids for s in spans if s is not call_bob)
    # the messaging conventions' attributes travel with them
    for extra in named(b_spans, "process bob"):
        if extra is not process_bob:
            assert extra.attributes["agent_messaging.message.kind"] == "reply"
            assert extra.parent_id == one(c_spans, "reply bob").span_id
    _messaging(send_bob, "send", "bob", "user")
    _messaging(process_bob, "process", "bob", "user")
    _messaging(send_carol, "send", "carol", "bob")
    _messaging(process_carol, "process", "carol", "bob")
    assert process_bob.attributes["messaging.message.id"] == send_bob.attributes["messaging.message.id"]
    assert process_carol.attributes["messaging.message.id"] == send_carol.attributes["messaging.message.id"]
    reply_user = one(b_spans, "reply user")
    assert call_bob.attributes["agent_messaging.reply.id"] == reply_user.attributes["messaging.message.id"]
    assert all(s.status != "ERROR" for s in spans)


async def test_a_run_child_exports_its_batched_spans_when_terminated(
    dsn: str, run_child: Callable[..., Any], tmp_path: Path
) -> None:
    """``agent-messaging run`` shuts the TracerProvider down at exit: spans a ``BatchSpanProcessor`` still holds
    (here it would export them after a minute) are exported on SIGTERM."""
    spans_file = tmp_path / "b.jsonl"
    tracing = {"AGENT_MESSAGING_TRACING": "true", "OTEL_BSP_SCHEDULE_DELAY": "60000"}
    b = await run_child(host="bob", AM_TRACE_FILE=str(spans_file), AM_TRACE_BATCH="1", **tracing)
    config = Config(dsn=dsn, pool_size=5, poll_interval=0.2, connect_timeout=10, tracing=True)
    async with AgentMessaging[Any](config) as am:
        await setup(am)
        with anyio.fail_after(30):
            await am.conversation.send_and_wait("user", "bob", {"op": "echo", "text": "hi"})
    assert read_records(spans_file) == []  # still in the processor's queue
    b.proc.send_signal(signal.SIGTERM)
    assert await anyio.to_thread.run_sync(b.proc.wait, 30) == 0
    assert {s.name for s in read_records(spans_file)} >= {"process bob", "reply user"}


def requests(spans: list[Record]) -> list[Record]:
    """The spans that are not about a reply."""
    return [s for s in spans if s.attributes.get("agent_messaging.message.kind") != "reply"]


def _messaging(span: Record, operation: str, destination: str, sender: str) -> None:
    kind = {"send": "PRODUCER", "process": "CONSUMER"}[operation]
    assert span.kind == kind
    assert span.attributes["messaging.system"] == "agent_messaging"
    assert span.attributes["messaging.operation.type"] == operation
    assert span.attributes["messaging.destination.name"] == destination
    assert span.attributes["agent_messaging.sender"] == sender
    assert span.attributes["agent_messaging.message.kind"] == "request"
    assert "messaging.message.conversation_id" in span.attributes
