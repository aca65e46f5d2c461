"""``agent-messaging demo``: the whole product in one short scripted scene.

With nothing configured it runs on the embedded PostgreSQL in
``.agent-messaging/pgdata`` under the working directory (or ``--data-dir``);
``--dsn`` / ``AGENT_MESSAGING_DSN`` point it at any PostgreSQL. The scene uses
all four patterns:

1. a one-way **note** to two hosted agents (their handlers run it);
2. a **call** (``send_and_wait``) to a hosted agent whose handler's return value is the reply;
3. a **chat**: lines sent without waiting, read from the unread queue
   (``get_unread_messages``) and waited for (``wait_for_message``);
4. a **meeting** of hosted agents (``on_turn``) in which one agent lets its
   turn run out, so the floor moves on by itself.

It prints a live transcript (rich on a terminal, plain text when piped) and a
summary. The organization and agents are reused across runs, so a second run
reports what the earlier ones left in the database. Ctrl-C stops the scene,
closes the runtime (stopping the embedded server it started) and exits 130; a
second Ctrl-C exits at once, still stopping that server.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import anyio
import typer

from .._app import AgentMessaging, internals
from ..actors.agent import Agent, MessageContext
from ..config import Config
from ..models import MeetingEvent, MeetingEventType, Turn
from ..persistence.store import messages as message_store
from ._common import fail, run_async, settings, watch_signals, where

__all__ = ["demo"]

ORG = "demo"
LEAD = "alice"
NOTE_TAKERS = ("ledger", "oracle")
CHAT_PARTNER = "bob"
PANEL = ("planner", "critic", "sleeper")
TURN_SECONDS = 1.0
ANSWERS = {
    "What does a call look like?": "Like this: you asked, I answered, and you waited for me.",
}


# --------------------------------------------------------------------------- output


class Transcript:
    """Lines of the scene: rich markup on a terminal, plain text when piped."""

    def __init__(self) -> None:
        self.rich = sys.stdout.isatty()
        self._console: Any = None
        if self.rich:
            from rich.console import Console

            self._console = Console(highlight=False)

    def heading(self, text: str) -> None:
        """A section heading."""
        if self.rich:
            self._console.print(f"\n[bold cyan]{text}[/]")
        else:
            print(f"\n== {text}", flush=True)

    def line(self, who: str, text: str, note: str = "") -> None:
        """One line of the transcript: who, what, and a dim note."""
        if self.rich:
            from rich.markup import escape

            tail = f"  [dim]{escape(note)}[/]" if note else ""
            self._console.print(f"  [bold]{escape(who):<18}[/] {escape(text)}{tail}")
        else:
            tail = f"  ({note})" if note else ""
            print(f"  {who:<18} {text}{tail}", flush=True)

    def info(self, text: str) -> None:
        """A plain informational line."""
        if self.rich:
            from rich.markup import escape

            self._console.print(escape(text))
        else:
            print(text, flush=True)


@dataclass
class Stats:
    """What this run did, for the summary."""

    started: float = field(default_factory=time.perf_counter)
    timings: dict[str, float] = field(default_factory=dict)
    notes_handled: int = 0
    meeting_events: int = 0
    timeouts: int = 0


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"


# --------------------------------------------------------------------------- the cast


def _build(config: Config, out: Transcript, stats: Stats) -> tuple[AgentMessaging[str], anyio.Event, anyio.Event]:
    """The runtime with the demo's hosted agents and meeting event printer."""
    am = AgentMessaging[str](config)
    notes_done = anyio.Event()
    meeting_over = anyio.Event()

    @am.register_handler(*NOTE_TAKERS)
    async def take_note(message: str, ctx: MessageContext[str]) -> str | None:
        if ctx.kind.value == "request":  # the call of scene 2
            return ANSWERS.get(message, "I don't know that one.")
        stats.notes_handled += 1
        out.line(f"{ctx.agent} (handler)", f"got the note {message!r} from {ctx.sender}")
        if stats.notes_handled >= len(NOTE_TAKERS):
            notes_done.set()
        return None

    class Planner(Agent[str]):
        async def on_turn(self, turn: Turn[str]) -> str | None:
            return "Plan: ship the release on Friday, with the migration guide."

    class Critic(Agent[str]):
        async def on_turn(self, turn: Turn[str]) -> str | None:
            heard = [e.agent for e in turn.messages if e.type is MeetingEventType.AGENT_SPOKE]
            return f"Agreed, after hearing {', '.join(a for a in heard if a) or 'nobody'}: add a rollback plan."

    class Sleeper(Agent[str]):
        async def on_turn(self, turn: Turn[str]) -> str | None:
            await anyio.sleep(TURN_SECONDS * 10)  # dozes off: the turn timer moves the floor on
            return "...sorry, what did I miss?"

    for name, cls in zip(PANEL, (Planner, Critic, Sleeper), strict=True):
        am.host(name, cls)

    @am.on_meeting_event()
    async def show(event: MeetingEvent[str]) -> None:
        stats.meeting_events += 1
        who = event.agent or "meeting"
        if event.type is MeetingEventType.MEETING_STARTED:
            return
        if event.type is MeetingEventType.AGENT_SPOKE:
            note = "opening" if event.turn_number == 0 else f"turn {event.turn_number}"
            out.line(who, str(event.message), note)
        elif event.type is MeetingEventType.AGENT_TIMED_OUT:
            stats.timeouts += 1
            out.line(who, f"let the turn run out ({TURN_SECONDS:g} s): the floor moves on", "agent_timed_out")
        elif event.type is MeetingEventType.MEETING_ENDED:
            closing = f": {event.message}" if event.message else ""
            out.line(who, f"meeting ended{closing}", "meeting_ended")
            meeting_over.set()

    return am, notes_done, meeting_over


