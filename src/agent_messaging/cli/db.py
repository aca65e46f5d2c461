"""``agent-messaging db``: schema migrations, their status, and the database in use."""

from __future__ import annotations

from typing import Any

import typer

from ..persistence.migrations import apply_migrations, available_migrations, migration_status
from ._common import DsnOption, JsonOption, data_dir, open_database, print_json, run_async, settings, table, where

__all__ = ["db_app"]

db_app = typer.Typer(help="The database: schema migrations, status, connection URL.", no_args_is_help=True)


def _migration_name(version: int, name: str) -> str:
    return f"{version:04d}_{name}"


@db_app.command("migrate")
def db_migrate(dsn: DsnOption = None, as_json: JsonOption = False) -> None:
    """Apply the pending schema migrations (safe to run while other processes use the database)."""
    config = settings(dsn)

    async def go() -> tuple[list[str], int]:
        async with open_database(config, create=True) as db:
            applied = await apply_migrations(db)
            return [_migration_name(m.version, m.name) for m in applied], len(available_migrations())

    applied, total = run_async(go, dsn=dsn)
    if as_json:
        print_json({"database": where(config), "applied": applied, "total": total})
        return
    for name in applied:
        typer.echo(f"applied {name}")
    if applied:
        typer.echo(f"{len(applied)} migration(s) applied; the schema is up to date ({total} in all)")
    else:
        typer.echo(f"nothing to apply: the schema is up to date ({total} migration(s) applied)")


@db_app.command("status")
def db_status(dsn: DsnOption = None, as_json: JsonOption = False) -> None:
    """List the schema migrations, applied (with when) and pending."""
    config = settings(dsn)

    async def go() -> list[Any]:
        async with open_database(config) as db:
            return list(await migration_status(db))

    status = run_async(go, dsn=dsn)
    pending = sum(1 for s in status if not s.applied)
    if as_json:
        print_json(
            {
                "database": where(config),
                "migrations": [
                    {
                        "version": s.version,
                        "name": s.name,
                        "applied": s.applied,
                        "applied_at": s.applied_at.isoformat() if s.applied_at else None,
                    }
                    for s in status
                ],
                "pending": pending,
            }
        )
        return
    rows = [
        [
            f"{s.version:04d}",
            s.name,
            "applied" if s.applied else "pending",
            s.applied_at.isoformat(sep=" ", timespec="seconds") if s.applied_at else "-",
        ]
        for s in status
    ]
    table(f"Migrations of {where(config)} ({pending} pending)", ["version", "name", "status", "applied at"], rows)


@db_app.command("url")
def db_url(dsn: DsnOption = None, as_json: JsonOption = False) -> None:
    """Print the database in use, with its password hidden."""
    config = settings(dsn)
    redacted = config.redacted_dsn()
    source = "--dsn" if dsn else "AGENT_MESSAGING_DSN" if redacted else "embedded"
    directory = None if redacted else data_dir(config)
    running = directory is not None and (directory / "postmaster.pid").exists()
    if as_json:
        print_json(
            {
                "source": source,
                "dsn": redacted,
                "embedded": redacted is None,
                "data_dir": str(directory) if directory else None,
                "running": running if directory else None,
            }
        )
    elif redacted is not None:
        typer.echo(redacted)
    else:
        state = "running" if running else "started on demand"
        typer.echo(
            f"embedded PostgreSQL in {directory} ({state}; no --dsn or AGENT_MESSAGING_DSN set, "
            "so commands and runtimes started here use it)"
        )
