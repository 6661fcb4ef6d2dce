"""The API against a real PBX object and a real store (SQLite in a temporary folder):
the PBX is built but not started, so no SIP socket is opened; tests put registrations,
calls and records where the running server would."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from ipbx.api.app import create_app
from ipbx.api.tokens import create_token
from ipbx.api.webhooks import Webhooks
from ipbx.config import Config, Extension, TrunkConfig
from ipbx.store import AsyncStore, Store
from tests.api.apiclient import Api, make_pbx


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


def serve_api(config: Config) -> Iterator[Api]:
    """The app over a PBX built from `config`, with an admin and a read token of the
    default tenant and an admin token of tenant acme (for fixtures that need another
    configuration than `api`'s)."""
    store = Store(config.store_url)
    store.migrate()
    store.apply_extensions(
        [(e.number, e.name, e.password) for e in config.extensions], config.sip.realm
    )
    loop = asyncio.new_event_loop()
    pbx = make_pbx(config, store, loop)
    app = create_app(pbx, Webhooks(pbx.store, [], pbx.events))
    admin, _ = create_token(store, "admin")
    reader, _ = create_token(store, "read")
    other, _ = create_token(store, "admin", tenant="acme")
    with TestClient(app) as client:
        yield Api(pbx, store, client, admin, reader, other)
    pbx.calls.close()
    loop.close()
    pbx.store.close()
    store.close()
