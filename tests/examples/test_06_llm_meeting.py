"""examples/06_llm_meeting.py runs offline (scripted models), and again on the same database."""

from __future__ import annotations

import re

import pytest

SPOKEN = re.compile(r"^\d+ (\w+): (.*)$")  # "  7 planner: Proposal: ..." (log lines on stdout do not match)


def test_llm_meeting_example(run_example, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("AGENT_MESSAGING_LLM_MODEL", raising=False)  # the scripted models, whatever the shell says
    for _ in range(2):  # fresh agent ids on every run: it runs again on the same database
        result = run_example("06_llm_meeting.py")
        assert result.returncode == 0, result.stderr
        lines = [line.strip() for line in result.stdout.splitlines()]
        start = next(i for i, line in enumerate(lines) if line.startswith("Product review"))
        transcript = lines[start:]
        assert "(scripted models, offline)" in transcript[0]
        spoken = [m.group(1, 2) for m in map(SPOKEN.match, transcript) if m]
        assert [who for who, _ in spoken] == [
            "facilitator",
            "planner",
            "critic",
            "facilitator",
            "planner",
        ]
        assert "the analyst says: About 18% of sessions start offline" in spoken[2][1]
        assert any(line.endswith("[pass] critic passed") for line in transcript)
        assert any(
            "[end] facilitator ended the meeting: Summary: offline mode ships in Q3" in line for line in transcript
        )
        assert "critic -> analyst: How many sessions start offline?" in transcript
        assert "analyst -> critic: About 18% of sessions start offline (app telemetry, last 90 days)." in transcript
