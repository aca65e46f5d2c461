"""``agent-messaging mcp``: registered by the CLI without loading the SDK, usage errors, the missing extra."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import repo_root

ROOT = repo_root()


def python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("AGENT_MESSAGING_DSN", None)
    return subprocess.run(
        [sys.executable, "-c", code, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_the_package_and_the_cli_load_without_the_extras() -> None:
    result = python(
        "import sys, agent_messaging, agent_messaging.cli\n"
        "loaded = sorted(m for m in ('mcp', 'uvicorn', 'pydantic_ai') if m in sys.modules)\n"
        "assert loaded == [], loaded\n"
        "print('ok')\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"


def cli(*args: str, blocked: str = "") -> subprocess.CompletedProcess[str]:
    """``agent-messaging *args``, with the module ``blocked`` made unimportable (a missing extra)."""
    block = f"sys.modules[{blocked!r}] = None\n" if blocked else ""
    code = f"import sys\n{block}from agent_messaging.cli import main\nsys.argv[0] = 'agent-messaging'\nmain()"
    return python(code, *args)


def test_the_command_is_listed() -> None:
    result = cli("--help")
    assert result.returncode == 0, result.stderr
    assert " mcp " in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--http", "nonsense"], "--http takes HOST:PORT (for example 127.0.0.1:8765), not 'nonsense'"),
        (["--http", "127.0.0.1:8765", "--backend", "trio"], "--http needs --backend asyncio"),
        (["--backend", "curio"], "--backend must be asyncio or trio, not 'curio'"),
        (["--message-type", "nothing"], "--message-type takes MODULE:ATTR"),
    ],
)
def test_usage_errors_exit_2_with_one_line(args: list[str], message: str) -> None:
    result = cli("mcp", "--agent", "alice", *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ")
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_without_the_extra_it_says_what_to_install() -> None:
    result = cli("mcp", "--agent", "alice", blocked="mcp")
    assert result.returncode == 2, result.stderr
    assert "the MCP server needs the 'mcp' extra: pip install 'agent-messaging[mcp]'" in result.stderr
