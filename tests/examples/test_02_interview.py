"""examples/02_interview.py runs: every question gets its own answer, in order."""

from __future__ import annotations


def test_interview_example(run_example) -> None:  # type: ignore[no-untyped-def]
    result = run_example("02_interview.py")
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.startswith(("interviewer:", "candidate:"))]
    assert lines == [
        "interviewer: What is your name?",
        "candidate:   Ada, a candidate agent.",
        "interviewer: Why do you want this job?",
        "candidate:   I like turning vague plans into working programs.",
        "interviewer: Any questions for us?",
        "candidate:   How do your agents talk to each other?",
    ]
    assert "interview over; 7 messages are in this session's history" in result.stdout
