"""What the API tests share: the app under test with its PBX, store and tokens."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass

from fastapi.testclient import TestClient

from ipbx.api.tokens import create_token
from ipbx.api.webhooks import Webhooks
from ipbx.config import Config
from ipbx.pbx.core import Pbx
from ipbx.store import Store
from ipbx.web.site import create_site


@dataclass
class Api:
    pbx: Pbx
    store: Store
    client: TestClient
    admin: str
    reader: str
    other_tenant: str

    def headers(self, token: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {token or self.admin}"}


def make_pbx(config: Config, store: Store, loop: asyncio.AbstractEventLoop) -> Pbx:
    async def build() -> Pbx:
        return Pbx(config, store)  # the SIP endpoint wants a running loop to belong to

    return loop.run_until_complete(build())


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
    app = create_site(pbx, Webhooks(pbx.store, [], pbx.events))
    admin, _ = create_token(store, "admin")
    reader, _ = create_token(store, "read")
    other, _ = create_token(store, "admin", tenant="acme")
    with TestClient(app) as client:
        yield Api(pbx, store, client, admin, reader, other)
    pbx.calls.close()
    loop.close()
    pbx.store.close()
    store.close()
