"""examples/01_notifications.py runs and every worker handles both notices."""

from __future__ import annotations


def test_notifications_example(run_example) -> None:  # type: ignore[no-untyped-def]
    result = run_example("01_notifications.py")
    assert result.returncode == 0, result.stderr
    for worker in ("storage", "billing", "search"):
        assert f"{worker:<8} got [warning] 'maintenance at 02:00' from dispatcher" in result.stdout
        assert f"{worker:<8} got [info] 'maintenance done' from dispatcher" in result.stdout
    assert "every worker handled both notices" in result.stdout
