"""`ipbx serve`: the composition root. It opens the store, builds the PBX (SIP, media,
calls) and the API over it (with the web administration), runs them until told to stop,
and stops them in order. It is the one module that knows both `pbx/` and `api/`
(docs/architecture.md)."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from ipbx.api.server import ApiServer
from ipbx.api.webhooks import Webhooks
from ipbx.config import Config
from ipbx.heap import settle
from ipbx.pbx.core import Pbx
from ipbx.store import Store

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ipbx.api.services import PbxServices

log = logging.getLogger("ipbx")


def site(pbx: PbxServices, webhooks: Webhooks) -> FastAPI:
    """The API with the web administration (imported only when the API is on)."""
    from ipbx.web.site import create_site

    return create_site(pbx, webhooks)


async def serve(config: Config, stop: asyncio.Event) -> None:
    store = Store(config.store_url)
    store.migrate()
    store.apply_extensions(
        [(e.number, e.name, e.password) for e in config.extensions], config.sip.realm
    )
    pbx = Pbx(config, store)
    api = ApiServer(pbx, site)
    try:
        await pbx.start()
        await api.start()
        settle()
        log.info("ipbx ready: %d extension(s), echo test at %s", len(config.extensions),
                 config.echo_test)  # fmt: skip
        await stop.wait()
    finally:
        await api.stop()  # no new requests; webhook workers stop (pending rows stay)
        await pbx.stop()
        await api.close()  # the events of calls the shutdown ended go to the outbox
        pbx.store.close()  # once the store's thread has written all it was given
        store.close()
