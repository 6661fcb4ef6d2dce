"""The schema is created by the shipped migrations, at start-up, any number of times."""

from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ipbx.store import Store
from ipbx.store.schema import metadata


def test_migrate_creates_the_schema_and_is_idempotent(store_url: str) -> None:
    store = Store(store_url)
    store.migrate()
    store.migrate()
    store.close()
    engine = sa.create_engine(store_url)
    with engine.connect() as connection:
        tables = set(sa.inspect(connection).get_table_names())
        tenants = connection.execute(sa.text("SELECT domain FROM tenants")).scalars().all()
    engine.dispose()
    assert {"tenants", "extensions", "registrations", "alembic_version"} <= tables
    assert tenants == ["default"]


def test_sqlite_file_is_created_in_wal_mode(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'data' / 'ipbx.db'}"
    store = Store(url)
    store.migrate()
    store.close()
    assert (tmp_path / "data" / "ipbx.db").exists()
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        journal = connection.execute(sa.text("PRAGMA journal_mode")).scalar()
    engine.dispose()
    assert journal == "wal"


def test_migrations_produce_exactly_the_declared_tables(store: Store, store_url: str) -> None:
    engine = sa.create_engine(store_url)
    with engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), metadata)
    engine.dispose()
    assert differences == []


def test_in_memory_database_works_for_quick_tools() -> None:
    store = Store("sqlite://")
    store.migrate()
    store.apply_extensions([("1000", "Alice", "secret")], realm="ipbx")
    assert store.get_extension("1000") is not None
    store.close()
