"""Row decoding and parameter encoding, in one place for every store.

psqlpy returns ``uuid`` columns as ``str`` in some positions; these helpers
turn them into what the models expect.

jsonb goes both ways as *text*. Parameters are compact JSON text cast in SQL
(``$n::text::jsonb``): psqlpy maps a dict's large integers to int32 and would
overflow. Reads select ``column::text`` and parse it with pydantic-core's
``from_json``, which is exact (and faster than the driver's conversion):
psqlpy's own jsonb conversion turns integers beyond 64 bits into floats and
fails on larger ones (a poison row). See ``docs/limits.md``.
"""

from __future__ import annotations

import uuid
from typing import Any

from pydantic_core import from_json

from .._validation import json_text

__all__ = ["as_uuid", "json_dict", "optional_uuid", "to_json"]


def as_uuid(value: Any) -> uuid.UUID:
    """A uuid column's value as a ``UUID``."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def optional_uuid(value: Any) -> uuid.UUID | None:
    """A nullable uuid column's value as a ``UUID`` (NULL stays None)."""
    return None if value is None else as_uuid(value)


def json_dict(value: Any) -> dict[str, Any]:
    """A jsonb object column's value (selected ``::text``) as a dict (NULL and non-objects give ``{}``)."""
    if isinstance(value, str | bytes):
        value = from_json(value) if value != "{}" else {}
    return dict(value) if isinstance(value, dict) else {}


def to_json(value: Any) -> str | None:
    """Compact JSON text for a jsonb parameter that reads back unchanged (None stays NULL).

    ``InvalidArgument`` for what jsonb cannot store (the public API refuses it before it gets here).
    """
    if value is None:
        return None
    if not value and isinstance(value, dict):
        return "{}"
    return json_text(value, "value")
