"""Messages in flight: the envelope handed to agent actors, and how one is written and read back."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Generic, TypeVar

from ..models import AgentInfo, Message, MessageKind
from ..persistence._rows import as_uuid, json_dict, optional_uuid, to_json
from ..persistence.database import Row
from ..persistence.store import messages as store
from ..persistence.writer import Write
from .services import Codec

__all__ = ["Envelope", "envelope_from_row", "insert_row", "insert_write", "messages_from_rows", "new_envelope"]

T = TypeVar("T")


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
        to_json(env.metadata),
        env.reply_deadline,
    )


def insert_write(env: Envelope[Any]) -> Write:
    """The writer row that persists ``env``."""
    return Write(store.INSERT, insert_row(env))


def envelope_from_row(codec: Codec[T], row: Row) -> Envelope[T]:
    """An envelope from a row selected with ``store.messages.MESSAGE_COLUMNS``.

    An error reply (a handler raised for a call) has no payload: ``payload`` is None and its
    ``metadata["error"]`` says what failed.
    """
    metadata = json_dict(row["metadata"])
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
    )


def messages_from_rows(codec: Codec[T], rows: list[Row]) -> list[Message[T]]:
    """Public ``Message`` models of message rows."""
    return [envelope_from_row(codec, row).to_message() for row in rows]
