"""MkDocs hooks (``mkdocs.yml``: ``hooks: [docs/_hooks.py]``): the pages made from the code.

A page asks for generated content with an HTML comment on a line of its own:

- ``<!-- generated: config-table -->``: every ``Config`` field, with its
  ``AGENT_MESSAGING_*`` variable, type, default, bounds and description;
- ``<!-- generated: cli-reference -->``: every command of the ``agent-messaging``
  typer app, with its usage, arguments and options;
- ``<!-- include: PATH -->``: a Markdown file of the repository (``CHANGELOG.md``,
  ``CONTRIBUTING.md``), its links rewritten for the site: ``docs/x.md`` becomes
  ``x.md``, other repository files become links to the repository.

The functions below take no MkDocs object, so ``tests/test_docs.py`` calls them
without the ``[docs]`` extra.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic.fields import FieldInfo

ROOT = Path(__file__).resolve().parent.parent
REPOSITORY = "https://github.com/agent-messaging/agent-messaging/blob/main/"

_MARKER = re.compile(r"^<!-- (generated|include): ([\w./-]+) -->$", re.MULTILINE)
_LINK = re.compile(r"\]\((?!https?://|#|mailto:)([^)\s]+)\)")


# ------------------------------------------------------------------------------------------------ hooks


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    """Replace the markers of a page by what they ask for."""
    return expand(markdown)


def expand(markdown: str) -> str:
    """``markdown`` with every marker replaced (``ValueError`` for an unknown one: the build fails)."""

    def replace(match: re.Match[str]) -> str:
        kind, name = match.group(1), match.group(2)
        if kind == "include":
            return include(name)
        if name in GENERATORS:
            return GENERATORS[name]()
        raise ValueError(f"unknown generated section {name!r} (known: {', '.join(sorted(GENERATORS))})")

    return _MARKER.sub(replace, markdown)


def include(path: str) -> str:
    """The repository's Markdown file ``path``, its relative links made to work from a page of the site."""

    def link(match: re.Match[str]) -> str:
        target, _, anchor = match.group(1).partition("#")
        anchor = f"#{anchor}" if anchor else ""
        if target.startswith("docs/"):
            return f"]({target.removeprefix('docs/')}{anchor})"
        return f"]({REPOSITORY}{target}{anchor})"

    return _LINK.sub(link, (ROOT / path).read_text(encoding="utf-8"))


# ------------------------------------------------------------------------------------------------ Config


def _type_name(annotation: Any) -> str:
    args = getattr(annotation, "__args__", None)
    if args and type(annotation).__name__ in ("UnionType", "_UnionGenericAlias"):
        return " | ".join(_type_name(arg) for arg in args)
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def _number(value: float) -> str:
    if value == int(value) and abs(value) >= 1000:
        return f"{int(value):,}"
    return f"{value:g}"


def _bounds(field: FieldInfo) -> str:
    words = {"ge": "≥", "gt": ">", "le": "≤", "lt": "<"}
    found = []
    for item in field.metadata:
        for key, sign in words.items():
            value = getattr(item, key, None)
            if value is not None:
                found.append(f"{sign} {_number(value)}")
    return ", ".join(found)


def _default(name: str, field: FieldInfo) -> str:
    value = field.get_default(call_default_factory=True)
    if value is None:
        return "none"
    if isinstance(value, bool):
        return f"`{str(value).lower()}`"
    if isinstance(value, Path):
        return f"`{value.as_posix()}`"
    if isinstance(value, int) and value >= 10_000:
        return f"`{value}` ({value:,})"
    return f"`{value}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def config_rows() -> list[dict[str, str]]:
    """One row per ``Config`` field, in the class's order."""
    from agent_messaging import Config

    prefix = str(Config.model_config.get("env_prefix", ""))
    rows = []
    for name, field in Config.model_fields.items():
        rows.append(
            {
                "field": name,
                "env": f"{prefix}{name}".upper(),
                "type": _type_name(field.annotation),
                "default": _default(name, field),
                "bounds": _bounds(field),
                "description": field.description or "",
            }
        )
    return rows


