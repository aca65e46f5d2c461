"""Argument checks shared by the public API; every failure is an ``InvalidArgument`` naming the argument.

The rule behind them (see ``docs/limits.md``): what the runtime acknowledges can
be read back, the same. Whatever PostgreSQL or its driver cannot round-trip is
refused here, at the door, naming the argument and, inside a JSON value, the
path to the offending part (``message.items[3].text``):

- text containing NUL (``\\u0000``) or surrogate code points (no UTF-8 form);
- non-finite floats (NaN, infinities: JSON has no such numbers);
- integers of more than :data:`MAX_INT_DIGITS` digits (shorter ones, far beyond
  64 bits, are kept exact: jsonb stores numbers as ``numeric``);
- JSON values nested deeper than :data:`MAX_DEPTH`;
- ids longer than :data:`MAX_ID_LENGTH`, display names longer than
  :data:`MAX_NAME_LENGTH`, metadata larger than :data:`MAX_METADATA_BYTES`;
- timeouts beyond :data:`MAX_TIMEOUT` seconds, cursors outside ``0 <= x < 2**63``.
"""

from __future__ import annotations

import json
import math
import re
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

from pydantic import TypeAdapter
from pydantic_core import from_json

from ._tracing import TRACE_KEY
from .errors import InvalidArgument

__all__ = [
    "MAX_CURSOR",
    "MAX_DEPTH",
    "MAX_ID_LENGTH",
    "MAX_INT_DIGITS",
    "MAX_METADATA_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_TIMEOUT",
    "check_cursor",
    "check_id",
    "check_ids",
    "check_limit",
    "check_message_metadata",
    "check_metadata",
    "check_name",
    "check_timeout",
    "check_uuid",
    "json_problem",
    "json_text",
    "storable_text",
]

#: Longest external id (organizations, agents), in characters.
MAX_ID_LENGTH = 255
#: Longest display name, in characters.
MAX_NAME_LENGTH = 1_000
#: Largest metadata mapping, in bytes of compact UTF-8 JSON.
MAX_METADATA_BYTES = 64 * 1024
#: Deepest nesting of lists and objects in a JSON value (payloads, metadata).
MAX_DEPTH = 100
#: Most decimal digits of an integer inside a JSON value (kept exact up to there).
MAX_INT_DIGITS = 4_000
#: Longest timeout or turn duration, in seconds (30 days).
MAX_TIMEOUT = 30 * 24 * 3600.0
#: Largest cursor (a message ``seq``, a history ``seq``, a dead letter id): PostgreSQL's bigint.
MAX_CURSOR = 2**63 - 1

_INT_BOUND = 10**MAX_INT_DIGITS
_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")  # exactly the Unicode category Cc
_CONTROL_BUT_LINES = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # Cc without tab and newline
_ANY: TypeAdapter[Any] = TypeAdapter(Any)


# ---------------------------------------------------------------------------------------- text and ids


def _text_problem(value: str, what: str) -> str | None:
    """Why ``value`` cannot be stored as PostgreSQL text, or None."""
    if "\x00" in value:
        return f"{what} contains a NUL character (\\u0000), which PostgreSQL cannot store"
    if not value.isascii():
        found = _SURROGATE.search(value)
        if found is not None:
            return (
                f"{what} contains a lone surrogate (U+{ord(found.group()):04X} at index {found.start()}), "
                "which is not valid Unicode text"
            )
    return None


def check_id(value: object, what: str = "id") -> str:
    """An external id: a non-empty str of at most 255 characters with no control characters or surrogates."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str, not {type(value).__name__}")
    if not value or not value.strip():
        raise InvalidArgument(f"{what} must not be empty")
    if len(value) > MAX_ID_LENGTH:
        raise InvalidArgument(f"{what} is {len(value)} characters long; at most {MAX_ID_LENGTH} are allowed")
    if not value.isascii() and _SURROGATE.search(value):
        raise InvalidArgument(f"{what} {value!r} contains a lone surrogate, which is not valid Unicode text")
    if _CONTROL.search(value):
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
    """A display name: a non-empty str of at most 1,000 characters (control characters other than
    newline/tab, and surrogates, refused)."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{what} must be a str, not {type(value).__name__}")
    if not value.strip():
        raise InvalidArgument(f"{what} must not be empty")
    if len(value) > MAX_NAME_LENGTH:
        raise InvalidArgument(f"{what} is {len(value)} characters long; at most {MAX_NAME_LENGTH} are allowed")
    if not value.isascii() and _SURROGATE.search(value):
        raise InvalidArgument(f"{what} contains a lone surrogate, which is not valid Unicode text")
    if _CONTROL_BUT_LINES.search(value):
        raise InvalidArgument(f"{what} contains control characters")
    return value


