"""examples/03_support_chat.py runs: the support agent reads every customer and each gets an answer."""

from __future__ import annotations


def test_support_chat_example(run_example) -> None:  # type: ignore[no-untyped-def]
    result = run_example("03_support_chat.py")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    for name, text in {
        "carla": "My invoice shows the wrong address.",
        "dmitri": "How do I reset my password?",
        "erin": "Can I upgrade my plan mid-month?",
    }.items():
        assert f"support reads  {name}: {text}" in out
        assert f"{name} reads support: Thanks {name.title()}, a ticket is open for: {text!r}" in out
    assert "support answered 3 customers" in out
