"""The API against a real PBX object and a real store (SQLite in a temporary folder):
the PBX is built but not started, so no SIP socket is opened; tests put registrations,
calls and records where the running server would."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ipbx.config import Config
from ipbx.pbx.extension import Extension
from ipbx.pbx.trunk_config import TrunkConfig
from ipbx.store import AsyncStore, Store
from tests.support.apiclient import Api, serve_api


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    """A migrated store alone (SQLite in the test's folder)."""
    opened = Store(f"sqlite:///{tmp_path / 'ipbx.db'}")
    opened.migrate()
    yield opened
    opened.close()


@pytest.fixture
def store_thread(store: Store) -> Iterator[AsyncStore]:
    """`store` as code on the event loop reaches it: through its own thread."""
    threaded = AsyncStore(store)
    yield threaded
    threaded.close()


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Api]:
    config = Config(
        data_dir=tmp_path / "data",
        extensions=[
            Extension(number="1000", name="Alice", password="secret1000"),
            Extension(number="1001", name="Bob", password="secret1001"),
        ],
        trunks=[TrunkConfig(name="provider", host=["127.0.0.1:5099"])],
    )
    yield from serve_api(config)
