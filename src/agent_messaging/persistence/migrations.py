"""Schema migrations: ``schema/NNNN_name.sql`` files shipped in the package.

A ledger table records each applied file (version, name, sha256 checksum,
applied_at). Each file runs in one transaction together with its ledger row,
under a transaction-level advisory lock, so two processes opening at once
apply each file exactly once. A file already applied whose checksum changed is
an error naming the file.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime
from importlib import resources

import psqlpy

from ..errors import ConfigurationError
from .database import Database

__all__ = ["Migration", "MigrationStatus", "apply_migrations", "available_migrations", "migration_status"]

LEDGER = "agent_messaging_migrations"
_LOCK_KEY = 0x616D5F6D6967  # "am_mig"
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True)
class Migration:
    """One migration file."""

    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        """sha256 of the file's text."""
        return hashlib.sha256(self.sql.encode()).hexdigest()


@dataclass(frozen=True)
class MigrationStatus:
    """A migration and whether (and when) it is applied."""

    version: int
    name: str
    applied_at: datetime | None

    @property
    def applied(self) -> bool:
        """Whether the migration is in the ledger."""
        return self.applied_at is not None


def available_migrations() -> list[Migration]:
    """The migration files shipped with the package, in version order."""
    found = []
    for entry in resources.files("agent_messaging.schema").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


_LEDGER_DDL = f"""
CREATE TABLE IF NOT EXISTS {LEDGER} (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    checksum   text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""


async def apply_migrations(db: Database, migrations: list[Migration] | None = None) -> list[Migration]:
    """Apply every pending migration; return the ones applied now. Safe to run from several processes at once."""
    todo = available_migrations() if migrations is None else migrations
    applied = await _applied_checksums(db)  # the usual case, nothing pending, costs no lock and no DDL
    done: list[Migration] = []
    for migration in todo:
        if migration.version in applied:
            _check_unchanged(migration, applied[migration.version])
            continue

        async def apply_one(tx: psqlpy.Transaction, migration: Migration = migration) -> bool:
            # the lock serializes concurrent openers; the ledger re-check makes the loser a no-op
            await tx.execute("SELECT pg_advisory_xact_lock($1)", [_LOCK_KEY])
            await tx.execute(_LEDGER_DDL)
            rows = (await tx.execute(f"SELECT checksum FROM {LEDGER} WHERE version = $1", [migration.version])).result()
            if rows:
                _check_unchanged(migration, rows[0]["checksum"])
                return False
            await tx.execute_batch(migration.sql)
            await tx.execute(
                f"INSERT INTO {LEDGER} (version, name, checksum) VALUES ($1, $2, $3)",
                [migration.version, migration.name, migration.checksum],
            )
            return True

        # each file and its ledger row commit together, or not at all
        if await db.transaction(apply_one):
            done.append(migration)
    return done


async def _applied_checksums(db: Database) -> dict[int, str]:
    if not await db.fetch_val("SELECT to_regclass($1) IS NOT NULL", [LEDGER]):
        return {}
    return {row["version"]: row["checksum"] for row in await db.fetch(f"SELECT version, checksum FROM {LEDGER}")}


def _check_unchanged(migration: Migration, applied_checksum: str) -> None:
    if applied_checksum != migration.checksum:
        raise ConfigurationError(
            f"migration {migration.version:04d}_{migration.name}.sql was changed after it was applied "
            "(checksum mismatch); restore the original file or write a new migration"
        )


async def migration_status(db: Database) -> list[MigrationStatus]:
    """Every known migration with its applied time (None if pending)."""
    exists = await db.fetch_val("SELECT to_regclass($1) IS NOT NULL", [LEDGER])
    applied: dict[int, datetime] = {}
    if exists:
        for row in await db.fetch(f"SELECT version, applied_at FROM {LEDGER}"):
            applied[row["version"]] = row["applied_at"]
    return [MigrationStatus(m.version, m.name, applied.get(m.version)) for m in available_migrations()]
