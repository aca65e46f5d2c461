"""The README's example runs, and runs again: three runs in a row on one database print the same thing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.conftest import repo_root


def readme_example() -> str:
    """The python block under the README's "## Example" heading."""
    text = (repo_root() / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Example\n", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match is not None, "README.md has no python block under '## Example'"
    return match.group(1)


def test_readme_example_runs_again_and_again(dsn: str, tmp_path: Path) -> None:
    program = tmp_path / "hello.py"
    program.write_text(readme_example(), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENT_MESSAGING_")}
    env.update({"AGENT_MESSAGING_DSN": dsn, "PYTHONPATH": str(repo_root() / "src")})
    outputs = []
    for _ in range(3):
        result = subprocess.run(
            [sys.executable, str(program)],
            capture_output=True,
            text=True,
            timeout=90,
            env=env,
            cwd=tmp_path,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""  # a program that configures no logging sees nothing below warning
        outputs.append(result.stdout)
    assert outputs == ["bob read 'ping'\n"] * 3
    assert not (tmp_path / ".agent-messaging").exists()  # the DSN was used, no embedded server started
