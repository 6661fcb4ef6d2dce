"""The queue wallboard: each queue's waiting callers (position, how long), its agents
and their states, and today's service level; live through the `queues` event feed. The
same picture as GET /queues/{name}."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response

from ipbx.pbx.events import DEFAULT_TENANT
from ipbx.web.visitor import Visitor, page, visitor

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices


def add_wallboard(app: FastAPI, pbx: PbxServices) -> None:
    def board(request: Request, who: Visitor, template: str) -> Response:
        # The queues are the configuration file's and provisioned routing: the default
        # tenant's, as GET /queues shows them.
        desk = pbx.queues if who.tenant == DEFAULT_TENANT else None
        queues = [desk.status(name) for name in sorted(desk.queues)] if desk else []
        response: Response = page(request, template, who, queues=queues, now=time.time())
        return response

    @app.get("/admin/{tenant}/queues", include_in_schema=False)
    async def wallboard(request: Request, tenant: str) -> Response:
        return board(request, await visitor(pbx, request, tenant), "wallboard.html")

    @app.get("/admin/{tenant}/queues/live", include_in_schema=False)
    async def wallboard_live(request: Request, tenant: str) -> Response:
        return board(request, await visitor(pbx, request, tenant), "wallboard_live.html")
