"""The argument checks behind the public API: every refusal is an InvalidArgument naming the argument."""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import Any

import pytest

from agent_messaging import AgentMessagingError, InvalidArgument
from agent_messaging._validation import (
    MAX_ID_LENGTH,
    check_id,
    check_ids,
    check_limit,
    check_metadata,
    check_name,
    check_timeout,
)


def test_invalid_argument_is_a_value_error_of_the_library() -> None:
    assert issubclass(InvalidArgument, ValueError)
    assert issubclass(InvalidArgument, AgentMessagingError)


# ------------------------------------------------------------------ check_id


@pytest.mark.parametrize("value", ["a", "agent-1", "Ünïcødé 🤖", "x" * MAX_ID_LENGTH, "with space", "a.b/c:d"])
def test_check_id_accepts_and_returns_valid_ids(value: str) -> None:
    assert check_id(value, "agent") == value


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "must be a str"),
        (42, "must be a str"),
        (b"bytes", "must be a str"),
        ("", "must not be empty"),
        ("   ", "must not be empty"),
        ("x" * (MAX_ID_LENGTH + 1), "256 characters"),
        ("a\x00b", "control characters"),
        ("line\nbreak", "control characters"),
        ("tab\there", "control characters"),
        ("del\x7f", "control characters"),
        ("esc\x1b[31m", "control characters"),
    ],
)
def test_check_id_refuses_naming_the_argument(value: object, words: str) -> None:
    with pytest.raises(InvalidArgument, match="my_agent_id") as caught:
        check_id(value, "my_agent_id")
    assert words in str(caught.value)


def test_check_id_default_name() -> None:
    with pytest.raises(InvalidArgument, match=r"^id must not be empty"):
        check_id("")


# ----------------------------------------------------------------- check_ids


def test_check_ids_single_id_becomes_a_list() -> None:
    assert check_ids("bob", "recipients") == ["bob"]


@pytest.mark.parametrize("values", [["b", "a", "b", "c", "a"], ("b", "a", "b", "c", "a")])
def test_check_ids_deduplicates_in_first_seen_order(values: Any) -> None:
    assert check_ids(values, "recipients") == ["b", "a", "c"]


@pytest.mark.parametrize(
    ("values", "words"),
    [
        ([], "at least one"),
        ((), "at least one"),
        (42, "must be an id or a sequence"),
        (None, "must be an id or a sequence"),
        (b"abc", "must be an id or a sequence"),
        (bytearray(b"abc"), "must be an id or a sequence"),
        ({"a", "b"}, "must be an id or a sequence"),  # unordered: refused
        (["ok", ""], "must not be empty"),
        (["ok", 7], "must be a str"),
        (["ok", "x" * 300], "300 characters"),
        ("", "must not be empty"),
    ],
)
def test_check_ids_refuses_naming_the_argument(values: object, words: str) -> None:
    with pytest.raises(InvalidArgument, match="the_recipients") as caught:
        check_ids(values, "the_recipients")
    assert words in str(caught.value)


# ---------------------------------------------------------------- check_name


@pytest.mark.parametrize("value", ["Bob", "Multi\nline\tname", "名前", "x" * 10_000])
def test_check_name_accepts(value: str) -> None:
    assert check_name(value, "display_name") == value


@pytest.mark.parametrize(
    ("value", "words"),
    [
        (None, "must be a str"),
        (3.5, "must be a str"),
        ("", "must not be empty"),
        (" \n\t ", "must not be empty"),
        ("bell\x07", "control characters"),
        ("nul\x00", "control characters"),
        ("cr\r", "control characters"),
    ],
)
def test_check_name_refuses_naming_the_argument(value: object, words: str) -> None:
    with pytest.raises(InvalidArgument, match="display_name") as caught:
        check_name(value, "display_name")
    assert words in str(caught.value)


# ------------------------------------------------------------ check_metadata


def test_check_metadata_none_is_empty() -> None:
    assert check_metadata(None) == {}


def test_check_metadata_returns_a_plain_dict_copy() -> None:
    given = OrderedDict([("b", 1), ("a", {"nested": [1, 2.5, None, True, "x"]})])
    result = check_metadata(given, "meta")
    assert result == {"b": 1, "a": {"nested": [1, 2.5, None, True, "x"]}}
    assert type(result) is dict
    result["c"] = 3
    assert "c" not in given


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ([("a", 1)], "mapping with str keys"),
        ("{}", "mapping with str keys"),
        (42, "mapping with str keys"),
        ({1: "int key"}, "mapping with str keys"),
        ({"a": 1, ("t",): 2}, "mapping with str keys"),
        ({"when": object()}, "not JSON-serializable"),
        ({"s": {1, 2}}, "not JSON-serializable"),
        ({"b": b"bytes"}, "not JSON-serializable"),
        ({"nested": {"deep": [object()]}}, "not JSON-serializable"),
        # NaN and infinities are not JSON (PostgreSQL's jsonb refuses them)
        ({"x": math.nan}, "not JSON-serializable"),
        ({"x": [math.inf]}, "not JSON-serializable"),
    ],
)
def test_check_metadata_refuses_naming_the_argument(value: object, words: str) -> None:
    with pytest.raises(InvalidArgument, match="agent_metadata") as caught:
        check_metadata(value, "agent_metadata")
    assert words in str(caught.value)


def test_check_metadata_refuses_circular_structures() -> None:
    loop: dict[str, Any] = {}
    loop["self"] = loop
    with pytest.raises(InvalidArgument, match="metadata"):
        check_metadata(loop)


# ------------------------------------------------------------- check_timeout


@pytest.mark.parametrize(("value", "expected"), [(None, None), (1, 1.0), (0.25, 0.25), (3600, 3600.0)])
def test_check_timeout_accepts(value: object, expected: float | None) -> None:
    result = check_timeout(value, "wait")
    assert result == expected
    assert result is None or type(result) is float


@pytest.mark.parametrize("value", [0, 0.0, -1, -0.5, math.nan, math.inf, -math.inf, True, False, "5", [5]])
def test_check_timeout_refuses_naming_the_argument(value: object) -> None:
    with pytest.raises(InvalidArgument, match="reply_timeout") as caught:
        check_timeout(value, "reply_timeout")
    assert "positive number of seconds" in str(caught.value)


# --------------------------------------------------------------- check_limit


@pytest.mark.parametrize(("value", "maximum"), [(1, 10_000), (10_000, 10_000), (50, 50), (7, 100)])
def test_check_limit_accepts(value: int, maximum: int) -> None:
    assert check_limit(value, "page", maximum) == value


@pytest.mark.parametrize(
    ("value", "maximum"),
    [(0, 10_000), (-1, 10_000), (10_001, 10_000), (51, 50), (True, 10_000), (5.0, 10_000), ("5", 10_000), (None, 10)],
)
def test_check_limit_refuses_naming_the_argument(value: object, maximum: int) -> None:
    with pytest.raises(InvalidArgument, match="page_size") as caught:
        check_limit(value, "page_size", maximum)
    assert str(maximum) in str(caught.value)
