"""Argument checks shared by the public API; every failure is an ``InvalidArgument`` naming the argument."""

from __future__ import annotations

import json
import math
import unicodedata
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from .errors import InvalidArgument

__all__ = ["check_id", "check_ids", "check_limit", "check_metadata", "check_name", "check_timeout", "check_uuid"]

MAX_ID_LENGTH = 255


def check_id(value: object, what: str = "id") -> str:
    """An external id: a non-empty str of at most 255 characters with no control characters."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str, not {type(value).__name__}")
    if not value or not value.strip():
        raise InvalidArgument(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{what} is {len(value)} characters long; at most {MAX_ID_LENGTH} are allowed")
    if any(unicodedata.category(ch) == "Cc" for ch in value):
        raise InvalidArgument(f"{what} {value!r} contains control characters")
    return value


def check_ids(values: object, what: str = "recipients") -> list[str]:
    """A str or a sequence of ids, de-duplicated in first-seen order; at least one."""
    if isinstance(values, str):
        return [check_id(values, what)]
    if not isinstance(values, Sequence) or isinstance(values, bytes | bytearray):
        raise InvalidArgument(f"{what} must be an id or a sequence of ids, not {type(values).__name__}")
    result = list(dict.fromkeys(check_id(v, what) for v in values))
    if not result:
        raise InvalidArgument(f"{what} must name at least one agent")
    return result


def check_name(value: object, what: str = "name") -> str:
    """A display name: a non-empty str (control characters other than newline/tab refused)."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise InvalidArgument(f"{what} must not be empty")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\n\t" for ch in value):
        raise InvalidArgument(f"{what} contains control characters")
    return value


def check_metadata(value: object, what: str = "metadata") -> dict[str, Any]:
    """A JSON-serializable mapping with str keys (None means empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidArgument(f"{what} must be a mapping with str keys")
    try:
        json.dumps(value, allow_nan=False)  # NaN/Infinity are not JSON (jsonb would store null)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"{what} is not JSON-serializable: {exc}") from None
    return dict(value)


def check_timeout(value: object, what: str = "timeout") -> float | None:
    """None (no limit) or a positive finite number of seconds."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InvalidArgument(f"{what} must be a positive number of seconds or None, not {value!r}")
    return float(value)


def check_limit(value: object, what: str = "limit", maximum: int = 10_000) -> int:
    """A page size between 1 and ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidArgument(f"{what} must be an int between 1 and {maximum}, not {value!r}")
    return value


def check_uuid(value: object, what: str = "id") -> uuid.UUID:
    """A UUID, given as one or as its text."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise InvalidArgument(f"{what} must be a UUID (or its text), not {value!r}")
