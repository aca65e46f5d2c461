"""Messages in flight: the envelope handed to agent actors, and how one is written and read back.

Reading back never lets one bad row hold up the others. A stored message the
runtime cannot decode (written by another client or an older version of the
message type) is :class:`Undecodable`: the unread-queue readers (claims and the
hosted agents' catch-up) dead-letter it with the reason and leave it unread, so
retrying its dead letter after a fix delivers it; the history reads leave it
out of the page (logged) and fill the page from the rows behind it.
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

import anyio
import structlog

from .._tracing import SYSTEM, TRACE_KEY, Carrier
from .._validation import storable_text
from ..models import AgentInfo, Message, MessageKind
from ..persistence._rows import as_uuid, json_dict, optional_uuid, to_json
from ..persistence.database import Database, Row
from ..persistence.store import messages as store
from ..persistence.writer import Write, Writer
from .services import Codec

__all__ = [
    "Envelope",
    "Undecodable",
    "dead_letter_undecodable",
    "decode_rows",
    "envelope_from_row",
    "insert_row",
    "insert_write",
    "new_envelope",
    "read_page",
    "send_attributes",
    "send_span_name",
]

T = TypeVar("T")
log = structlog.get_logger("agent_messaging.message")


@dataclass
class Envelope(Generic[T]):
    """One message as the runtime moves it: persisted first, then delivered."""

    id: uuid.UUID
    kind: MessageKind
    sender: str
    recipient: str
    sender_id: uuid.UUID
    recipient_id: uuid.UUID
    organization_id: uuid.UUID
    payload: T
    payload_json: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    conversation_id: uuid.UUID | None = None
    in_reply_to: uuid.UUID | None = None
    reply_deadline: datetime | None = None
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    seq: int = 0
    attempts: int = 0
    read_at: datetime | None = None
    handled_at: datetime | None = None
    trace: Carrier | None = None
    """The trace context it carries (stored in its metadata under ``TRACE_KEY``; never in ``metadata``)."""

    def to_message(self) -> Message[T]:
        """The public ``Message`` model of this envelope."""
        return Message[Any](
            id=self.id,
            seq=self.seq,
            kind=self.kind,
            sender=self.sender,
            recipient=self.recipient,
            payload=self.payload,
            metadata=self.metadata,
            conversation_id=self.conversation_id,
            in_reply_to=self.in_reply_to,
            created_at=self.created_at,
            read_at=self.read_at,
            handled_at=self.handled_at,
        )


def fast_uuid4() -> uuid.UUID:
    """A random (version 4) uuid without a system call per id (ids need uniqueness, not secrecy).

    Drawn from a generator of our own, seeded from the OS: a program that seeds the global ``random``
    (``random.seed(0)``, or a test framework such as hypothesis) would otherwise make every runtime
    draw the same ids, and the ``ON CONFLICT DO NOTHING`` of an acknowledged message's insert would
    silently drop it.
    """
    return uuid.UUID(int=_RANDOM.getrandbits(128) & _V4_MASK | _V4_BITS)


_RANDOM = random.Random()
os.register_at_fork(after_in_child=_RANDOM.seed)  # a forked child must not repeat its parent's ids


_V4_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_V4_BITS = (0x4000 << 64) | (0x8000 << 48)


def new_envelope(
    kind: MessageKind,
    sender: AgentInfo,
    recipient: AgentInfo,
    payload: T,
    payload_json: str,
    *,
    metadata: dict[str, Any] | None = None,
    conversation_id: uuid.UUID | None = None,
    in_reply_to: uuid.UUID | None = None,
    reply_deadline: datetime | None = None,
) -> Envelope[T]:
    """A fresh envelope (new id) for a validated payload."""
    return Envelope(
        id=fast_uuid4(),
        kind=kind,
        sender=sender.external_id,
        recipient=recipient.external_id,
        sender_id=sender.id,
        recipient_id=recipient.id,
        organization_id=sender.organization_id,
        payload=payload,
        payload_json=payload_json,
        metadata=metadata or {},
        conversation_id=conversation_id,
        in_reply_to=in_reply_to,
        reply_deadline=reply_deadline,
    )


def send_span_name(operation: str, envs: Sequence[Envelope[Any]]) -> str:
    """``send bob`` / ``reply alice``: the operation and the destination (just the operation for a fan-out)."""
    recipients = {env.recipient for env in envs}
    return f"{operation} {envs[0].recipient}" if len(recipients) == 1 else operation


def send_attributes(operation: str, envs: Sequence[Envelope[Any]]) -> dict[str, Any]:
    """The attributes of the span that sends ``envs`` (one message, or one to each of several agents)."""
    first = envs[0]
    attributes: dict[str, Any] = {
        "messaging.system": SYSTEM,
        "messaging.operation.type": "send",
        "messaging.operation.name": operation,
        "agent_messaging.sender": first.sender,
        "agent_messaging.message.kind": first.kind.value,
    }
    if len(envs) == 1:
        attributes["messaging.destination.name"] = first.recipient
        attributes["messaging.message.id"] = str(first.id)
    else:
        attributes["messaging.batch.message_count"] = len(envs)
        attributes["agent_messaging.recipients"] = [env.recipient for env in envs]
    if first.conversation_id is not None:
        attributes["messaging.message.conversation_id"] = str(first.conversation_id)
    if first.in_reply_to is not None:
        attributes["agent_messaging.in_reply_to"] = str(first.in_reply_to)
    return attributes


def insert_row(env: Envelope[Any]) -> tuple[Any, ...]:
    """The columns of ``messages.INSERT`` for ``env``."""
    return (
        env.id,
        env.organization_id,
        env.kind.value,
        env.sender_id,
        env.recipient_id,
        env.conversation_id,
        env.in_reply_to,
        env.payload_json,
        to_json(env.metadata if env.trace is None else {**env.metadata, TRACE_KEY: env.trace}),
        env.reply_deadline,
    )


def insert_write(env: Envelope[Any]) -> Write:
    """The writer row that persists ``env``."""
    return Write(store.INSERT, insert_row(env))


def envelope_from_row(codec: Codec[T], row: Row) -> Envelope[T]:
    """An envelope from a row selected with ``store.messages.MESSAGE_COLUMNS``.

    An error reply (a handler raised for a call) has no payload: ``payload`` is None and its
    ``metadata["error"]`` says what failed. A trace context stored with the message moves from its
    metadata to ``trace``.
    """
    metadata = json_dict(row["metadata"])
    trace = metadata.pop(TRACE_KEY, None)  # written by a runtime with tracing on: not the user's
    kind = MessageKind(row["kind"])
    error_reply = kind is MessageKind.REPLY and "error" in metadata
    return Envelope(
        id=as_uuid(row["id"]),
        kind=kind,
        sender=row["sender"],
        recipient=row["recipient"],
        sender_id=as_uuid(row["sender_id"]),
        recipient_id=as_uuid(row["recipient_id"]),
        organization_id=as_uuid(row["organization_id"]),
        payload=None if error_reply else codec.decode(row["payload"]),  # type: ignore[arg-type]
        metadata=metadata,
        conversation_id=optional_uuid(row["conversation_id"]),
        in_reply_to=optional_uuid(row["in_reply_to"]),
        reply_deadline=row["reply_deadline"],
        created_at=row["created_at"],
        seq=row["seq"],
        attempts=row["attempts"],
        read_at=row["read_at"],
        handled_at=row["handled_at"],
        trace=trace if isinstance(trace, dict) else None,
    )


@dataclass(frozen=True)
class Undecodable:
    """A stored message the runtime cannot decode, and why."""

    id: uuid.UUID
    recipient_id: uuid.UUID
    seq: int
    attempts: int
    reason: str


def decode_rows(codec: Codec[T], rows: list[Row]) -> tuple[list[Envelope[T]], list[Undecodable]]:
    """The envelopes of the rows that decode, in order, and the rows that do not."""
    envelopes: list[Envelope[T]] = []
    bad: list[Undecodable] = []
    for row in rows:
        try:
            envelopes.append(envelope_from_row(codec, row))
        except Exception as exc:  # any column of it: one row never holds up the others
            reason = storable_text(f"the stored message cannot be decoded: {exc}")
            message_id, recipient_id = as_uuid(row["id"]), as_uuid(row["recipient_id"])
            bad.append(Undecodable(message_id, recipient_id, row["seq"], row["attempts"], reason))
    return envelopes, bad


async def dead_letter_undecodable(writer: Writer, bad: list[Undecodable]) -> None:
    """Dead-letter undecodable messages with their reason, leaving them unread (shielded: a claim that
    took them must give them up). A failed write is logged: the next read of the queue finds them again."""
    for item in bad:
        log.warning("message.undecodable", message_id=str(item.id), seq=item.seq, error=item.reason)
    writes = [
        write
        for item in bad
        for write in (
            Write(store.UNDECODABLE, (item.id,)),
            Write(store.DEAD_LETTER, (item.id, item.recipient_id, item.attempts, item.reason)),
        )
    ]
    with anyio.CancelScope(shield=True):
        try:
            await writer.write(writes)
        except Exception as exc:
            log.warning("message.undecodable_not_dead_lettered", count=len(bad), error=repr(exc))


async def read_page(
    codec: Codec[T], db: Database, *, limit: int, cursor: int | None, newest_first: bool, **where: Any
) -> list[Message[T]]:
    """One page of messages (``store.messages.page``: newest first before ``cursor``, or oldest first after it).

    Rows that cannot be decoded are left out (logged) and the page is filled from the rows behind them,
    so a page shorter than ``limit`` still means there is nothing more.
    """
    messages: list[Message[T]] = []
    while True:
        wanted = limit - len(messages)
        rows = await store.page(db, **where, limit=wanted, cursor=cursor, newest_first=newest_first)
        envelopes, bad = decode_rows(codec, rows)
        messages.extend(env.to_message() for env in envelopes)
        for item in bad:
            log.warning("message.undecodable_skipped", message_id=str(item.id), seq=item.seq, error=item.reason)
        if not bad or len(rows) < wanted:
            return messages
        cursor = int(rows[-1]["seq"])
