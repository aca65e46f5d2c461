"""examples/05_workflow_orchestration.py runs: the orchestrator calls each worker in order and reports progress."""

from __future__ import annotations


def test_workflow_example(run_example) -> None:  # type: ignore[no-untyped-def]
    result = run_example("05_workflow_orchestration.py")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    calls = [line.split(":")[0] for line in out.splitlines() if line.startswith("orchestrator -> ")]
    assert calls == [
        "orchestrator -> fetcher",
        "orchestrator -> cleaner",
        "orchestrator -> analyst",
        "orchestrator -> writer",
    ]
    notes = [line.strip() for line in out.splitlines() if line.strip().startswith("tracker:")]
    assert [n.split("] ")[1] for n in notes] == [
        "step 1/4 fetch done",
        "step 2/4 clean done",
        "step 3/4 analyze done",
        "step 4/4 report done",
    ]
    assert "Report: alpha, beta, gamma (3 items, longest 'alpha')" in out
    assert "finished: 4 calls, 4 progress notes" in out
