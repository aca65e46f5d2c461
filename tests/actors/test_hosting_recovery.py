"""Recovery across runtimes, agents that fail for good, and a sender process killed with SIGKILL."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import anyio
from anyio.streams.buffered import BufferedByteReceiveStream
from structlog.testing import capture_logs

from agent_messaging import AgentMessaging, Config
from agent_messaging._app import internals
from agent_messaging.actors.agent import MessageContext
from agent_messaging.models import AgentStatus
from tests._helpers import eventually
from tests.conftest import repo_root


async def setup_agents(config: Config, *names: str) -> None:
    """Register organization 'acme' and ``names`` through a short-lived runtime."""
    async with AgentMessaging[Any](config) as am:
        await am.register_organization("acme", "Acme")
        for name in names:
            await am.register_agent(name, "acme", name.title())


async def test_unhandled_messages_are_recovered_in_order_before_new_ones(config: Config) -> None:
    await setup_agents(config, "alice", "bob")
    async with AgentMessaging[Any](config) as first:
        sent = [(await first.one_way.send("alice", "bob", {"i": i}))[0] for i in range(50)]
        assert len(await first.one_way.get_received_messages("bob", include_read=False)) == 50

    handled: list[tuple[uuid.UUID, int]] = []
    second = AgentMessaging[Any](config)

    @second.register_handler("bob")
    async def bob(message: Any, ctx: MessageContext[Any]) -> None:
        handled.append((ctx.message_id, message["i"]))

    async with second:
        [new] = await second.one_way.send("alice", "bob", {"i": 50})
        await eventually(lambda: len(handled) >= 51)
        await anyio.sleep(0.05)  # nothing more arrives: each message once
    assert handled == [*zip(sent, range(50), strict=True), (new, 50)]

    async with AgentMessaging[Any](config) as third:  # the handled marks were flushed on close
        assert await third.one_way.get_received_messages("bob", include_read=False) == []
        assert await internals(third).database.fetch_val("SELECT count(*) FROM messages WHERE handled_at IS NULL") == 0


async def test_agent_past_its_restart_intensity_is_failed_and_others_keep_working(dsn: str) -> None:
    config = Config(
        dsn=dsn,
        pool_size=4,
        connect_timeout=5,
        agent_max_restarts=2,
        max_attempts=100,
        restart_backoff_initial=0.001,
    )
    calls: list[int] = []
    carol_seen: list[int] = []
    with capture_logs() as logs:
        async with AgentMessaging[Any](config) as am:
            org = await am.register_organization("acme", "Acme")
            for name in ("alice", "bob", "carol"):
                await am.register_agent(name, org.external_id, name.title())

            @am.register_handler("bob")
            async def bob(message: Any, ctx: MessageContext[Any]) -> None:
                calls.append(ctx.attempt)
                raise RuntimeError("bob is broken")

            @am.register_handler("carol")
            async def carol(message: Any, ctx: MessageContext[Any]) -> None:
                carol_seen.append(message)

            assert (await am.get_agent("bob")).status == AgentStatus.ACTIVE
            await am.one_way.send("alice", ["bob", "carol"], 0)

            async def bob_failed() -> bool:
                return (await am.get_agent("bob")).status == AgentStatus.FAILED

            await eventually(bob_failed)
            assert calls == [1, 2, 3]  # the first run plus agent_max_restarts restarts
            for i in range(1, 6):
                await am.one_way.send("alice", ["bob", "carol"], i)
            await eventually(lambda: carol_seen == [0, 1, 2, 3, 4, 5])
            assert (await am.get_agent("carol")).status == AgentStatus.ACTIVE
            assert calls == [1, 2, 3]  # a failed agent is not fed any more
            assert await am.get_dead_letters() == []  # not dead-lettered: kept for when bob is fixed
            assert len(await am.one_way.get_received_messages("bob", include_read=False)) == 6
    failed = [e for e in logs if e["event"] == "agent.failed"]
    assert len(failed) == 1
    assert failed[0]["agent"] == "bob"
    assert failed[0]["log_level"] in ("warning", "error", "critical")
    assert "bob is broken" in failed[0]["error"]


async def test_sigkilled_sender_loses_no_acknowledged_message(
    config: Config, anyio_backend: str, tmp_path: Path
) -> None:
    await setup_agents(config, "alice", "bob")
    handled_file = tmp_path / "handled.txt"
    script = Path(__file__).with_name("_sender_proc.py")
    env = {**os.environ, "PYTHONPATH": str(repo_root() / "src")}
    acknowledged: list[uuid.UUID] = []
    async with await anyio.open_file(tmp_path / "stderr.txt", "wb") as stderr:
        process = await anyio.open_process(
            [sys.executable, str(script), config.dsn_value() or "", str(handled_file), anyio_backend],
            stdout=subprocess.PIPE,
            stderr=stderr.wrapped,
            env=env,
            cwd=repo_root(),
        )
        try:
            assert process.stdout is not None
            lines = BufferedByteReceiveStream(process.stdout)
            with anyio.fail_after(30):
                while len(acknowledged) < 100:
                    try:
                        line = await lines.receive_until(b"\n", 1000)
                    except (anyio.EndOfStream, anyio.IncompleteRead):
                        raise AssertionError(
                            "the sender process ended early:\n" + (tmp_path / "stderr.txt").read_text()
                        ) from None
                    if line.startswith(b"ACK "):
                        acknowledged.append(uuid.UUID(line[4:].decode()))
            os.kill(process.pid, signal.SIGKILL)
            with anyio.fail_after(10):
                while True:  # every ACK written before the kill counts as acknowledged
                    try:
                        line = await lines.receive_until(b"\n", 1000)
                    except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                        break
                    if line.startswith(b"ACK "):
                        acknowledged.append(uuid.UUID(line[4:].decode()))
                assert await process.wait() == -signal.SIGKILL
        finally:
            if process.returncode is None:
                process.kill()
                with anyio.CancelScope(shield=True):
                    await process.wait()
            await process.aclose()

    handled_before = set()
    if handled_file.exists():
        for word in handled_file.read_text().split("\n"):
            with contextlib.suppress(ValueError):  # a line cut short by the kill
                handled_before.add(uuid.UUID(word))
    pending = [mid for mid in acknowledged if mid not in handled_before]
    assert pending, "the kill left nothing in flight; the test proved nothing"

    handled_after: list[uuid.UUID] = []
    am = AgentMessaging[Any](config)

    @am.register_handler("bob")
    async def bob(message: Any, ctx: MessageContext[Any]) -> None:
        handled_after.append(ctx.message_id)

    async with am:
        await eventually(lambda: set(pending) <= set(handled_after), within=30)
    assert set(acknowledged) <= handled_before | set(handled_after)
    # and in the order they were sent
    assert [mid for mid in handled_after if mid in set(pending)] == pending
