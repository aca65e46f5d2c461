"""Run asyncio-only code (pydantic-ai) from any anyio backend, with calls back into the caller's event loop.

On asyncio, :func:`run_on_asyncio` runs ``main(portal)`` in place and the
portal awaits calls directly. On trio, ``main`` runs on a fresh asyncio loop
in a worker thread; each ``await portal.call(fn, ...)`` made there runs
``fn`` as a task of the caller's task group on trio (with the caller's
context variables, so deadlock detection still knows which agent is
waiting) and hands its result or exception back to the asyncio side.

Cancellation crosses both ways: when the trio caller is cancelled, the
asyncio task is cancelled and the thread ends; a call cancelled on the
asyncio side cancels its trio task. Nothing outlives the caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import threading
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import anyio
import sniffio
from anyio.abc import TaskGroup

__all__ = ["Portal", "run_on_asyncio"]

R = TypeVar("R")


class Portal(Protocol):
    """What asyncio-side code uses to run a coroutine function of the caller's event loop."""

    async def call(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        """``await fn(*args)`` on the caller's event loop."""
        ...


class _InPlace:
    async def call(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        return await fn(*args)


async def run_on_asyncio(main: Callable[[Portal], Awaitable[R]]) -> R:
    """``await main(portal)`` on an asyncio loop: in place on asyncio, in a worker thread's loop on trio."""
    if sniffio.current_async_library() != "trio":
        return await main(_InPlace())
    return await _on_trio(main)


class _TrioPortal:
    """Runs calls from the worker thread's asyncio loop as tasks of the trio caller's task group."""

    def __init__(self, tg: TaskGroup, context: contextvars.Context) -> None:
        self._tg = tg
        self._context = context
        self._token = anyio.lowlevel.current_token()

    async def call(self, fn: Callable[..., Awaitable[R]], *args: Any) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        scopes: list[anyio.CancelScope] = []

        def start() -> None:  # on trio
            self._context.run(self._tg.start_soon, self._run, fn, args, loop, future, scopes)

        anyio.from_thread.run_sync(start, token=self._token)
        try:
            return await future
        except asyncio.CancelledError:
            if scopes:
                with contextlib.suppress(anyio.RunFinishedError):
                    anyio.from_thread.run_sync(scopes[0].cancel, token=self._token)
            raise

    @staticmethod
    async def _run(
        fn: Callable[..., Awaitable[R]],
        args: tuple[Any, ...],
        loop: asyncio.AbstractEventLoop,
        future: asyncio.Future[R],
        scopes: list[anyio.CancelScope],
    ) -> None:
        with anyio.CancelScope() as scope:
            scopes.append(scope)
            try:
                result = await fn(*args)
            except Exception as exc:
                _settle(loop, future, error=exc)
                return
            except BaseException:
                _settle(loop, future, error=RuntimeError("the call was cancelled"))
                raise
            _settle(loop, future, result=result)
        if scope.cancelled_caught:
            _settle(loop, future, error=RuntimeError("the call was cancelled"))


def _settle(
    loop: asyncio.AbstractEventLoop, future: asyncio.Future[Any], *, result: Any = None, error: Any = None
) -> None:
    def settle() -> None:
        if not future.done():
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)

    with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits any more
        loop.call_soon_threadsafe(settle)


class _Thread:
    """The worker thread's asyncio run, cancellable from the trio side."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task[Any] | None = None
        self._cancelled = False

    def run(
        self, main: Callable[[Portal], Awaitable[R]], portal: Portal
    ) -> tuple[bool, R | None, BaseException | None]:
        """(cancelled, result, error) of ``main(portal)`` on a fresh asyncio loop (runs in the worker thread)."""

        async def body() -> R:
            with self._lock:
                if self._cancelled:
                    raise asyncio.CancelledError
                self._loop, self._task = asyncio.get_running_loop(), asyncio.current_task()
            return await main(portal)

        try:
            return False, asyncio.run(body()), None
        except asyncio.CancelledError:
            return True, None, None
        except Exception as exc:
            return False, None, exc

    def cancel(self) -> None:
        with self._lock:
            self._cancelled = True
            if self._loop is not None and self._task is not None:
                with contextlib.suppress(RuntimeError):  # the loop has closed already
                    self._loop.call_soon_threadsafe(self._task.cancel)


async def _on_trio(main: Callable[[Portal], Awaitable[R]]) -> R:
    thread = _Thread()

    async def cancel_when_cancelled() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            thread.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(cancel_when_cancelled)
        portal = _TrioPortal(tg, contextvars.copy_context())
        cancelled, result, error = await anyio.to_thread.run_sync(thread.run, main, portal)
        tg.cancel_scope.cancel()
    if cancelled:
        await anyio.lowlevel.checkpoint()  # raises the caller's cancellation, which cancelled the run
        raise RuntimeError("the asyncio run was cancelled")
    if error is not None:
        raise error
    return result  # type: ignore[return-value]
