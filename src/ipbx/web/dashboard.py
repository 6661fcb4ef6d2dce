"""The dashboard: live calls with their durations, registrations, trunk states and
today's figures; and the server-sent event stream that live pages follow (`events`,
`?feed=calls` or `queues`). On each event the page's script (static/live.js) fetches its
live panel again, so a new call shows without a reload; durations tick in the browser
from each call's start time."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Literal

from fastapi import FastAPI, Request, Response
from fastapi.responses import StreamingResponse

from ipbx.pbx.analytics import DEFAULT_SERVICE_LEVEL_SECONDS, figures
from ipbx.pbx.events import DEFAULT_TENANT, Event
from ipbx.store import Store
from ipbx.web.visitor import Visitor, page, visitor

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices

# A comment line this often keeps proxies from closing a quiet stream, and finds a
# browser that went away.
KEEPALIVE_SECONDS = 15.0
# Events a slow browser may fall behind by; more are dropped (each only makes the page
# fetch the live panel again, which shows the state as it is).
BACKLOG = 100
# What each live page follows: the dashboard calls and registrations, the queue
# wallboard callers joining and leaving and the agents' states.
Feed = Literal["calls", "queues"]
FEEDS: dict[str, tuple[str, ...]] = {
    "calls": ("call.", "registration."),
    "queues": ("queue.", "agent.", "call.ended"),
}


def add_dashboard(app: FastAPI, pbx: PbxServices) -> None:
    async def live_panel(request: Request, who: Visitor, template: str) -> Response:
        now = time.time()
        # Calls, registrations and trunks of the configuration file are the default
        # tenant's (as the API shows them).
        own = who.tenant == DEFAULT_TENANT
        midnight = time.mktime((*time.localtime(now)[:3], 0, 0, 0, 0, 0, -1))
        records = await pbx.store.run(Store.call_records_between, midnight, None, who.tenant)
        response: Response = page(
            request,
            template,
            who,
            now=now,
            calls=sorted(pbx.active_calls(), key=lambda c: c.started) if own else [],
            bindings=sorted(pbx.location.all_bindings(now), key=lambda b: b.aor) if own else [],
            trunks=[t.status() for t in pbx.trunks] if own else [],
            today=figures(records, DEFAULT_SERVICE_LEVEL_SECONDS),
        )
        return response

    @app.get("/admin/{tenant}/", include_in_schema=False)
    async def dashboard(request: Request, tenant: str) -> Response:
        return await live_panel(request, await visitor(pbx, request, tenant), "dashboard.html")

    @app.get("/admin/{tenant}/live", include_in_schema=False)
    async def live(request: Request, tenant: str) -> Response:
        return await live_panel(request, await visitor(pbx, request, tenant), "live.html")

    @app.get("/admin/{tenant}/events", include_in_schema=False)
    async def events(request: Request, tenant: str, feed: Feed = "calls") -> Response:
        await visitor(pbx, request, tenant)
        return StreamingResponse(
            _stream(pbx, tenant, request, FEEDS[feed]),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-store"},
        )


async def _stream(
    pbx: PbxServices, tenant: str, request: Request, prefixes: tuple[str, ...]
) -> AsyncIterator[str]:
    """The tenant's events whose type starts with one of `prefixes`, as server-sent
    events named by their type."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[Event] = asyncio.Queue(BACKLOG)

    def on_event(event: Event) -> None:
        if event.tenant == tenant and event.type.startswith(prefixes):
            loop.call_soon_threadsafe(_offer, queue, event)

    unsubscribe = pbx.events.subscribe(on_event)
    try:
        yield ": connected\n\n"
        while not await request.is_disconnected():
            try:
                event = await asyncio.wait_for(queue.get(), KEEPALIVE_SECONDS)
            except TimeoutError:
                yield ": keep-alive\n\n"
                continue
            yield f"event: {event.type}\ndata: {event.to_json()}\n\n"
    finally:
        unsubscribe()


def _offer(queue: asyncio.Queue[Event], event: Event) -> None:
    if not queue.full():
        queue.put_nowait(event)
