"""An actor's mailbox: a bounded anyio memory object stream with actor-level errors.

``send`` waits while the mailbox is full (backpressure); ``send_nowait`` raises
:class:`~agent_messaging.errors.MailboxFull` instead. Sending to a closed
mailbox raises :class:`~agent_messaging.errors.ActorStopped`.

Closing happens in two steps so that an actor can stop gracefully:
``close_intake()`` refuses new messages but lets the receiver drain what is
queued (``receive`` then raises :class:`anyio.EndOfStream`); ``close()`` closes
both ends.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Generic, TypeVar

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..errors import ActorStopped, InvalidArgument, MailboxFull

__all__ = ["Mailbox", "MailboxStatistics"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class MailboxStatistics:
    """A snapshot of a mailbox, as returned by :meth:`Mailbox.statistics`."""

    capacity: int
    """How many messages the mailbox holds before senders wait."""
    queued: int
    """Messages waiting in the buffer."""
    waiting_senders: int
    """Tasks blocked in ``send`` because the mailbox is full."""
    waiting_receivers: int
    """Tasks blocked in ``receive`` because the mailbox is empty."""
    accepting: bool
    """``False`` once the intake is closed."""


_FAST_RECEIVES = 32


class Mailbox(Generic[T]):
    """A bounded FIFO of messages for one owner (an actor), built on an anyio memory stream.

    ``owner`` names the actor in the errors the mailbox raises; ``capacity``
    (at least 1) is how many messages it buffers before ``send`` waits.
    """

    __slots__ = ("_capacity", "_fast", "_owner", "_receive", "_send")

    def __init__(self, owner: str, capacity: int) -> None:
        if isinstance(capacity, bool) or not isinstance(capacity, int) or capacity < 1:
            raise InvalidArgument(f"mailbox capacity of {owner!r} must be an integer >= 1, got {capacity!r}")
        self._owner = owner
        self._capacity = capacity
        self._fast = 0
        send, receive = anyio.create_memory_object_stream[T](capacity)
        self._send: MemoryObjectSendStream[T] = send
        self._receive: MemoryObjectReceiveStream[T] = receive

    @property
    def owner(self) -> str:
        """The name of the actor this mailbox belongs to."""
        return self._owner

    @property
    def capacity(self) -> int:
        """How many messages the mailbox buffers before ``send`` waits."""
        return self._capacity

    async def send(self, item: T) -> None:
        """Queue ``item``, waiting while the mailbox is full.

        :raises ActorStopped: the intake is closed (also if it closes while waiting).
        """
        try:
            # fast path: room in the buffer (or a waiting receiver) needs no scheduling round
            self._send.send_nowait(item)
        except anyio.WouldBlock:
            try:
                await self._send.send(item)
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                raise ActorStopped(self._owner) from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ActorStopped(self._owner) from None

    def send_nowait(self, item: T) -> None:
        """Queue ``item`` without waiting.

        :raises MailboxFull: the mailbox holds ``capacity`` messages already.
        :raises ActorStopped: the intake is closed.
        """
        try:
            self._send.send_nowait(item)
        except anyio.WouldBlock:
            raise MailboxFull(self._owner, self._capacity) from None
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            raise ActorStopped(self._owner) from None

    async def receive(self) -> T:
        """Take the oldest message, waiting while the mailbox is empty.

        :raises anyio.EndOfStream: the intake is closed and nothing is left.
        :raises anyio.ClosedResourceError: the mailbox is closed.
        """
        self._fast += 1
        if self._fast < _FAST_RECEIVES:
            try:
                return self._receive.receive_nowait()
            except anyio.WouldBlock:
                pass
        # an empty mailbox, or every _FAST_RECEIVES messages: a real checkpoint (fairness, cancellation)
        self._fast = 0
        return await self._receive.receive()

    def receive_nowait(self) -> T:
        """Take the oldest message without waiting.

        :raises anyio.WouldBlock: the mailbox is empty.
        :raises anyio.EndOfStream: the intake is closed and nothing is left.
        :raises anyio.ClosedResourceError: the mailbox is closed.
        """
        return self._receive.receive_nowait()

    def close_intake(self) -> None:
        """Refuse new messages; queued ones can still be received. Idempotent."""
        self._send.close()

    def close(self) -> None:
        """Close both ends: senders get ``ActorStopped``, queued messages are dropped. Idempotent."""
        self._send.close()
        self._receive.close()

    def statistics(self) -> MailboxStatistics:
        """Return a snapshot of the mailbox's state."""
        stats = self._receive.statistics()
        return MailboxStatistics(
            capacity=self._capacity,
            queued=stats.current_buffer_used,
            waiting_senders=stats.tasks_waiting_send,
            waiting_receivers=stats.tasks_waiting_receive,
            accepting=stats.open_send_streams > 0,
        )
