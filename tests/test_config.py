"""Config: environment variables, defaults, validation, and the DSN's password kept secret."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from agent_messaging import Config
from agent_messaging.config import dsn_host, dsn_password, redact_dsn

SECRET = "sekrit"
URL_DSN = f"postgresql://alice:{SECRET}@db.example.com:5433/app"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No AGENT_MESSAGING_* variable of the surrounding shell leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("AGENT_MESSAGING_"):
            monkeypatch.delenv(name)


# ------------------------------------------------------------------ defaults


def test_defaults_need_no_configuration() -> None:
    config = Config()
    assert config.dsn is None
    assert config.dsn_value() is None
    assert config.redacted_dsn() is None
    assert config.embedded_data_dir == Path(".agent-messaging/pgdata")
    assert not config.embedded_data_dir.is_absolute()  # under the working directory
    assert config.max_message_bytes == 1024 * 1024
    assert config.apply_migrations is True
    assert config.pool_size >= 2
    assert config.log_level == "INFO"


# -------------------------------------------------------------- environment


def test_every_setting_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("AGENT_MESSAGING_DSN", URL_DSN)
    monkeypatch.setenv("AGENT_MESSAGING_POOL_SIZE", "7")
    monkeypatch.setenv("AGENT_MESSAGING_EMBEDDED_DATA_DIR", str(tmp_path / "pg"))
    monkeypatch.setenv("AGENT_MESSAGING_APPLY_MIGRATIONS", "false")
    monkeypatch.setenv("AGENT_MESSAGING_DEFAULT_REPLY_TIMEOUT", "2.5")
    monkeypatch.setenv("AGENT_MESSAGING_DEFAULT_TURN_DURATION", "30")
    monkeypatch.setenv("AGENT_MESSAGING_MAILBOX_SIZE", "12")
    monkeypatch.setenv("AGENT_MESSAGING_WRITER_BATCH_SIZE", "250")
    monkeypatch.setenv("AGENT_MESSAGING_WRITER_LINGER", "0.002")
    monkeypatch.setenv("AGENT_MESSAGING_MAX_MESSAGE_BYTES", "4096")
    monkeypatch.setenv("AGENT_MESSAGING_LOG_LEVEL", "DEBUG")

    config = Config()

    assert config.dsn_value() == URL_DSN
    assert config.pool_size == 7
    assert config.embedded_data_dir == tmp_path / "pg"
    assert config.apply_migrations is False
    assert config.default_reply_timeout == 2.5
    assert config.default_turn_duration == 30.0
    assert config.mailbox_size == 12
    assert config.writer_batch_size == 250
    assert config.writer_linger == 0.002
    assert config.max_message_bytes == 4096
    assert config.log_level == "DEBUG"


def test_keyword_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_MESSAGING_POOL_SIZE", "7")
    monkeypatch.setenv("AGENT_MESSAGING_DSN", URL_DSN)
    config = Config(pool_size=4, dsn="postgresql://bob@other/db")
    assert config.pool_size == 4
    assert config.dsn_value() == "postgresql://bob@other/db"


def test_environment_value_of_the_wrong_type_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGENT_MESSAGING_POOL_SIZE", "lots")
    with pytest.raises(ValueError, match="pool_size"):
        Config()


# --------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("pool_size", 3),  # a pool of 2 (psqlpy's least), the LISTEN connection and the presence connection
        ("pool_size", 2),
        ("pool_size", 1),
        ("pool_size", 0),
        ("pool_size", -3),
        ("connect_timeout", 0),
        ("persistence_timeout", -1),
        ("default_reply_timeout", 0),
        ("default_turn_duration", -5),
        ("mailbox_size", 0),
        ("writer_batch_size", 0),
        ("writer_batch_size", 100_000),
        ("writer_linger", -0.1),
        ("writer_linger", 10),
        ("max_message_bytes", 1),
        ("max_attempts", 0),
    ],
)
def test_out_of_range_values_are_refused_naming_the_field(field: str, value: object) -> None:
    values: dict[str, Any] = {field: value}
    with pytest.raises(ValueError, match=field):
        Config(**values)


def test_unknown_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="pool_sise"):
        Config(pool_sise=4)  # type: ignore[call-arg]


def test_config_is_immutable() -> None:
    config = Config(pool_size=4)
    with pytest.raises(ValueError, match="frozen"):
        config.pool_size = 5  # type: ignore[misc]
    assert config.pool_size == 4


def test_validation_error_does_not_show_the_password() -> None:
    with pytest.raises(ValueError, match="pool_size") as caught:
        Config(dsn=URL_DSN, pool_size=1)
    assert SECRET not in str(caught.value)
    assert SECRET not in repr(caught.value)


# ------------------------------------------------------------------ secrecy


@pytest.mark.parametrize("source", ["keyword", "environment"])
def test_password_never_in_repr_str_or_dumps(source: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if source == "environment":
        monkeypatch.setenv("AGENT_MESSAGING_DSN", URL_DSN)
        config = Config()
    else:
        config = Config(dsn=URL_DSN)

    assert config.dsn_value() == URL_DSN  # still usable for connecting
    for shown in (repr(config), str(config), f"{config}", config.model_dump_json(), repr(config.dsn)):
        assert SECRET not in shown
    redacted = config.redacted_dsn()
    assert redacted == "postgresql://alice:***@db.example.com:5433/app"
    assert SECRET not in redacted


def test_redacted_dsn_of_a_key_value_dsn() -> None:
    config = Config(dsn=f"host=db.example.com port=5433 user=alice password={SECRET} dbname=app")
    redacted = config.redacted_dsn()
    assert redacted is not None
    assert SECRET not in redacted
    assert "host=db.example.com" in redacted
    assert "password=***" in redacted


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        (URL_DSN, "postgresql://alice:***@db.example.com:5433/app"),
        ("postgres://alice:sekrit@db/app?sslmode=require", "postgres://alice:***@db/app?sslmode=require"),
        # an unencoded '@' inside the password
        ("postgresql://alice:se@krit@db/app", "postgresql://alice:***@db/app"),
        # a percent-encoded password
        ("postgresql://alice:sek%40rit@db/app", "postgresql://alice:***@db/app"),
        # password given as a query parameter
        (
            "postgresql://alice@db/app?password=sekrit&sslmode=disable",
            "postgresql://alice@db/app?password=***&sslmode=disable",
        ),
        ("postgresql://alice@db/app?PASSWORD=sekrit", "postgresql://alice@db/app?password=***"),
        # nothing to hide: unchanged
        ("postgresql://alice@db:5432/app", "postgresql://alice@db:5432/app"),
        ("postgresql://db/app", "postgresql://db/app"),
    ],
)
def test_redact_dsn_url_form(dsn: str, expected: str) -> None:
    assert redact_dsn(dsn) == expected


@pytest.mark.parametrize(
    ("dsn", "kept"),
    [
        ("host=db user=alice password=sekrit dbname=app", ["host=db", "user=alice", "dbname=app"]),
        ("host=db PASSWORD=sekrit dbname=app", ["host=db", "dbname=app"]),
        ("password=sekrit", []),
        # libpq quoting: a password with a space in it
        ("host=db password='sek rit' dbname=app", ["host=db", "dbname=app"]),
        ("host=db password='sek\\'rit' dbname=app", ["host=db", "dbname=app"]),
        # libpq allows spaces around '='
        ("host=db password = sekrit dbname=app", ["host=db", "dbname=app"]),
    ],
)
def test_redact_dsn_key_value_form(dsn: str, kept: list[str]) -> None:
    redacted = redact_dsn(dsn)
    for part in ("sekrit", "sek", "rit"):
        assert part not in redacted
    assert "***" in redacted
    for word in kept:
        assert word in redacted


def test_redact_dsn_key_value_without_password_is_unchanged() -> None:
    assert redact_dsn("host=db user=alice dbname=app") == "host=db user=alice dbname=app"


@pytest.mark.parametrize(
    ("dsn", "password"),
    [
        ("postgresql://alice:sekrit@db:5432/app", "sekrit"),
        ("postgresql://alice@db/app?sslmode=disable&password=sekrit", "sekrit"),
        ("host=db user=alice PASSWORD=sekrit dbname=app", "sekrit"),
        ("host=db password = sekrit dbname=app", "sekrit"),
        ("host=db password='sek rit' dbname=app", "sek rit"),
        ("postgresql://alice@db/app", None),
        ("postgresql://alice:@db/app", None),
        ("host=db user=alice dbname=app", None),
    ],
)
def test_dsn_password_finds_what_redact_dsn_hides(dsn: str, password: str | None) -> None:
    assert dsn_password(dsn) == password
    if password is not None:
        assert password not in redact_dsn(dsn)


@pytest.mark.parametrize(
    ("dsn", "host"),
    [
        (URL_DSN, "db.example.com:5433"),
        ("postgresql://alice:sekrit@10.1.2.3/app", "10.1.2.3"),
        ("postgresql://postgres:@/postgres?host=/tmp/sockets", "/tmp/sockets"),
        ("host=db.example.com user=alice password=sekrit", "db.example.com"),
        ("user=alice dbname=app", "localhost"),
    ],
)
def test_dsn_host_names_the_server_without_the_password(dsn: str, host: str) -> None:
    assert dsn_host(dsn) == host
    assert SECRET not in dsn_host(dsn)
