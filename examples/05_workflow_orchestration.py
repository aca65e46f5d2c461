"""An orchestrator agent drives worker agents through a multi-step job.

Each step is a call (``send_and_wait``) from the orchestrator to a hosted worker
agent, whose handler's return value is the step's result and the next step's
input. Between steps the orchestrator posts one-way progress notes to a
``tracker`` agent (its handler prints them). The orchestrator itself is a hosted
agent: the job starts with a one-way "start" message to it, and it makes the
calls from inside its own handler (the runtime's deadlock detector watches such
nested calls).

Run it with ``python examples/05_workflow_orchestration.py``: with no
AGENT_MESSAGING_DSN set it starts the embedded PostgreSQL in ``.agent-messaging/pgdata``.
"""

from __future__ import annotations

import uuid

import anyio
from pydantic import BaseModel

from agent_messaging import AgentMessaging, Config, MessageContext


class Work(BaseModel):
    """A unit of the job as it moves through the pipeline."""

    job: str
    step: str
    data: list[str]
    note: str = ""


ORG = "example-workflow"
STEPS = [("fetcher", "fetch"), ("cleaner", "clean"), ("analyst", "analyze"), ("writer", "report")]
am = AgentMessaging[Work](Config())
finished = anyio.Event()
report: list[Work] = []


@am.register_handler("fetcher")
async def fetch(work: Work, ctx: MessageContext[Work]) -> Work:
    """Step 1: fetch the raw records."""
    return work.model_copy(update={"step": "fetch", "data": ["  Alpha ", "beta", "", "Gamma  ", "beta"]})


@am.register_handler("cleaner")
async def clean(work: Work, ctx: MessageContext[Work]) -> Work:
    """Step 2: trim, lower-case, drop empties and duplicates."""
    cleaned = sorted({item.strip().lower() for item in work.data if item.strip()})
    return work.model_copy(update={"step": "clean", "data": cleaned})


@am.register_handler("analyst")
async def analyze(work: Work, ctx: MessageContext[Work]) -> Work:
    """Step 3: a small analysis."""
    longest = max(work.data, key=len)
    return work.model_copy(update={"step": "analyze", "note": f"{len(work.data)} items, longest {longest!r}"})


@am.register_handler("writer")
async def write(work: Work, ctx: MessageContext[Work]) -> Work:
    """Step 4: the report."""
    return work.model_copy(update={"step": "report", "note": f"Report: {', '.join(work.data)} ({work.note})"})


@am.register_handler("tracker")
async def track(work: Work, ctx: MessageContext[Work]) -> None:
    """Progress notes (one-way): printed as they arrive."""
    print(f"  tracker: [{work.job}] {work.note}")


@am.register_handler("orchestrator")
async def orchestrate(work: Work, ctx: MessageContext[Work]) -> None:
    """Run the job: one call per step, a progress note after each."""
    current = work
    for number, (worker, step) in enumerate(STEPS, 1):
        print(f"orchestrator -> {worker}: {step} (step {number}/{len(STEPS)})")
        current = await am.conversation.send_and_wait("orchestrator", worker, current, timeout=30)
        print(f"{worker} -> orchestrator: {current.step} done, {len(current.data)} items")
        note = current.model_copy(update={"note": f"step {number}/{len(STEPS)} {step} done"})
        await am.one_way.send("orchestrator", "tracker", note)
    report.append(current)
    finished.set()


async def main() -> None:
    async with am:
        # exist_ok: an earlier run registered them already, and that is fine
        await am.register_organization(ORG, "Example Workflow", exist_ok=True)
        for name in ("client", "orchestrator", "tracker", *(worker for worker, _ in STEPS)):
            await am.register_agent(name, ORG, name.title(), exist_ok=True)
        job = f"job-{uuid.uuid4().hex[:6]}"
        print(f"client -> orchestrator: start {job}")
        await am.one_way.send("client", "orchestrator", Work(job=job, step="start", data=[]))
        with anyio.fail_after(60):
            await finished.wait()
        await anyio.sleep(0.2)  # let the last progress note print
        print(report[0].note)
        print(f"{job} finished: {len(STEPS)} calls, {len(STEPS)} progress notes")


if __name__ == "__main__":
    anyio.run(main)
