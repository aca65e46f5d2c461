"""Script children of the multi-process tests: ``python tests/multiprocess/_script.py ACTION ARGS...``.

Not a test module. Each action opens a runtime on ``AGENT_MESSAGING_DSN`` (hosting nothing; the event loop
is ``AM_BACKEND``), prints JSON lines to report, and exits. Actions:

- ``hold-meeting HOST P1 [P2...]``: create a meeting, print ``{"meeting": id}``, then hold it (run it) until
  killed
- ``chair-meeting HOST P1 [P2...]``: create a meeting, print its id, wait until every participant is
  present, start it, print the turn the host gets back, then end it
- ``attend AGENT MEETING``: attend, print the turn; then speak once when it holds the floor, print the next
- ``reply-rounds RESPONDER WAITING DIR ROUNDS``: for each round i, wait for the file DIR/go-i, reply (no
  request id), print ``{"round": i, "won": bool}``
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any
from uuid import UUID

import anyio

from agent_messaging import AgentMessaging, Config, InvalidOperation, MeetingNotReady, Turn


def report(**values: Any) -> None:
    print(json.dumps(values, default=str), flush=True)


def turn_view(turn: Turn[Any]) -> dict[str, Any]:
    return {
        "agent": turn.agent,
        "turn": turn.turn_number,
        "ended": turn.ended,
        "spoken": [(m.agent, m.message) for m in turn.messages if m.type.value == "agent_spoke"],
    }


async def main(action: str, args: list[str]) -> None:
    config = Config(poll_interval=0.2, pool_size=4, shutdown_grace=1)
    async with AgentMessaging[Any](config) as am:
        if action == "hold-meeting":
            meeting = await am.meeting.create_meeting(args[0], args[1:], turn_duration=30)
            report(meeting=meeting)
            await anyio.sleep_forever()  # run it until killed
        elif action == "chair-meeting":
            meeting = await am.meeting.create_meeting(args[0], args[1:], turn_duration=30)
            report(meeting=meeting)
            with anyio.fail_after(60):
                while True:
                    try:
                        turn = await am.meeting.start_meeting(args[0], meeting, {"opening": True})
                        break
                    except MeetingNotReady:
                        await anyio.sleep(0.05)
            report(host_turn=turn_view(turn))
            await am.meeting.end_meeting(args[0], meeting, message={"bye": True})
            report(ended=True)
        elif action == "attend":
            agent, meeting_id = args[0], UUID(args[1])
            turn = await am.meeting.attend_meeting(agent, meeting_id)
            report(turn=turn_view(turn))
            if not turn.ended:
                turn = await am.meeting.speak(agent, meeting_id, {"from": agent})
                report(turn=turn_view(turn))
        elif action == "reply-rounds":
            responder, waiting, folder, rounds = args[0], args[1], Path(args[2]), int(args[3])
            report(ready=True)
            for i in range(rounds):
                while not (folder / f"go-{i}").exists():  # noqa: ASYNC110 - a file is the test's starting gun
                    await anyio.sleep(0.001)
                try:
                    await am.conversation.reply(responder, waiting, {"round": i, "by": os.getpid()})
                    report(round=i, won=True)
                except InvalidOperation as exc:
                    report(round=i, won=False, error=str(exc))
        else:
            raise SystemExit(f"unknown action {action!r}")


if __name__ == "__main__":
    anyio.run(main, sys.argv[1], sys.argv[2:], backend=os.environ.get("AM_BACKEND", "asyncio"))
