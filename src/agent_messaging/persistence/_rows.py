"""Row decoding and parameter encoding, in one place for every store.

psqlpy returns ``uuid`` columns as ``str`` in some positions and ``jsonb``
columns as decoded values or as text depending on the query; these helpers
turn them into what the models expect. jsonb *parameters* go as compact JSON
text cast in SQL (``$n::text::jsonb``): psqlpy maps a dict's large integers to
int32 and would overflow.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

__all__ = ["as_uuid", "json_dict", "optional_uuid", "to_json"]


def as_uuid(value: Any) -> uuid.UUID:
    """A uuid column's value as a ``UUID``."""
    return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))


def optional_uuid(value: Any) -> uuid.UUID | None:
    """A nullable uuid column's value as a ``UUID`` (NULL stays None)."""
    return None if value is None else as_uuid(value)


def json_dict(value: Any) -> dict[str, Any]:
    """A jsonb object column's value as a dict (NULL and non-objects give ``{}``)."""
    if isinstance(value, str | bytes):
        value = json.loads(value)
    return dict(value) if isinstance(value, dict) else {}


def to_json(value: Any) -> str | None:
    """Compact JSON text for a jsonb parameter (None stays NULL)."""
    return None if value is None else json.dumps(value, separators=(",", ":"))