def check_uuid(value: object, what: str = "id") -> uuid.UUID:
    """A ``UUID``, or a str that spells one."""
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str) and len(value) <= 64:
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    shown = repr(value) if isinstance(value, str) and len(value) <= 64 else type(value).__name__
    raise InvalidArgument(f"{what} must be a UUID (or a str that spells one), not {shown}")


def storable_text(value: str, limit: int = 4000) -> str:
    """``value`` cut to ``limit`` characters, with NUL and surrogates escaped, so PostgreSQL can store it
    (for texts the runtime writes itself, such as error descriptions)."""
    value = value[:limit]
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    if not value.isascii() and _SURROGATE.search(value):
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


# ---------------------------------------------------------------------------------------- numbers


def check_timeout(value: object, what: str = "timeout") -> float | None:
    """None (no limit) or a positive finite number of seconds, at most :data:`MAX_TIMEOUT` (30 days)."""
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not (isinstance(value, int) or math.isfinite(value))
        or not 0 < value <= MAX_TIMEOUT
    ):
        raise InvalidArgument(
            f"{what} must be a positive number of seconds, at most {MAX_TIMEOUT:.0f} (30 days), or None; "
            f"not {_short_repr(value)}"
        )
    return float(value)


def check_limit(value: object, what: str = "limit", maximum: int = 10_000) -> int:
    """A page size between 1 and ``maximum``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidArgument(f"{what} must be an int between 1 and {maximum}, not {_short_repr(value)}")
    return value


def check_cursor(value: object, what: str = "cursor", *, minimum: int = 0) -> int:
    """A cursor (a ``seq`` or a row id): an int with ``minimum <= value <= 2**63 - 1`` (PostgreSQL's bigint)."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= MAX_CURSOR:
        raise InvalidArgument(f"{what} must be an int with {minimum} <= {what} < 2**63, not {_short_repr(value)}")
    return value


def _short_repr(value: object) -> str:
    text = repr(value) if isinstance(value, int | float | str | None) else type(value).__name__
    return text if len(text) <= 40 else text[:37] + "..."


# ---------------------------------------------------------------------------------------- JSON values


def check_metadata(value: object, what: str = "metadata") -> dict[str, Any]:
    """A JSON mapping with str keys (None means empty), at most :data:`MAX_METADATA_BYTES` as JSON.

    Returns it as it will read back from the database (its JSON round trip).
    """
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidArgument(f"{what} must be a mapping with str keys")
    if not value:
        return {}
    text = json_text(value, what, max_bytes=MAX_METADATA_BYTES, setting="the metadata limit", strict=True)
    result: dict[str, Any] = from_json(text)
    return result


def check_message_metadata(value: object) -> dict[str, Any]:
    """A message's metadata (:func:`check_metadata`), without the key reserved for the trace context."""
    result = check_metadata(value)
    if TRACE_KEY in result:
        raise InvalidArgument(f"metadata key {TRACE_KEY!r} is reserved: a message's trace context travels under it")
    return result


def _to_jsonable(value: Any) -> Any:
    """The JSON encoder's fallback: pydantic's JSON form of models, datetimes, UUIDs, enums, sets..."""
    return _ANY.dump_python(value, mode="json")


_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_to_jsonable)
_STRICT_ENCODER = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
_LONG_DIGITS = re.compile(rf"\d{{{MAX_INT_DIGITS + 1}}}")
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_STRINGS = re.compile(_STRING)
_INNERMOST = re.compile(r"[\[{][^\[\]{}]*[\]}]")
_EXPONENT_NUMBER = re.compile(_STRING + r"|-?\d+(?:\.\d+)?[eE]\+\d+")