def config_table() -> str:
    """The Markdown table of every setting, made from ``Config``."""
    lines = [
        "| Variable (`Config` field) | Type | Default | Bounds | What it sets |",
        "|---|---|---|---|---|",
    ]
    for row in config_rows():
        lines.append(
            f"| `{row['env']}` (`{row['field']}`) | `{row['type']}` | {row['default']} | {row['bounds'] or ''} "
            f"| {_cell(row['description'])} |"
        )
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------------ CLI


def _commands(command: Any, ctx: Any, path: list[str]) -> list[tuple[list[str], Any, Any]]:
    """``(path, command, context)`` for ``command`` and every command below it, in the app's order."""
    found = [(path, command, ctx)]
    if hasattr(command, "list_commands"):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            if sub is None or getattr(sub, "hidden", False):
                continue
            sub_ctx = sub.make_context(name, [], parent=ctx, resilient_parsing=True)
            found.extend(_commands(sub, sub_ctx, [*path, name]))
    return found


def cli_commands() -> list[tuple[str, Any, Any]]:
    """Every command of the ``agent-messaging`` app as ``(full name, command, context)``; groups included."""
    import typer.main

    from agent_messaging.cli import app

    root = typer.main.get_command(app)
    ctx = root.make_context("agent-messaging", [], resilient_parsing=True)
    return [(" ".join(["agent-messaging", *path]), command, c) for path, command, c in _commands(root, ctx, [])]


def _param_type(param: Any, ctx: Any) -> str:
    if getattr(param, "is_flag", False):
        return "flag"
    if hasattr(param, "display_type"):  # typer's own parameters
        text = str(param.display_type(ctx)).strip("<>")
    else:
        text = str(getattr(getattr(param, "type", None), "name", "text"))
    low, high = getattr(param, "min", None), getattr(param, "max", None)
    if low is not None or high is not None:
        text += " (" + ", ".join(s for s in (f"≥ {low}" if low is not None else "", f"≤ {high}" if high else "") if s)
        text += ")"
    return text


def _param_default(param: Any) -> str:
    default = getattr(param, "default", None)
    if getattr(param, "is_flag", False) or default is None or getattr(param, "required", False):
        return ""
    if isinstance(default, list | tuple):
        return ", ".join(f"`{item}`" for item in default) if default else ""
    return f"`{default}`"


def cli_reference(level: int = 3) -> str:
    """The Markdown reference of every command, argument and option, made from the typer app.

    The root and its commands get headings of ``level``, the commands of a group one level below.
    """
    out: list[str] = []
    for name, command, ctx in cli_commands():
        heading = "#" * (level if name.count(" ") <= 1 else level + 1)
        out.append(f"{heading} `{name}`\n")
        if command.help:
            out.append(" ".join(command.help.split()) + "\n")
        pieces = " ".join(command.collect_usage_pieces(ctx))
        out.append(f"```text\n{name} {pieces}\n```\n")
        params = [p for p in command.params if not getattr(p, "hidden", False) and p.opts]
        if params:
            out.append("| Argument or option | Type | Default | Description |")
            out.append("|---|---|---|---|")
            for param in params:
                is_option = param.opts[0].startswith("-")
                label = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
                if not is_option:
                    label = f"`{(param.metavar or param.name).upper()}`"
                help_text = _cell(getattr(param, "help", None) or "")
                if getattr(param, "required", False):
                    help_text += " (required)"
                if param.envvar:
                    envvars = [param.envvar] if isinstance(param.envvar, str) else list(param.envvar)
                    help_text += " Environment: " + ", ".join(f"`{e}`" for e in envvars) + "."
                row = f"| {label} | {_cell(_param_type(param, ctx))} | {_param_default(param)} | {help_text} |"
                out.append(row)
            out.append("")
        if hasattr(command, "list_commands"):
            subs = [s for s in command.list_commands(ctx) if not getattr(command.get_command(ctx, s), "hidden", False)]
            out.append("Commands: " + ", ".join(f"`{s}`" for s in subs) + ".\n")
    return "\n".join(out)


GENERATORS = {"config-table": config_table, "cli-reference": cli_reference}
