"""The documentation site stays complete and true (``mkdocs build --strict`` itself runs in CI, with ``[docs]``).

- the API reference pages document every name of ``agent_messaging.__all__``, and no other;
- Troubleshooting has an entry for every error class;
- every example has a page that includes its source and a captured output;
- the generated pages (settings from ``Config``, commands from the typer app) cover everything;
- the Quick start's programs print what the pages say, the two-process meeting included;
- the README, ``pyproject.toml`` and ``mkdocs.yml`` name the same site.

These need no ``[docs]`` extra: ``docs/_hooks.py`` imports nothing of MkDocs.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
import tomllib
from collections.abc import Callable
from types import ModuleType

import pytest

import agent_messaging
from agent_messaging import Config, errors
from tests._processes import STEP, Child, child_env
from tests.conftest import repo_root

ROOT = repo_root()
DOCS = ROOT / "docs"
DIRECTIVE = re.compile(r"^::: ([\w.]+)\s*$", re.MULTILINE)


def hooks() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "_hooks.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def reference_directives() -> list[str]:
    found = []
    for page in sorted((DOCS / "reference").glob("*.md")):
        found.extend(DIRECTIVE.findall(page.read_text(encoding="utf-8")))
    return found


def text_block_after(page: str, command: str) -> str:
    """The ```text block that follows the first ```bash block running ``command`` on ``page``."""
    text = (DOCS / page).read_text(encoding="utf-8")
    start = text.index(command)
    match = re.compile(r"```text\n(.*?)```", re.DOTALL).search(text, start)
    assert match is not None, f"{page}: no output block after {command!r}"
    return match.group(1)


# --------------------------------------------------------------------------------------- API reference


def test_the_api_reference_documents_every_public_name_and_no_other() -> None:
    directives = reference_directives()
    public = [d.removeprefix("agent_messaging.") for d in directives if d.count(".") == 1]
    assert sorted(set(public)) == sorted(agent_messaging.__all__)
    assert len(public) == len(set(public)), "a public name is documented twice"


def test_every_reference_directive_names_an_object_that_exists() -> None:
    for directive in reference_directives():
        module_name, _, attribute = directive.rpartition(".")
        module = importlib.import_module(module_name)
        assert hasattr(module, attribute), directive


def test_every_error_has_a_troubleshooting_entry() -> None:
    text = (DOCS / "troubleshooting.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^### `(\w+)`$", text, re.MULTILINE))
    classes = {name for name in errors.__all__ if isinstance(getattr(errors, name), type)}
    assert classes - headings == set(), "errors without a Troubleshooting entry"
    assert headings - classes == set(), "Troubleshooting entries for errors that do not exist"


# --------------------------------------------------------------------------------------- examples


@pytest.mark.parametrize("example", sorted(p.stem for p in (ROOT / "examples").glob("*.py")))
def test_every_example_has_a_page_with_its_source_and_output(example: str) -> None:
    page = DOCS / "examples" / f"{example}.md"
    assert page.exists(), f"docs/examples/{example}.md is missing"
    text = page.read_text(encoding="utf-8")
    assert f'--8<-- "examples/{example}.py"' in text
    output = f"docs/examples/output/{example}.txt"
    assert f'--8<-- "{output}"' in text
    assert (ROOT / output).read_text(encoding="utf-8").strip(), f"{output} is empty"
    assert f"examples/{example}.md" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), "not in the nav"


# --------------------------------------------------------------------------------------- generated pages


def test_the_configuration_page_lists_every_setting() -> None:
    assert "<!-- generated: config-table -->" in (DOCS / "configuration.md").read_text(encoding="utf-8")
    table = hooks().config_table()
    rows = table.splitlines()[2:]
    assert len(rows) == len(Config.model_fields)
    for (name, field), row in zip(Config.model_fields.items(), rows, strict=True):
        assert row.startswith(f"| `AGENT_MESSAGING_{name.upper()}` (`{name}`) |"), row
        assert " ".join((field.description or "").split()).replace("|", "\\|") in row


def test_the_command_reference_has_every_command_and_option() -> None:
    module = hooks()
    assert "<!-- generated: cli-reference -->" in (DOCS / "cli.md").read_text(encoding="utf-8")
    reference = module.cli_reference()
    commands = module.cli_commands()
    names = [name for name, _command, _ctx in commands]
    for expected in ("agent-messaging run", "agent-messaging mcp", "agent-messaging meetings show",
                     "agent-messaging agents restart", "agent-messaging db migrate"):  # fmt: skip
        assert expected in names
    sections = re.split(r"^#{3,4} ", reference, flags=re.MULTILINE)[1:]
    assert [s.split("\n", 1)[0].strip("`") for s in sections] == names
    for section, (_name, command, _ctx) in zip(sections, commands, strict=True):
        for param in command.params:
            if param.hidden or "--help" in param.opts:
                continue
            if param.opts[0].startswith("-"):
                for opt in param.opts:
                    assert f"`{opt}`" in section, (section.split("\n", 1)[0], opt)


def test_included_files_link_to_pages_of_the_site() -> None:
    module = hooks()
    for name in ("CONTRIBUTING.md", "CHANGELOG.md"):
        text = module.expand(f"<!-- include: {name} -->")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if target.startswith(("http://", "https://", "#")):
                continue
            assert (DOCS / target.partition("#")[0]).exists(), f"{name}: broken link {target}"


def test_an_unknown_marker_fails_the_build() -> None:
    with pytest.raises(ValueError, match="unknown generated section"):
        hooks().expand("<!-- generated: nothing-of-the-sort -->")


# --------------------------------------------------------------------------------------- the site's address


def test_readme_pyproject_and_mkdocs_name_the_same_site() -> None:
    urls = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]["urls"]
    site = urls["Documentation"]
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert f"site_url: {site}\n" in config
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for page in ("quickstart/", "concepts/", "running/", "reference/", "troubleshooting/"):
        assert f"{site}{page}" in readme


# --------------------------------------------------------------------------------------- the Quick start, run


def run_program(dsn: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=STEP, env=child_env(dsn), cwd=ROOT, check=False
    )


def test_the_quick_start_meeting_prints_what_the_page_shows(dsn: str) -> None:
    expected = text_block_after("quickstart.md", ".venv/bin/python meeting.py")
    for _ in range(2):  # and again, on the same database
        result = run_program(dsn, "docs/snippets/meeting.py")
        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert result.stdout == expected


def _without_pids(text: str) -> list[str]:
    lines = [re.sub(r"^\s*\d+ | \(pid \d+\)$", "", line) for line in text.splitlines()]
    return [line for line in lines if not line.startswith("meeting ")]  # the first line: a fresh meeting id


def test_the_two_process_meeting_of_the_running_guide(dsn: str, spawn: Callable[..., Child]) -> None:
    """``agent-messaging run team:am`` in one process, ``chair.py`` in another: as the guide shows."""
    app = "docs.snippets.team:am"
    team = spawn("-m", "agent_messaging", "run", app, "--log-level", "warning")
    start = team.wait_for_line(f"agent-messaging run {app}:")
    assert "meeting turns: ivy, rowan" in start
    result = run_program(dsn, "docs/snippets/chair.py")
    assert result.returncode == 0, result.stderr
    expected = text_block_after("running.md", ".venv/bin/python chair.py")
    assert _without_pids(result.stdout) == _without_pids(expected)
    spoken = [line for line in result.stdout.splitlines() if " ivy: " in line or " rowan: " in line]
    assert len(spoken) == 4
    assert all(line.endswith(f"(pid {team.proc.pid})") for line in spoken), result.stdout
    team.proc.terminate()
    assert team.proc.wait(timeout=STEP) == 0
