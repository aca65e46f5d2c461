"""Messages in flight: the envelope handed to agent actors, and how one is written and read back."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from ..models import Agent, Message, MessageKind
from ..persistence.database import Row
from ..persistence.writer import Write, to_json
from ..runtime._services import Codec, Services

__all__ = ["MESSAGE_COLUMNS", "Envelope", "envelope_from_row", "fetch_messages", "insert_write", "new_envelope"]

T = TypeVar("T")

#: Columns selected for an envelope (join agents twice for the external ids).
MESSAGE_COLUMNS = """m.seq, m.id, m.kind, m.sender_id, m.recipient_id, s.external_id AS sender,
    r.external_id AS recipient, m.conversation_id, m.in_reply_to, m.payload, m.metadata, m.created_at,
    m.read_at, m.handled_at, m.attempts, m.reply_deadline, m.organization_id"""
MESSAGE_FROM = "messages m JOIN agents s ON s.id = m.sender_id JOIN agents r ON r.id = m.recipient_id"


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
    """A random (version 4) uuid without a system call per id (ids need uniqueness, not secrecy)."""
    return uuid.UUID(int=random.getrandbits(128) & _V4_MASK | _V4_BITS)


_V4_MASK = ~((0xF000 << 64) | (0xC000 << 48)) & ((1 << 128) - 1)
_V4_BITS = (0x4000 << 64) | (0x8000 << 48)


def new_envelope(
    kind: MessageKind,
    sender: Agent,
    recipient: Agent,
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


def insert_write(env: Envelope[Any]) -> Write:
    """The writer row that persists ``env``."""
    return Write(
        "message.insert",
        (
            env.id,
            env.organization_id,
            env.kind.value,
            env.sender_id,
            env.recipient_id,
            env.conversation_id,
            env.in_reply_to,
            env.payload_json,
            to_json(env.metadata),
            env.reply_deadline,
        ),
    )


def optional_uuid(value: Any) -> uuid.UUID | None:
    """A uuid column's value as a UUID (NULL stays None)."""
    if value is None:
        return None
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def envelope_from_row(codec: Codec[T], row: Row) -> Envelope[T]:
    """An envelope from a row selected with ``MESSAGE_COLUMNS``."""
    metadata = row["metadata"]
    return Envelope(
        id=uuid.UUID(str(row["id"])),
        kind=MessageKind(row["kind"]),
        sender=row["sender"],
        recipient=row["recipient"],
        sender_id=uuid.UUID(str(row["sender_id"])),
        recipient_id=uuid.UUID(str(row["recipient_id"])),
        organization_id=uuid.UUID(str(row["organization_id"])),
        payload=codec.decode(row["payload"]),
        metadata=dict(metadata) if isinstance(metadata, dict) else {},
        conversation_id=optional_uuid(row["conversation_id"]),
        in_reply_to=optional_uuid(row["in_reply_to"]),
        reply_deadline=row["reply_deadline"],
        created_at=row["created_at"],
        seq=row["seq"],
        attempts=row["attempts"],
        read_at=row["read_at"],
        handled_at=row["handled_at"],
    )


async def fetch_messages(
    services: Services[T], where: str, params: list[Any], *, order: str = "m.seq", limit: int = 100
) -> list[Envelope[T]]:
    """Envelopes matching a WHERE clause (parameters ``$1..``), ordered, limited."""
    rows = await services.db.fetch(
        f"SELECT {MESSAGE_COLUMNS} FROM {MESSAGE_FROM} WHERE {where} ORDER BY {order} LIMIT ${len(params) + 1}",
        [*params, int(limit)],
    )
    return [envelope_from_row(services.codec, row) for row in rows]


async def page_messages(
    services: Services[T], where: str, params: list[Any], *, limit: int, cursor: int | None, newest_first: bool
) -> list[Message[T]]:
    """One page of messages: newest first before ``cursor`` (a seq), or oldest first after it."""
    if cursor is not None:
        where += f" AND m.seq {'<' if newest_first else '>'} ${len(params) + 1}"
        params = [*params, cursor]
    order = "m.seq DESC" if newest_first else "m.seq"
    return [env.to_message() for env in await fetch_messages(services, where, params, order=order, limit=limit)]
