"""The README's example runs, and runs again: three runs in a row on one database print the same thing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import repo_root


def readme_example() -> str:
    """The python block under the README's "## Example" heading."""
    text = (repo_root() / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Example\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "README.md has no python block under '## Example'"
    return match.group(1)


def run(dsn: str, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MESSAGING_")}
    env.update({"AGENT_MESSAGING_DSN": dsn, "PYTHONPATH": str(repo_root() / "src")})
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=90, env=env, cwd=cwd, check=False
    )


def test_readme_example_runs_again_and_again(dsn: str, tmp_path: Path) -> None:
    program = tmp_path / "hello.py"
    program.write_text(readme_example(), encoding="utf-8")
    outputs = []
    for _ in range(3):
        result = run(dsn, tmp_path, str(program))
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # a program that configures no logging sees nothing below warning
        outputs.append(result.stdout)
    assert outputs == ["leo read 'ping'\n"] * 3
    assert not (tmp_path / ".agent-messaging").exists()  # the DSN was used, no embedded server started


@pytest.mark.slow
def test_demo_examples_and_readme_share_one_database(dsn: str, tmp_path: Path) -> None:
    """What a newcomer does in one directory: the demo, then every example and the README's, twice over.

    They share the embedded database there, and agent ids are unique across organizations: no two of
    them may register the same agent id in different organizations.
    """
    program = tmp_path / "hello.py"
    program.write_text(readme_example(), encoding="utf-8")
    examples = sorted(str(p) for p in (repo_root() / "examples").glob("0*.py"))
    for _ in range(2):
        for args in (["-m", "agent_messaging", "demo"], *([example] for example in examples), [str(program)]):
            result = run(dsn, tmp_path, *args)
            assert result.returncode == 0, f"{args}: {result.stderr}"
