"""The schema is created by the shipped migrations, at start-up, any number of times."""

import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ipbx.store import Store
from ipbx.store.database import HEAD_REVISION, MigrationError
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


def test_the_head_is_read_from_file_names_as_alembic_reads_it() -> None:
    """migrate() skips Alembic on a current schema by knowing the head without it."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    from ipbx.store.database import MIGRATIONS_DIR

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_a_server_never_loads_alembic_at_its_first_start_or_after(tmp_path: Path) -> None:
    """The first start migrates in a child process; a restart on a current schema skips
    the migrations without reading them."""
    url = f"sqlite:///{tmp_path / 'ipbx.db'}"
    code = (
        "import sys; from ipbx.store import Store; s = Store(sys.argv[1]); s.migrate(); "
        "s.close(); print('alembic' in sys.modules)"
    )
    for start in ("first", "restart"):
        server = subprocess.run(
            [sys.executable, "-c", code, url], capture_output=True, text=True, timeout=60
        )
        assert (start, server.returncode, server.stdout.strip()) == (start, 0, "False")
    engine = sa.create_engine(url)
    with engine.connect() as connection:
        revision = connection.scalar(sa.text("SELECT version_num FROM alembic_version"))
    engine.dispose()
    assert revision == HEAD_REVISION


def test_a_database_from_a_newer_ipbx_is_refused_with_alembics_reason(tmp_path: Path) -> None:
    """The migrations fail in their own process: the error is theirs, not an exit status."""
    url = f"sqlite:///{tmp_path / 'ipbx.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as connection:
        connection.execute(sa.text("CREATE TABLE alembic_version (version_num VARCHAR(32))"))
        connection.execute(sa.text("INSERT INTO alembic_version VALUES ('9999')"))
    engine.dispose()
    store = Store(url)
    with pytest.raises(MigrationError, match=r"schema migration failed: .*'9999'"):
        store.migrate()
    store.close()
