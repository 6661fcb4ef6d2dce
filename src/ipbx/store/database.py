"""The database under every part of the store: one engine per process, the schema's
migrations, and the tenant ids every table is keyed by."""

import subprocess
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    create_engine,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.engine import make_url

from ipbx.store.schema import revisions, tenants

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Revisions are named NNNN_what.py with revision "NNNN", each one's down_revision the one
# before (tests/store checks this against Alembic's own reading): the newest is the head.
HEAD_REVISION = max(p.name[:4] for p in (MIGRATIONS_DIR / "versions").glob("[0-9]*.py"))
# The revisions row that moves with every provisioning change.
CONFIG_REVISION = "config"


class MigrationError(RuntimeError):
    """The schema migrations failed; the message is their last line of error."""


class UnknownTenantError(LookupError):
    """A tenant domain that has not been provisioned."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; synchronous=NORMAL skips the fsync per
    # commit (WAL stays consistent; a power cut loses at most the last commits, which
    # phones re-send with their next REGISTER). busy_timeout waits out another writer.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


class Database:
    """The engine and what every part of the store shares (see `Store`)."""

    def __init__(self, url: str) -> None:
        self._url = url
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            # SQLAlchemy's default PostgreSQL driver is psycopg2; ipbx ships psycopg 3.
            parsed = parsed.set(drivername="postgresql+psycopg")
        self._in_memory = parsed.get_backend_name() == "sqlite" and parsed.database in (
            None,
            "",
            ":memory:",
        )
        if parsed.get_backend_name() == "sqlite" and not self._in_memory:
            assert parsed.database is not None
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self._engine: Engine = create_engine(
            parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite"
        )
        if self._engine.dialect.name == "sqlite":
            event.listen(self._engine, "connect", _sqlite_pragmas)
        self._tenant_ids: dict[str, int] = {}

    def migrate(self) -> None:
        """Bring the schema to the newest revision; a no-op when it is already there. The
        revisions run in a process of their own (`python -m ipbx.store.upgrade`, the URL
        on its standard input), so a server never keeps Alembic (about 12 MB of resident
        memory) loaded, not even after its first start; an in-memory database, which no
        other process can reach, is migrated here. MigrationError when they fail."""
        if self.schema_revision() == HEAD_REVISION:
            return
        if self._in_memory:
            self.upgrade()
            return
        child = subprocess.run(
            [sys.executable, "-m", "ipbx.store.upgrade"],
            input=self._url,
            capture_output=True,
            text=True,
            check=False,
        )
        if child.returncode != 0:
            lines = child.stderr.strip().splitlines() or [f"exit status {child.returncode}"]
            raise MigrationError(f"schema migration failed: {lines[-1]}")

    def upgrade(self) -> None:
        """Run the schema's migrations with Alembic, in this process."""
        from alembic import command
        from alembic.config import Config as AlembicConfig

        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def schema_revision(self) -> str | None:
        """The schema's revision as Alembic recorded it; None for an empty database."""
        with self._engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            found: str | None = connection.scalar(text("SELECT version_num FROM alembic_version"))
            return found

    def close(self) -> None:
        self._engine.dispose()

    def _tenant_id(self, connection: Connection, domain: str, *, create: bool) -> int:
        # Only a tenant holding nothing is ever deleted (delete_tenant), so an id once
        # seen stays valid while anything refers to it and the hot path (save_bindings)
        # skips the lookup.
        cached = self._tenant_ids.get(domain)
        if cached is not None:
            return cached
        found: int | None = connection.scalar(
            select(tenants.c.id).where(tenants.c.domain == domain)
        )
        if found is not None:
            self._tenant_ids[domain] = found
            return found
        if not create:
            raise UnknownTenantError(domain)
        # Not cached: the transaction that creates it may still roll back.
        created: int = connection.execute(
            insert(tenants).values(domain=domain, name=domain).returning(tenants.c.id)
        ).scalar_one()
        return created


def bump_revision(connection: Connection) -> None:
    """Move the configuration revision, in the caller's transaction."""
    moved = connection.execute(
        update(revisions)
        .where(revisions.c.name == CONFIG_REVISION)
        .values(value=revisions.c.value + 1)
    )
    if moved.rowcount == 0:
        connection.execute(insert(revisions).values(name=CONFIG_REVISION, value=1))
