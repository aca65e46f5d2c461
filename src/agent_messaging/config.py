"""Configuration: one pydantic-settings model, read from ``AGENT_MESSAGING_*`` variables.

``Config()`` with nothing set runs on an embedded PostgreSQL in
``.agent-messaging/pgdata`` under the working directory; ``AGENT_MESSAGING_DSN``
points the runtime at any PostgreSQL 14+. The DSN is a secret: its password is
never shown by ``repr``, logs or errors (use :meth:`Config.redacted_dsn`).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._validation import MAX_TIMEOUT

__all__ = ["Config", "redact_dsn"]

# a key=value DSN's password: libpq allows spaces around '=' and single-quoted values with backslash escapes
_KV_PASSWORD = re.compile(r"(?i)(?<![\w.-])password\s*=\s*(?:'(?:[^'\\]|\\.)*'?|\S*)")


def redact_dsn(dsn: str) -> str:
    """Return ``dsn`` with any password replaced by ``***`` (URL or key=value form)."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, _, hostinfo = netloc.rpartition("@")
            user, sep, _password = userinfo.partition(":")
            netloc = f"{user}:***@{hostinfo}" if sep and _password else f"{user}@{hostinfo}"
        query = "&".join(
            "password=***" if item.lower().startswith("password=") else item for item in parts.query.split("&") if item
        )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    return _KV_PASSWORD.sub("password=***", dsn)


def dsn_password(dsn: str) -> str | None:
    """The password written in ``dsn`` (URL or key=value form), to mask it in texts that may quote it."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        _user, sep, password = parts.netloc.rpartition("@")[0].partition(":")
        if sep and password:
            return password
        for item in parts.query.split("&"):
            if item.lower().startswith("password="):
                return item.split("=", 1)[1] or None
        return None
    match = _KV_PASSWORD.search(dsn)
    if match is None:
        return None
    value = match.group(0).split("=", 1)[1].strip()
    if value.startswith("'"):
        value = value[1:-1] if len(value) > 1 and value.endswith("'") else value[1:]
    return value or None


def dsn_host(dsn: str) -> str:
    """Best-effort host (or socket directory) named by ``dsn``, for error messages."""
    if "://" in dsn:
        parts = urlsplit(dsn)
        host = parts.hostname or ""
        for item in parts.query.split("&"):
            if item.startswith("host="):
                host = item[5:]
        port = f":{parts.port}" if parts.port else ""
        return f"{host}{port}" or "localhost"
    for word in dsn.split():
        if word.startswith("host="):
            return word[5:]
    return "localhost"


class Config(BaseSettings):
    """Settings of one ``AgentMessaging`` runtime.

    Every field can be set by an environment variable ``AGENT_MESSAGING_<FIELD>``
    (for example ``AGENT_MESSAGING_DSN``, ``AGENT_MESSAGING_POOL_SIZE``) or passed
    as a keyword argument.
    """

    model_config = SettingsConfigDict(env_prefix="AGENT_MESSAGING_", frozen=True, extra="forbid")

    dsn: SecretStr | None = Field(default=None, description="PostgreSQL DSN; None starts the embedded server.")
    embedded_data_dir: Path = Field(
        default=Path(".agent-messaging/pgdata"), description="Data directory of the embedded server."
    )
    apply_migrations: bool = Field(default=True, description="Apply pending schema migrations on open.")
    pool_size: int = Field(
        default=10,
        ge=3,
        le=1000,
        description="Connections the runtime opens in all (at least 3): its pool (which also serves the "
        "LISTEN connection) and one presence connection.",
    )
    connect_timeout: float = Field(default=10.0, gt=0, description="Seconds to keep retrying the first connect.")
    persistence_timeout: float = Field(
        default=30.0, gt=0, description="Seconds a write may wait for the database before PersistenceUnavailable."
    )
    default_reply_timeout: float | None = Field(
        default=60.0, gt=0, le=MAX_TIMEOUT, description="send_and_wait timeout (at most 30 days)."
    )
    default_turn_duration: float | None = Field(
        default=None, gt=0, le=MAX_TIMEOUT, description="Meeting turn length in seconds (at most 30 days)."
    )
    mailbox_size: int = Field(default=1000, ge=1, description="Capacity of each actor's mailbox.")
    writer_batch_size: int = Field(default=1000, ge=1, le=3000, description="Most writes in one group commit.")
    writer_linger: float = Field(default=0.0005, ge=0, le=0.05, description="Seconds the writer waits to fill a batch.")
    writer_connections: int = Field(default=4, ge=1, le=16, description="Concurrent group-commit transactions.")
    max_message_bytes: int = Field(default=1024 * 1024, ge=64, description="Largest serialized payload accepted.")
    max_attempts: int = Field(default=5, ge=1, description="Handler attempts before a message is dead-lettered.")
    agent_max_restarts: int = Field(default=10, ge=0, description="Agent restarts allowed within agent_restart_window.")
    agent_restart_window: float = Field(default=30.0, gt=0, description="Window of the agent restart intensity.")
    restart_backoff_initial: float = Field(default=0.01, ge=0, description="First restart backoff in seconds.")
    restart_backoff_max: float = Field(default=2.0, ge=0, description="Cap of the restart backoff in seconds.")
    notify: bool = Field(default=True, description="Use LISTEN/NOTIFY to wake other processes.")
    poll_interval: float = Field(default=1.0, gt=0, description="Fallback re-check period for lost notifications.")
    shutdown_grace: float = Field(default=10.0, ge=0, description="Seconds running handlers get to finish on close.")
    log_level: str = Field(default="INFO", description="Log level used by the CLI's logging set-up.")

    def dsn_value(self) -> str | None:
        """The DSN in clear (for connecting only; never log it)."""
        return self.dsn.get_secret_value() if self.dsn is not None else None

    def redacted_dsn(self) -> str | None:
        """The DSN with its password hidden, safe to log."""
        value = self.dsn_value()
        return redact_dsn(value) if value is not None else None
