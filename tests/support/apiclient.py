"""What the API tests share: the app under test with its PBX, store and tokens."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from fastapi.testclient import TestClient

from ipbx.config import Config
from ipbx.pbx.core import Pbx
from ipbx.store import Store


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
