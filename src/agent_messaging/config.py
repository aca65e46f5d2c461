"""Configuration: one pydantic-settings model, read from ``AGENT_MESSAGING_*`` variables.

``Config()`` with nothing set runs on an embedded PostgreSQL in
``.agent-messaging/pgdata`` under the working directory; ``AGENT_MESSAGING_DSN``
points the runtime at any PostgreSQL 14+. The DSN is a secret: its password is
never shown by ``repr``, logs or errors (use :meth:`Config.redacted_dsn`).
"""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from ._validation import MAX_TIMEOUT
from .errors import ConfigurationError

__all__ = ["Config", "check_dsn", "dsn_host", "dsn_password", "mask_secret", "redact_dsn"]

# a key=value DSN's password: libpq allows spaces around '=' and single-quoted values with backslash escapes
_KV_PASSWORD = re.compile(r"(?i)(?<![\w.-])password\s*=\s*(?:'(?:[^'\\]|\\.)*'?|\S*)")


def _url(dsn: str) -> tuple[str, str | None, str]:
    """A URL DSN as (scheme, user info or None, the rest after it), never raising.

    The user info ends at the *last* '@': a password holding an unencoded '@', '/', '?' or '#' is then
    still taken whole (to hide it; :func:`check_dsn` refuses such a DSN for connecting).
    """
    scheme, _, rest = dsn.partition("://")
    userinfo, at, remainder = rest.rpartition("@")
    return (scheme, userinfo, remainder) if at else (scheme, None, rest)


def _redact_query(text: str) -> str:
    base, sep, query = text.partition("?")
    if not sep:
        return text
    items = ["password=***" if item.lower().startswith("password=") else item for item in query.split("&") if item]
    return f"{base}?{'&'.join(items)}"


def redact_dsn(dsn: str) -> str:
    """Return ``dsn`` with any password replaced by ``***`` (URL or key=value form)."""
    if "://" in dsn:
        scheme, userinfo, remainder = _url(dsn)
        if userinfo is None:
            return f"{scheme}://{_redact_query(remainder)}"
        user, sep, password = userinfo.partition(":")
        shown = f"{user}:***" if sep and password else user
        return f"{scheme}://{shown}@{_redact_query(remainder)}"
    return _KV_PASSWORD.sub("password=***", dsn)


def dsn_password(dsn: str) -> str | None:
    """The password written in ``dsn`` (URL or key=value form), to mask it in texts that may quote it."""
    if "://" in dsn:
        _scheme, userinfo, remainder = _url(dsn)
        _user, sep, password = (userinfo or "").partition(":")
        if sep and password:
            return password
        for item in remainder.partition("?")[2].split("&"):
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


#: Passwords shorter than this are masked only where they stand alone (not inside words): masking every
#: "p" of a text would make it unreadable, and a short password inside a word gives nothing away.
_SHORT_SECRET = 4


def mask_secret(text: str, secret: str | None) -> str:
    """``text`` with every occurrence of ``secret`` (a password) replaced by ``***``."""
    if not secret:
        return text
    if len(secret) >= _SHORT_SECRET:
        return text.replace(secret, "***")
    return re.sub(rf"(?<![0-9A-Za-z]){re.escape(secret)}(?![0-9A-Za-z])", "***", text)


def dsn_host(dsn: str) -> str:
    """Best-effort host (or socket directory) named by ``dsn``, for error messages (never raises)."""
    if "://" in dsn:
        _scheme, _userinfo, remainder = _url(dsn)
        hostport = remainder
        for stop in "/?#":
            hostport = hostport.partition(stop)[0]
        for item in remainder.partition("?")[2].split("&"):
            if item.startswith("host="):
                hostport = item[5:]
        return unquote(hostport) or "localhost"
    for word in dsn.split():
        if word.startswith("host="):
            return word[5:]
    return "localhost"


_ENCODE = (
    "percent-encode these characters in a postgresql:// DSN (@ as %40, / as %2F, ? as %3F, # as %23; "
    ": as %3A and % as %25 are safe too), or write the DSN in the key=value form "
    "(host=... port=... user=... password='...' dbname=...)"
)


def check_dsn(dsn: str) -> str:
    """``dsn`` if the driver can read it as meant; ``ConfigurationError`` saying how to fix it otherwise.

    Catches what the driver would misread without a clear error: a URL whose user name or password holds
    an unencoded '@', '/', '?' or '#' (the driver would take part of the password for the host, the port
    or the database), a port that is not a number, a scheme other than postgresql://. The message never
    quotes the DSN (it may hold the password).
    """
    if not dsn.strip():
        raise ConfigurationError("the DSN is empty: set AGENT_MESSAGING_DSN to postgresql://user:password@host/db")
    if "://" not in dsn:
        return dsn  # the key=value form: quoting rules of its own, read by the driver
    scheme, _, rest = dsn.partition("://")
    if scheme.lower() not in ("postgresql", "postgres"):
        raise ConfigurationError(
            f"the DSN starts with {scheme[:20]!r}:// where postgresql:// (or postgres://) was expected"
        )
    userinfo, at, after = rest.partition("@")  # the driver ends the user info at the first '@'
    hostpart = after if at else rest
    for stop in "/?#":
        hostpart = hostpart.partition(stop)[0]
    if at and (any(ch in userinfo for ch in "/?#") or "@" in after):
        raise ConfigurationError(
            "the DSN cannot be read as meant: its user name or password contains '@', '/', '?' or '#' "
            f"(or an '@' appears after the host); {_ENCODE}"
        )
    for host in hostpart.split(","):
        port = host.rpartition("]")[2] if host.startswith("[") else host
        _host, colon, number = port.rpartition(":")
        if colon and number and not number.isdigit():
            hint = "" if at else " (a user name and password go before the host, followed by '@')"
            raise ConfigurationError(f"the DSN's port is not a number{hint}; {_ENCODE}")
    return dsn


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
        ge=4,
        le=1000,
        description="Connections the runtime opens to the database in all (at least 4): its pool (psqlpy's "
        "least is 2), the LISTEN connection (when notify is on) and the presence connection.",
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
    ownership_lease: float = Field(
        default=2.0,
        ge=0.2,
        le=600,
        description="Seconds another runtime waits, after this one's presence lock was seen gone, before taking "
        "over its agents and meetings; a runtime checks its database connection every lease/4 and stops handling "
        "within lease/2 of losing it, so two runtimes never handle one agent at once.",
    )
    shutdown_grace: float = Field(default=10.0, ge=0, description="Seconds running handlers get to finish on close.")
    tracing: bool = Field(
        default=False,
        description="Emit OpenTelemetry spans and carry the W3C trace context inside each message "
        "(AGENT_MESSAGING_TRACING=true): needs the [otel] extra; the spans go to the TracerProvider the "
        "application installs (see docs/tracing.md). Off, tracing costs nothing.",
    )
    log_level: str = Field(
        default="INFO",
        description="A setting of the agent-messaging command line (AGENT_MESSAGING_LOG_LEVEL, or its --log-level); "
        "the library configures no logging, so a program sets its own (logging or structlog).",
    )

    def dsn_value(self) -> str | None:
        """The DSN in clear (for connecting only; never log it)."""
        return self.dsn.get_secret_value() if self.dsn is not None else None

    def redacted_dsn(self) -> str | None:
        """The DSN with its password hidden, safe to log."""
        value = self.dsn_value()
        return redact_dsn(value) if value is not None else None
