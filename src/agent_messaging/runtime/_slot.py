"""The one-shot reply slot of the kernel: set once, awaited by whoever is waiting for the answer.

An ``ask`` waits on one; a meeting participant blocked until its turn waits on
one; a ``send_and_wait`` caller waits on one (a subclass that can also be
*claimed* while a reply is being committed). The first :meth:`Slot.resolve` or
:meth:`Slot.fail` wins; later ones are ignored. Waiting holds nothing but an
event, so thousands of waiters cost thousands of small objects, not tasks.
"""

from __future__ import annotations

from typing import Generic, TypeVar

import anyio

__all__ = ["Slot"]

T = TypeVar("T")


class Slot(Generic[T]):
    """A value or an error, handed over once; or a wake-up of the waiter with nothing handed over."""

    __slots__ = ("_done", "_error", "_handed", "_value")

    def __init__(self) -> None:
        self._done = anyio.Event()  # set by a hand-over or by wake()
        self._handed = False
        self._value: T | None = None
        self._error: BaseException | None = None

    @property
    def done(self) -> bool:
        """Whether a value or an error was handed over."""
        return self._handed

    @property
    def error(self) -> BaseException | None:
        """The error handed over, if any."""
        return self._error

    def resolve(self, value: T) -> None:
        """Hand over ``value`` (ignored if the slot is already done)."""
        if not self._handed:
            self._handed, self._value = True, value
            self._done.set()

    def fail(self, error: BaseException) -> None:
        """Hand over ``error`` (ignored if the slot is already done)."""
        if not self._handed:
            self._handed, self._error = True, error
            self._done.set()

    def wake(self) -> None:
        """Wake the waiter with nothing handed over (a deadline passed, say); a later hand-over still counts."""
        self._done.set()

    async def wait_done(self) -> None:
        """Wait until the slot is done or woken, without raising its error."""
        await self._done.wait()

    def result(self) -> T:
        """The value of a done slot, or its error raised."""
        if not self._handed:
            raise RuntimeError("nothing was handed over to this slot")
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]  # None is a valid T for Slot[T | None]

    async def wait(self) -> T:
        """Wait for the value (the caller's cancel scope bounds the wait); raises the handed-over error."""
        await self._done.wait()
        return self.result()