def json_text(
    value: Any,
    what: str,
    error: type[Exception] = InvalidArgument,
    *,
    max_bytes: int | None = None,
    setting: str = "",
    strict: bool = False,
) -> str:
    """Compact JSON text of ``value`` that PostgreSQL's jsonb stores and gives back unchanged.

    Raises ``error`` naming ``what`` (and the path inside the value) for what cannot be stored:
    NUL or surrogates in any string or key, non-finite floats, integers of more than
    :data:`MAX_INT_DIGITS` digits, nesting deeper than :data:`MAX_DEPTH`, values JSON has no form
    for; and, with ``max_bytes``, a text longer than that many UTF-8 bytes (``setting`` names the
    limit in the message). Floats written with a positive exponent (``1e+16``) are spelled out
    (``10000000000000000.0``): jsonb would give them back as integers. Other Python values
    (datetimes, UUIDs, models, sets...) take pydantic's JSON form, unless ``strict``: then only
    dicts, lists, tuples, str, int, float, bool and None are taken.
    """
    try:
        text = (_STRICT_ENCODER if strict else _ENCODER).encode(value)
    except (ValueError, TypeError, RecursionError) as exc:
        raise error(json_problem(value, what, strict=strict) or f"{what} is not JSON-serializable: {exc}") from None
    try:
        size = len(text.encode())
    except UnicodeEncodeError:
        size = -1  # a surrogate: the walk below names where
    if max_bytes is not None and size > max_bytes:
        raise error(f"{what} is {size} bytes as JSON; the limit is {max_bytes} bytes ({setting})")
    if size < 0 or "\\u0000" in text or _maybe_too_deep(text) or _maybe_long_int(text):
        problem = json_problem(value, what, strict=strict)
        if problem is not None:
            raise error(problem)
        if size < 0:
            raise error(f"{what} is not valid Unicode text")
    if "e+" in text:
        text = _EXPONENT_NUMBER.sub(_spelled_out, text)
    return text


def _maybe_too_deep(text: str) -> bool:
    """Whether ``text`` (JSON) may nest deeper than :data:`MAX_DEPTH` (cheap scans; exact when it matters)."""
    if text.count("[") + text.count("{") <= MAX_DEPTH:
        return False
    bare = _STRINGS.sub("", text) if '"' in text else text
    for _level in range(MAX_DEPTH):
        bare, found = _INNERMOST.subn("", bare)
        if not found:
            return False
    return bool(_INNERMOST.search(bare))


def _maybe_long_int(text: str) -> bool:
    return len(text) > MAX_INT_DIGITS and _LONG_DIGITS.search(text) is not None


def _spelled_out(match: re.Match[str]) -> str:
    token = match.group()
    if token.startswith('"'):
        return token
    digits = format(Decimal(token), "f")
    return digits if "." in digits else digits + ".0"


def json_problem(value: Any, what: str, *, strict: bool = False) -> str | None:
    """Why ``value`` cannot be stored as JSON, naming the path inside it (``what.items[3].text``), or None.

    ``strict``: only plain JSON types are taken (see :func:`json_text`).
    """
    return _problem(value, what, 1, strict)


def _problem(value: Any, path: str, depth: int, strict: bool) -> str | None:
    if isinstance(value, str):
        return _text_problem(value, path)
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        if -_INT_BOUND < value < _INT_BOUND:
            return None
        return f"{path} is an integer of more than {MAX_INT_DIGITS} digits"
    if isinstance(value, float):
        if math.isfinite(value):
            return None
        return f"{path} is {value!r}, which is not JSON-serializable: JSON has no NaN or infinity"
    if isinstance(value, Mapping | list | tuple):
        if depth > MAX_DEPTH:
            shown = path if len(path) <= 100 else f"{path[:60]}...{path[-30:]}"
            return f"{shown} is nested deeper than {MAX_DEPTH} levels of lists and objects"
        if isinstance(value, Mapping):
            for key, item in value.items():
                if not isinstance(key, str | int | float | bool) and key is not None:
                    return f"{path} has a key of type {type(key).__name__}, which is not JSON-serializable"
                inner = _key_path(path, key)
                problem = (_text_problem(key, f"the key {inner}") if isinstance(key, str) else None) or _problem(
                    item, inner, depth + 1, strict
                )
                if problem is not None:
                    return problem
            return None
        for index, item in enumerate(value):
            problem = _problem(item, f"{path}[{index}]", depth + 1, strict)
            if problem is not None:
                return problem
        return None
    unserializable = f"{path} is of type {type(value).__name__}, which is not JSON-serializable"
    if strict:
        return unserializable
    try:
        converted = _to_jsonable(value)
    except Exception:
        return unserializable
    if type(converted) is type(value):
        return None
    return _problem(converted, path, depth, strict)


def _key_path(path: str, key: object) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}"
    shown = repr(key)
    return f"{path}[{shown if len(shown) <= 40 else shown[:37] + '...'}]"
