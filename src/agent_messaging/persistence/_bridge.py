"""Run psqlpy coroutines from any anyio backend.

psqlpy needs a running asyncio loop. On asyncio we await it in place. On trio
one dedicated asyncio loop thread serves the whole runtime: a coroutine is
submitted with ``run_coroutine_threadsafe`` and its completion wakes the trio
task through the trio token, so no worker thread is held while a query waits.

Database work is never abandoned half-way: a caller cancelled mid-query waits
(shielded) for the query to finish, so its connection goes back to the pool
clean and no transaction is left open; then the cancellation proceeds. Queries
on the request path are short, so this delays a cancellation by at most one
query. This is the only module in the project that touches asyncio.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import anyio
import sniffio

R = TypeVar("R")

__all__ = ["Bridge", "open_bridge"]


class Bridge:
    """Runs coroutine functions on the loop that owns the psqlpy pool."""

    async def run(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        """Run ``fn(*args)`` on the psqlpy loop and return its result (shielded from cancellation)."""
        raise NotImplementedError

    async def aclose(self) -> None:
        """Stop the bridge (after every call has returned)."""

    def call_soon_in_caller(self, fn: Callable[[], None]) -> None:
        """From a callback on the psqlpy loop, schedule ``fn()`` on the runtime's event loop."""
        fn()


class _InPlaceBridge(Bridge):
    async def run(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        with anyio.CancelScope(shield=True):
            result = await fn(*args)
        await anyio.lowlevel.checkpoint_if_cancelled()
        return result


class _ThreadBridge(Bridge):
    def __init__(self) -> None:
        import trio

        self._trio = trio
        self._token = trio.lowlevel.current_trio_token()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="agent-messaging-psqlpy", daemon=True)
        self._thread.start()
        self._ready.wait()

    def _serve(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(self._ready.set)
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def run(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        async def call() -> R:
            return await fn(*args)

        future: Future[R] = asyncio.run_coroutine_threadsafe(call(), self._loop)
        done = self._trio.Event()
        future.add_done_callback(lambda _f: self._token.run_sync_soon(done.set))
        with anyio.CancelScope(shield=True):
            await done.wait()
        await anyio.lowlevel.checkpoint_if_cancelled()
        return future.result()

    def call_soon_in_caller(self, fn: Callable[[], None]) -> None:
        self._token.run_sync_soon(fn)

    async def aclose(self) -> None:
        # Let psqlpy's connection tasks wind down while the loop still runs: stopping the loop
        # under them left work that psqlpy's threads finished during interpreter shutdown,
        # aborting ~1 trio process in 10 with "PyGILState_Release" (0 in 100 with this pause).
        await self.run(asyncio.sleep, 0.05)
        self._loop.call_soon_threadsafe(self._loop.stop)
        await anyio.to_thread.run_sync(self._thread.join)


def open_bridge() -> Bridge:
    """Make the bridge for the current backend (call from inside the event loop)."""
    if sniffio.current_async_library() == "trio":
        return _ThreadBridge()
    return _InPlaceBridge()
