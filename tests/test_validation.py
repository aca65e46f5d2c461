"""The argument checks behind the public API: every refusal is an InvalidArgument naming the argument."""

from __future__ import annotations

import math
import uuid
from collections import OrderedDict
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic_core import from_json

from agent_messaging import AgentMessagingError, InvalidArgument, InvalidMessage
from agent_messaging._validation import (
    MAX_CURSOR,
    MAX_DEPTH,
    MAX_ID_LENGTH,
    MAX_INT_DIGITS,
    MAX_METADATA_BYTES,
    MAX_NAME_LENGTH,
    MAX_TIMEOUT,
    check_cursor,
    check_id,
    check_ids,
    check_limit,
    check_metadata,
    check_name,
    check_timeout,
    check_uuid,
    json_problem,
    json_text,
    storable_text,
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


@pytest.mark.parametrize("value", ["Bob", "Multi\nline\tname", "名前", "x" * MAX_NAME_LENGTH])
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
        ("x" * (MAX_NAME_LENGTH + 1), "1001 characters"),
        ("lone \ud800 surrogate", "lone surrogate"),
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


# ------------------------------------------------------------ surrogates, cursors, UUIDs


@pytest.mark.parametrize("value", ["\ud800", "a\udfffb", "ok-\ud83d"])
def test_check_id_refuses_lone_surrogates(value: str) -> None:
    with pytest.raises(InvalidArgument, match=r"agent_id .* lone surrogate"):
        check_id(value, "agent_id")


def test_a_surrogate_pair_written_as_one_character_is_fine() -> None:
    assert check_id("robot \U0001f916", "agent") == "robot \U0001f916"


@pytest.mark.parametrize(("value", "expected"), [(0, 0), (1, 1), (MAX_CURSOR, MAX_CURSOR)])
def test_check_cursor_accepts_bigints(value: int, expected: int) -> None:
    assert check_cursor(value, "after_seq") == expected


@pytest.mark.parametrize("value", [-1, MAX_CURSOR + 1, 2**64, 10**400, 1.0, "3", True, None])
def test_check_cursor_refuses_naming_the_bound(value: object) -> None:
    with pytest.raises(InvalidArgument, match=r"after_seq must be an int with 0 <= after_seq < 2\*\*63"):
        check_cursor(value, "after_seq")


def test_check_cursor_minimum() -> None:
    with pytest.raises(InvalidArgument, match="1 <= dead_letter_id"):
        check_cursor(0, "dead_letter_id", minimum=1)


def test_check_uuid_takes_uuids_and_their_spelling() -> None:
    value = uuid.uuid4()
    assert check_uuid(value, "request_id") is value
    assert check_uuid(str(value), "request_id") == value
    assert check_uuid(value.hex, "request_id") == value


@pytest.mark.parametrize("value", ["nope", "", "\ud800", 42, None, b"x" * 16, "x" * 10_000])
def test_check_uuid_refuses_naming_the_argument(value: object) -> None:
    with pytest.raises(InvalidArgument, match="request_id must be a UUID"):
        check_uuid(value, "request_id")


@pytest.mark.parametrize("value", [10**400, 1e300, 2**63, MAX_TIMEOUT + 1, math.inf])
def test_check_timeout_is_at_most_30_days(value: object) -> None:
    with pytest.raises(InvalidArgument, match="30 days"):
        check_timeout(value, "timeout")
    assert check_timeout(MAX_TIMEOUT, "timeout") == MAX_TIMEOUT


# ------------------------------------------------------------------ JSON values


@pytest.mark.parametrize(
    "value",
    [
        10**400,
        -(2**70) - 1,
        1e23,
        -1.7976931348623157e308,
        5e-324,
        1e16,
        {"nested": [[{"ok": None}]], "text": "1e+22 stays a string"},
        "\\u0000 is a backslash and five characters",
        "[" * 200,
    ],
)
def test_json_text_round_trips_exactly(value: Any) -> None:
    text = json_text(value, "message")
    assert from_json(text) == value
    assert type(from_json(text)) is type(value)


def test_json_text_spells_out_floats_jsonb_would_print_as_integers() -> None:
    assert json_text(1e16, "x") == "10000000000000000.0"
    assert json_text([1.5e300], "x").endswith(".0]")
    assert json_text({"a": "1e+16"}, "x") == '{"a":"1e+16"}'  # inside a string: left alone


@pytest.mark.parametrize(
    ("value", "words"),
    [
        ({"items": [0, 1, 2, {"text": "a\x00b"}]}, r"message\.items\[3\]\.text contains a NUL"),
        ({"a b": ["\ud800"]}, r"message\['a b'\]\[0\] contains a lone surrogate \(U\+D800 at index 0\)"),
        ({"x\x00": 1}, r"the key message\['x\\x00'\] contains a NUL"),
        ([1, math.nan], r"message\[1\] is nan"),
        ({"n": -math.inf}, r"message\.n is -inf"),
        ({"n": 10**MAX_INT_DIGITS}, "more than 4000 digits"),
        ({"when": object()}, "message.when is of type object, which is not JSON-serializable"),
        ({(1, 2): "tuple key"}, "has a key of type tuple"),
    ],
)
def test_json_text_refuses_naming_the_path(value: Any, words: str) -> None:
    with pytest.raises(InvalidArgument, match=words):
        json_text(value, "message")
    assert json_problem(value, "message") is not None


def test_json_text_bounds_the_depth() -> None:
    value: Any = "bottom"
    for _ in range(MAX_DEPTH):
        value = [value]
    json_text(value, "message")
    for levels in (1, 5_000):
        deeper: Any = value
        for _ in range(levels):
            deeper = {"k": deeper}
        with pytest.raises(InvalidArgument, match=f"nested deeper than {MAX_DEPTH} levels"):
            json_text(deeper, "message")


def test_json_text_size_limit_names_the_setting() -> None:
    with pytest.raises(InvalidMessage, match=r"message is 12 bytes as JSON; the limit is 10 bytes \(the knob\)"):
        json_text("é" * 5, "message", InvalidMessage, max_bytes=10, setting="the knob")


def test_json_text_takes_pydantic_json_forms_unless_strict() -> None:
    when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert json_text({"when": when, "pair": (1, 2)}, "message") == '{"when":"2024-01-02T03:04:05Z","pair":[1,2]}'
    with pytest.raises(InvalidArgument, match=r"metadata\.when is of type datetime"):
        json_text({"when": when}, "metadata", strict=True)


def test_check_metadata_returns_what_reads_back_and_bounds_the_size() -> None:
    assert check_metadata({"n": 2**70 + 1, "f": 1e23}) == {"n": 2**70 + 1, "f": 1e23}
    check_metadata({"blob": "x" * (MAX_METADATA_BYTES - 20)})
    with pytest.raises(InvalidArgument, match="bytes as JSON; the limit is 65536"):
        check_metadata({"blob": "x" * MAX_METADATA_BYTES})


def test_storable_text_escapes_what_postgresql_cannot_store() -> None:
    assert storable_text("ValueError: a\x00b \ud800") == "ValueError: a\\x00b \\ud800"
    assert storable_text("x" * 5000) == "x" * 4000
    assert storable_text("plain") == "plain"
