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

psqlpy's Rust threads can still wake a finished query's waker (taking the GIL)
a few milliseconds after the query returned. If that lands while the
interpreter is finalizing, CPython aborts the process ("PyGILState_Release:
thread state must be current"). So every call records when it finished, and an
``atexit`` hook (atexit runs before finalization begins) waits until
:data:`EXIT_QUIET_PERIOD` has passed since the last one: a script that exits
right after closing its runtime waits at most that long, a process idle for
longer does not wait at all.
"""

from __future__ import annotations

import asyncio
import atexit
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import Future
from typing import Any, TypeVar

import anyio
import sniffio

R = TypeVar("R")

__all__ = ["EXIT_QUIET_PERIOD", "Bridge", "open_bridge"]

EXIT_QUIET_PERIOD = 0.2
"""Seconds the interpreter waits at exit after the last psqlpy call finished."""


class _ExitQuiet:
    """When psqlpy was last used, and the atexit hook that lets its threads settle before finalization."""

    def __init__(self) -> None:
        self.last = 0.0
        self._registered = False

    def touch(self) -> None:
        self.last = time.monotonic()

    def register(self) -> None:
        if not self._registered:
            self._registered = True
            atexit.register(self.wait)

    def wait(self) -> None:
        time.sleep(max(0.0, self.last + EXIT_QUIET_PERIOD - time.monotonic()))


_exit_quiet = _ExitQuiet()


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
            try:
                result = await fn(*args)
            finally:
                _exit_quiet.touch()
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
        _exit_quiet.touch()
        await anyio.lowlevel.checkpoint_if_cancelled()
        return future.result()

    def call_soon_in_caller(self, fn: Callable[[], None]) -> None:
        self._token.run_sync_soon(fn)

    async def aclose(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        await anyio.to_thread.run_sync(self._thread.join)


def open_bridge() -> Bridge:
    """Make the bridge for the current backend (call from inside the event loop)."""
    _exit_quiet.register()
    if sniffio.current_async_library() == "trio":
        return _ThreadBridge()
    return _InPlaceBridge()