async def _ensure_cast(am: AgentMessaging[str]) -> None:
    await am.register_organization(ORG, "Demo Company", exist_ok=True)
    for name in (LEAD, *NOTE_TAKERS, CHAT_PARTNER, *PANEL):
        await am.register_agent(name, ORG, name.title(), exist_ok=True)


async def _earlier(am: AgentMessaging[str]) -> tuple[int, int, int]:
    """(messages, meetings, last message seq) already in the database for the demo organization.

    Every demo run holds one meeting, so the meetings count the runs.
    """
    return await message_store.organization_totals(internals(am).database, ORG)


async def _kinds_since(am: AgentMessaging[str], seq: int) -> dict[str, int]:
    """Messages of the demo organization written after ``seq``, counted by kind."""
    return await message_store.kinds_since(internals(am).database, ORG, seq)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --------------------------------------------------------------------------- the scene


async def _scene(config: Config, where: str) -> None:
    out = Transcript()
    stats = Stats()
    am, notes_done, meeting_over = _build(config, out, stats)
    out.info(f"agent-messaging demo: four ways for agents to talk, on {where}")
    t0 = time.perf_counter()
    async with am:
        stats.timings["runtime start"] = time.perf_counter() - t0
        await _ensure_cast(am)
        old_messages, runs, last_seq = await _earlier(am)
        if runs:
            out.info(
                f"found from earlier demo runs: {_plural(runs, 'run')} left {_plural(old_messages, 'message')} and "
                f"{_plural(runs, 'meeting')} in this database; this run adds to them"
            )
        else:
            out.info("first demo run on this database: registered organization 'demo' and its 7 agents")
        for name in (LEAD, CHAT_PARTNER):  # anything an interrupted earlier run left unread
            while await am.conversation.get_unread_messages(name):
                pass

        # 1. one-way note
        out.heading("1. Note (one-way): send and move on; hosted handlers run it")
        note = "Release planning at 10:00."
        t = time.perf_counter()
        await am.one_way.send(LEAD, list(NOTE_TAKERS), note)
        stats.timings["note committed"] = time.perf_counter() - t
        out.line(LEAD, f"-> {', '.join(NOTE_TAKERS)}: {note!r}", f"committed in {_ms(stats.timings['note committed'])}")
        with anyio.fail_after(10):
            await notes_done.wait()

        # 2. call
        out.heading("2. Call (send_and_wait): talk and wait for the answer")
        question = next(iter(ANSWERS))
        out.line(LEAD, f"-> oracle: {question!r}", "waiting...")
        t = time.perf_counter()
        answer = await am.conversation.send_and_wait(LEAD, "oracle", question, timeout=10)
        stats.timings["call round trip"] = time.perf_counter() - t
        out.line("oracle", f"-> {LEAD}: {answer!r}", f"reply in {_ms(stats.timings['call round trip'])}")
        await am.conversation.end_conversation(LEAD, "oracle")

        # 3. chat
        out.heading("3. Chat (send, read later): the unread queue")
        lines = ["Did you see the release plan?", "Can you review the migration guide today?"]
        for text in lines:
            await am.conversation.send(LEAD, CHAT_PARTNER, text)
            out.line(LEAD, f"-> {CHAT_PARTNER}: {text!r}", "sent, not waiting")
        t = time.perf_counter()
        unread = await am.conversation.get_unread_messages(CHAT_PARTNER)
        out.line(CHAT_PARTNER, f"opens the unread queue: {len(unread)} message(s), now marked read")
        for message in unread:
            out.line("", f"{message.sender}: {message.payload!r}", f"seq {message.seq}")
        reply = "Yes, and I'll review it after lunch."
        await am.conversation.send(CHAT_PARTNER, LEAD, reply)
        got = await am.conversation.wait_for_message(LEAD, from_agent=CHAT_PARTNER, timeout=10)
        stats.timings["chat read"] = time.perf_counter() - t
        out.line(LEAD, f"wait_for_message -> {got.sender}: {got.payload!r}")
        await am.conversation.end_conversation(LEAD, CHAT_PARTNER)

        # 4. meeting
        out.heading(f"4. Meeting: turns in rotation, {TURN_SECONDS:g} s each; hosted agents speak from on_turn")
        t = time.perf_counter()
        meeting = await am.meeting.create_meeting(LEAD, list(PANEL), turn_duration=TURN_SECONDS)
        out.line(LEAD, f"opens meeting {meeting} with {', '.join(PANEL)}")
        opening = "Agenda: do we ship on Friday?"
        with anyio.fail_after(20):
            await am.meeting.start_meeting(LEAD, meeting, opening)  # returns when the floor is back with alice
            await am.meeting.end_meeting(LEAD, meeting, message="Decided: ship Friday with a rollback plan.")
            await meeting_over.wait()
        stats.timings["meeting"] = time.perf_counter() - t
        history = await am.meeting.get_meeting_history(meeting)

        # summary
        total_messages, total_meetings, _ = await _earlier(am)
        kinds = await _kinds_since(am, last_seq)
        out.heading("Summary")
        out.info(
            f"  this run: {_plural(sum(kinds.values()), 'message')} ({kinds.get('one_way', 0)} one-way, "
            f"{kinds.get('request', 0)} request + {kinds.get('reply', 0)} reply, {kinds.get('chat', 0)} chat), "
            f"1 meeting with {len(history)} history entries and {_plural(stats.timeouts, 'turn timeout')}"
        )
        timings = ", ".join(f"{k} {_ms(v)}" for k, v in stats.timings.items())
        out.info(f"  timings: {timings}; total {_ms(time.perf_counter() - stats.started)}")
        out.info(
            f"  in the database now: {_plural(total_messages, 'message')} and {_plural(total_meetings, 'meeting')} "
            f"of the demo organization, from {_plural(total_meetings, 'demo run')}"
        )
        out.info(f"  data lives in: {where}")
        out.info(f"  look around: agent-messaging agents list --org {ORG}; agent-messaging meetings show {meeting}")


def demo(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="Data directory of the embedded server (default .agent-messaging/pgdata).",
            show_default=False,
        ),
    ] = None,
    dsn: Annotated[
        str | None,
        typer.Option("--dsn", help="PostgreSQL DSN (default $AGENT_MESSAGING_DSN, else the embedded server)."),
    ] = None,
) -> None:
    """Watch notes, calls, chats and a meeting between agents, on the embedded PostgreSQL (no set-up needed)."""
    config = settings(dsn)
    updates: dict[str, Any] = {"default_turn_duration": None}
    if data_dir is not None:
        updates["embedded_data_dir"] = data_dir.expanduser().resolve()
    config = config.model_copy(update=updates)
    database = where(config)

    async def go() -> None:
        scene = anyio.CancelScope()  # the first Ctrl-C cancels it: the runtime closes, then exit 130
        async with anyio.create_task_group() as tg:
            await tg.start(watch_signals, lambda _signal: scene.cancel())
            with scene:
                await _scene(config, database)
            tg.cancel_scope.cancel()
        if scene.cancel_called:
            fail("interrupted", 130)

    run_async(go, dsn=dsn)
