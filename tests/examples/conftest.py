"""Run example programs as subprocesses against the test's database."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable

import pytest

from tests.conftest import repo_root


@pytest.fixture
def run_example(dsn: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """``run_example("01_notifications.py")`` runs it with AGENT_MESSAGING_DSN set to this test's database."""

    def run(name: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess[str]:
        root = repo_root()
        env = {**os.environ, "AGENT_MESSAGING_DSN": dsn, "PYTHONPATH": str(root / "src")}
        return subprocess.run(
            [sys.executable, str(root / "examples" / name), *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
            cwd=root,
            check=False,
        )

    return run
