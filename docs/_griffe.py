"""A griffe extension for the API reference (``mkdocs.yml``: ``extensions: [docs/_griffe.py:ReadableDocstrings]``).

The docstrings are written to read well in ``help()`` and in the source, with a
few reStructuredText habits; this makes them read well as Markdown too, without
changing the source:

- ``:func:`name```, ``:meth:``, ``:class:``... roles become code spans (``name``);
- ``:raises A, B: why`` (several exceptions, one reason) becomes one
  ``:raises X: why`` field per exception, which griffe's Sphinx parser reads;
- a paragraph ending in ``::`` (reST's "a literal block follows") ends in ``:``;
  the indented block after it is already a Markdown code block;
- a type alias documented by a ``#:`` comment above it (Sphinx's convention,
  which griffe does not read) gets that comment as its docstring.

Only the docs build loads this file (it needs griffe, from the ``[docs]`` extra).
"""

from __future__ import annotations

import ast
import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:func|meth|class|mod|attr|data|exc|obj|const):`~?([^`]+)`")
_LITERAL = re.compile(r"(\S)::[ \t]*$", re.MULTILINE)
_LONE_LITERAL = re.compile(r"^[ \t]*::[ \t]*$", re.MULTILINE)
_RAISES_MANY = re.compile(r"^([ \t]*):raises ([\w.]+(?:,[ \t]*[\w.]+)+):(.*(?:\n\1[ \t]+\S.*)*)", re.MULTILINE)


def _split_raises(match: re.Match[str]) -> str:
    indent, names, reason = match.group(1), match.group(2), match.group(3)
    return "\n".join(f"{indent}:raises {name.strip()}:{reason}" for name in names.split(","))


def readable(text: str) -> str:
    """A docstring's text with the reST habits above turned into Markdown."""
    text = _ROLE.sub(lambda m: f"`{m.group(1)}`", text)
    text = _RAISES_MANY.sub(_split_raises, text)
    text = _LONE_LITERAL.sub("", text)
    return _LITERAL.sub(r"\1:", text)


class ReadableDocstrings(griffe.Extension):
    """Rewrite docstrings as they are loaded, and read ``#:`` comments of attributes."""

    def on_instance(self, *, node: ast.AST | griffe.ObjectNode, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = readable(obj.docstring.value)

    def on_attribute_instance(
        self, *, node: ast.AST | griffe.ObjectNode, attr: griffe.Attribute, **kwargs: Any
    ) -> None:
        if attr.docstring is not None or attr.lineno is None:
            return
        if isinstance(attr.filepath, list) or attr.filepath not in attr.lines_collection:
            return
        lines = attr.lines_collection[attr.filepath]
        comment: list[str] = []
        index = attr.lineno - 2  # the line above the assignment, 0-based
        while index >= 0 and lines[index].lstrip().startswith("#: "):
            comment.insert(0, lines[index].lstrip()[3:])
            index -= 1
        if comment:
            attr.docstring = griffe.Docstring(readable("\n".join(comment)), parent=attr)
