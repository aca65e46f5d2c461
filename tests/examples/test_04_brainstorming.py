"""examples/04_brainstorming_meeting.py runs: hosted agents brainstorm, one turn times out, the host ends it."""

from __future__ import annotations


def test_brainstorming_example(run_example) -> None:  # type: ignore[no-untyped-def]
    result = run_example("04_brainstorming_meeting.py")
    assert result.returncode == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    transcript = lines[next(i for i, line in enumerate(lines) if line.startswith("Transcript of meeting")) :]
    timeouts = [line for line in transcript if "[timeout]" in line]
    assert len(timeouts) == 1
    assert "pessimist did not speak within 0.5s" in timeouts[0]
    assert any("[start] facilitator opened the meeting" in line for line in transcript)
    assert any(
        line.endswith("[end] facilitator ended the meeting: Thanks all: I'll write it up.") for line in transcript
    )
    for role in ("optimist", "engineer", "artist"):
        assert sum(f" {role}: " in line for line in transcript) == 3
    assert sum(" pessimist: " in line for line in transcript) == 2
