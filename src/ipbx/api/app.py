"""The REST API and the WebSocket event feed (docs/api.md).

The web administration's pages (ipbx/web/, a layer above) are served beside it, from `/`,
and sign in with a session cookie instead. Every other endpoint but /openapi.json and /docs wants
``Authorization: Bearer TOKEN`` (a token from ``ipbx token create``): 401 without a
valid one, 403 when its scope is not enough. A token belongs to a tenant and sees that
tenant's data only. Lists take ``?limit=&offset=`` and answer ``{total, limit, offset,
items}``. Errors are ``{"detail": "..."}``; a bad parameter gets 422 with FastAPI's
list naming the field.

No route waits for the database on the event loop, which also relays RTP and runs the
SIP timers. The rule for every route module: a route that only uses the store is a
plain `def` route; FastAPI runs it in its thread pool, where it calls the `Store`
directly (`pbx.store.blocking`), as do the token checks (plain `def` dependencies). A
route that also works on the running PBX (calls, registrations, the configuration in
use: state that belongs to the event loop) is `async` and awaits the store's thread
for its store work (`await pbx.store.run(...)`).
"""

import asyncio
import csv
import io
import json
import logging
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib.metadata import version
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeVar

from fastapi import Depends, FastAPI, HTTPException, Path, Query, Request, WebSocket
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from ipbx.api import models
from ipbx.api.admin import add_token_routes
from ipbx.api.conferences import add_conference_routes
from ipbx.api.configuration import add_configuration_routes, apply_change, owned_item, removable
from ipbx.api.control import call_control
from ipbx.api.messages import add_message_routes
from ipbx.api.metrics import render
from ipbx.api.models import AUTH_ERRORS, NOT_FOUND
from ipbx.api.paging import Limit, Offset, Since, Until, page
from ipbx.api.queues import add_queue_routes
from ipbx.api.recordings import recording_file
from ipbx.api.tokens import Scope, allows, verify_token
from ipbx.api.voicemail import add_voicemail_routes
from ipbx.pbx.analytics import DEFAULT_SERVICE_LEVEL_SECONDS, Grouping, figures, grouped
from ipbx.pbx.call import outcome
from ipbx.pbx.events import DEFAULT_TENANT, Event, type_matches
from ipbx.pbx.extension import Extension
from ipbx.pbx.provisioning import KINDS, Change
from ipbx.pbx.queue.analytics import REPEAT_CALL_SECONDS, QueueGrouping, queued_calls
from ipbx.pbx.queue.analytics import grouped as queue_figures
from ipbx.pbx.queue.log import queue_event
from ipbx.store import ApiTokenRecord, CallRecord, DeliveryRecord, Store

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices
    from ipbx.api.webhooks import Webhooks

log = logging.getLogger("ipbx.api")

F = TypeVar("F", bound=Callable[..., Any])

# A live-feed client that falls this many events behind is disconnected (1013) rather
# than buffered without limit.
FEED_BACKLOG = 1000

Number = Annotated[str, Query(min_length=1, max_length=64, pattern=r"^\+?[0-9*#]+$")]

_bearer = HTTPBearer(
    auto_error=False, description="an API token: `ipbx token create --scope read|admin`"
)


# No `from __future__ import annotations` here: FastAPI reads the endpoints' annotations
# at run time, and the token dependencies are names local to create_app.
def create_app(pbx: "PbxServices", webhooks: "Webhooks") -> FastAPI:
    """The ASGI application over a PBX's services."""
    store = pbx.store.blocking  # for plain `def` routes only
    app = FastAPI(
        title="ipbx",
        version=version("ipbx"),
        description="The ipbx REST API: state, call records, call control, metrics and "
        "live events.",
        responses={422: {"description": "a parameter is wrong; `detail` names it"}},
    )

    def token_of(text: str | None) -> ApiTokenRecord:
        if not text:
            raise HTTPException(
                401, "missing Authorization: Bearer TOKEN", {"WWW-Authenticate": "Bearer"}
            )
        record = verify_token(store, text)
        if record is None:
            raise HTTPException(401, "invalid or revoked API token", {"WWW-Authenticate": "Bearer"})
        return record

    def needs(scope: Scope) -> Callable[..., ApiTokenRecord]:
        def check(
            credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
        ) -> ApiTokenRecord:
            record = token_of(credentials.credentials if credentials else None)
            if not allows(record.scope, scope):
                raise HTTPException(403, f"this needs a token with the {scope} scope")
            return record

        return check

    def listing(path: str, item: type[Any], tag: str) -> Callable[[F], F]:
        page = models.Page[item]  # type: ignore[valid-type]
        return app.get(path, response_model=page, responses=AUTH_ERRORS, tags=[tag])

    Reader = Annotated[ApiTokenRecord, Depends(needs("read"))]
    Admin = Annotated[ApiTokenRecord, Depends(needs("admin"))]

    def system_state(token: ApiTokenRecord) -> bool:
        # Extensions, registrations, live calls and trunks of the configuration file
        # are the default tenant's; other tenants have none of them yet.
        return token.tenant == DEFAULT_TENANT

    @listing("/extensions", models.Extension, "state")
    async def list_extensions(
        token: Reader,
        limit: Limit = 50,
        offset: Offset = 0,
        registered: Annotated[bool | None, Query(description="only (un)registered")] = None,
    ) -> models.Page[models.Extension]:
        """The extensions, each with whether a phone is registered for it."""
        counts: dict[str, int] = {}
        if system_state(token):
            for binding in pbx.location.all_bindings(time.time()):
                counts[binding.aor] = counts.get(binding.aor, 0) + 1
        items = [
            models.Extension(
                number=e.number,
                name=e.name,
                registered=counts.get(e.number, 0) > 0,
                contacts=counts.get(e.number, 0),
            )
            for e in await pbx.store.run(Store.list_extensions, token.tenant)
        ]
        if registered is not None:
            items = [item for item in items if item.registered == registered]
        return page(items, limit, offset)

    @app.post(
        "/extensions",
        response_model=models.Extension,
        status_code=201,
        responses={**AUTH_ERRORS, 409: {"model": models.Problem}},
        tags=["state"],
    )
    async def create_extension(new: models.NewExtension, token: Admin) -> models.Extension:
        """Provision an extension; its phones can register at once. 409 when the number
        is taken (nothing is written). Its other settings: /config/extensions."""
        kind = KINDS["extensions"]
        item = await owned_item(pbx, kind, token.tenant, Extension(**new.model_dump()))
        if await pbx.store.run(Store.get_extension, new.number, token.tenant) is not None:
            raise HTTPException(409, f"number: extension {new.number} exists")
        await apply_change(pbx, Change(token.tenant, [(kind, item)]))
        return models.Extension(number=new.number, name=new.name, registered=False, contacts=0)

    @app.delete(
        "/extensions/{number}",
        status_code=204,
        responses={**AUTH_ERRORS, **NOT_FOUND, 409: {"model": models.Problem}},
        tags=["state"],
    )
    async def delete_extension(
        token: Admin, number: Annotated[str, Path(pattern=r"^[0-9]{1,32}$")]
    ) -> Response:
        """Remove an extension and its registrations; 409 while a group, a forwarding
        or a number still points at it."""
        kind = KINDS["extensions"]
        if await pbx.store.run(Store.get_extension, number, token.tenant) is None:
            raise HTTPException(404, f"number: no extension {number}")
        removable(pbx, kind, number)
        await apply_change(pbx, Change(token.tenant, remove=[(kind, number)]))
        return Response(status_code=204)

    @listing("/registrations", models.Registration, "state")
    async def list_registrations(
        token: Reader,
        limit: Limit = 50,
        offset: Offset = 0,
        extension: Annotated[str | None, Query(max_length=64)] = None,
    ) -> models.Page[models.Registration]:
        """Registered contacts (bindings), by extension."""
        bindings = pbx.location.all_bindings(time.time()) if system_state(token) else []
        items = [
            models.Registration(
                extension=b.aor,
                contact=str(b.uri),
                expires_at=b.expires_at,
                transport=b.source.transport,
                host=b.source.host,
                port=b.source.port,
                user_agent=b.user_agent,
                reachable=b.reachable,
                instance_id=b.instance_id,
            )
            for b in sorted(bindings, key=lambda b: b.aor)
            if extension is None or b.aor == extension
        ]
        return page(items, limit, offset)

    @app.post(
        "/calls",
        response_model=models.Originated,
        status_code=202,
        responses={**AUTH_ERRORS, 404: {"model": models.Problem}},
        tags=["calls"],
    )
    async def originate(order: models.Originate, token: Admin) -> models.Originated:
        """Click-to-call: the agent's phones ring; when one answers, ipbx calls the
        number (an extension, or an outside number through the outbound routes with the
        agent's permission) and connects the two. Follow the call by its call.* events."""
        if not system_state(token):
            raise HTTPException(404, f"agent: no extension {order.agent} in this tenant")
        try:
            call = pbx.originate(order.agent, order.number, order.timeout)
        except PermissionError as exc:
            raise HTTPException(403, f"number: {exc}") from None
        except LookupError as exc:
            field = "number" if pbx.is_extension(order.agent) else "agent"
            raise HTTPException(404, f"{field}: {exc}") from None
        return models.Originated(call_id=call.uid)

    @listing("/calls/active", models.ActiveCall, "calls")
    async def list_active_calls(
        token: Reader,
        limit: Limit = 50,
        offset: Offset = 0,
        number: Annotated[str | None, Query(max_length=64, description="caller or callee")] = None,
    ) -> models.Page[models.ActiveCall]:
        """Calls in progress, oldest first."""
        calls = list(pbx.active_calls()) if system_state(token) else []
        items = [
            models.ActiveCall(
                call_id=call.uid,
                caller=call.from_number,
                callee=call.to_number,
                started=call.started,
                answered=call.answered,
                person_answered=call.person_answered,
            )
            for call in sorted(calls, key=lambda c: c.started)
            if number is None or number in (call.from_number, call.to_number)
        ]
        return page(items, limit, offset)

    app.include_router(call_control(pbx.control, needs("admin")))

    def search_calls(
        token: ApiTokenRecord,
        since: float | None,
        until: float | None,
        number: str | None,
        result: str | None,
        limit: int,
        offset: int,
    ) -> tuple[int, list[CallRecord]]:
        return store.search_call_records(
            token.tenant,
            since=since,
            until=until,
            number=number,
            result=result,
            limit=limit,
            offset=offset,
        )

    Result = Annotated[outcome.Result | None, Query()]
    csv_response: dict[int | str, dict[str, Any]] = {
        200: {
            "content": {"text/csv": {"schema": {"type": "string"}}},
            "description": "one line per call, with a header line",
        },
        **AUTH_ERRORS,
    }

    @app.get(
        "/calls",
        response_model=models.Page[models.Call],
        responses={
            200: {"content": {"text/csv": {"schema": {"type": "string"}}}},
            **AUTH_ERRORS,
        },
        tags=["calls"],
    )
    def list_calls(
        token: Reader,
        since: Since = None,
        until: Until = None,
        number: Annotated[Number | None, Query(description="caller or callee")] = None,
        result: Result = None,
        limit: Limit = 50,
        offset: Offset = 0,
        format: Annotated[
            Literal["json", "csv"], Query(description="csv: the same page as CSV")
        ] = "json",
    ) -> Any:
        """Call detail records, newest first, filtered by start time, number and result."""
        total, records = search_calls(token, since, until, number, result, limit, offset)
        if format == "csv":
            return _csv(records, total)
        return models.Page[models.Call](
            total=total, limit=limit, offset=offset, items=[_call(r) for r in records]
        )

    @app.get(
        "/calls.csv",
        response_class=Response,
        responses=csv_response,
        tags=["calls"],
    )
    def export_calls(
        token: Reader,
        since: Since = None,
        until: Until = None,
        number: Annotated[Number | None, Query(description="caller or callee")] = None,
        result: Result = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
        offset: Offset = 0,
    ) -> Response:
        """Call detail records as CSV (the X-Total-Count header says how many match)."""
        total, records = search_calls(token, since, until, number, result, limit, offset)
        return _csv(records, total)

    @app.get(
        "/calls/{call_id}",
        response_model=models.Call,
        responses={**AUTH_ERRORS, **NOT_FOUND},
        tags=["calls"],
    )
    def get_call(token: Reader, call_id: Annotated[str, Path(max_length=64)]) -> models.Call:
        """One call detail record by its id (the call_id of the call's events)."""
        record = store.call_record(call_id, token.tenant)
        if record is None:
            raise HTTPException(404, f"no call {call_id}")
        return _call(record)

    @app.get(
        "/analytics",
        response_model=models.Analytics,
        responses=AUTH_ERRORS,
        tags=["calls"],
    )
    def get_analytics(
        token: Reader,
        since: Since = None,
        until: Until = None,
        by: Annotated[Grouping | QueueGrouping | None, Query()] = None,
        service_level_seconds: Annotated[
            float, Query(gt=0, le=3600, description="answered within this counts as in time")
        ] = DEFAULT_SERVICE_LEVEL_SECONDS,
    ) -> models.Analytics:
        """Answered, missed and abandoned calls, speed of answer, handling time, service
        level, busiest hour and MOS (definitions in ipbx/pbx/analytics.py), over the
        calls started in [from, to), in all and grouped `by` day, hour, extension or ring
        group (a call counts for each group it rang). `by` queue or agent: the call
        queues' figures from their log instead (ipbx/pbx/queue/analytics.py), of the
        calls that entered a queue in [from, to); each queue's own service level."""
        records = store.call_records_between(since, until, token.tenant)
        total = figures(records, service_level_seconds)
        if by == "queue" or by == "agent":
            # A day's more of the log, to see who called again (first-call resolution).
            later = None if until is None else until + REPEAT_CALL_SECONDS
            events = store.queue_log_between(since, later, tenant=token.tenant)
            calls = queued_calls(queue_event(row) for row in events)
            queues = pbx.queues if system_state(token) else None
            targets = {n: q.config for n, q in queues.queues.items()} if queues else {}
            return models.Analytics(
                total=total, queues=queue_figures(calls, by, targets, since, until)
            )
        groups = grouped(records, by, service_level_seconds) if by is not None else {}
        return models.Analytics(total=total, groups=groups)

    @app.get(
        "/calls/{call_id}/recording",
        response_class=FileResponse,
        responses={
            200: {"content": {"audio/wav": {}}, "description": "the call's recording (WAV)"},
            **AUTH_ERRORS,
            **NOT_FOUND,
        },
        tags=["calls"],
    )
    def get_recording(token: Reader, call_id: Annotated[str, Path(max_length=64)]) -> Response:
        """The recording of a call, as a WAV file (one channel per side, or mixed)."""
        record = store.call_record(call_id, token.tenant)
        path = recording_file(pbx.config.data_dir, record, call_id)
        return FileResponse(path, media_type="audio/wav", filename=f"{call_id}.wav")

    @listing("/trunks", models.Trunk, "state")
    async def list_trunks(
        token: Reader, limit: Limit = 50, offset: Offset = 0
    ) -> models.Page[models.Trunk]:
        """The trunks' registration, health and channels in use."""
        trunks = list(pbx.trunks) if system_state(token) else []
        items = [trunk.status() for trunk in trunks]
        return page(items, limit, offset)

    @listing("/webhooks/deliveries", models.Delivery, "webhooks")
    def list_deliveries(
        token: Admin,
        limit: Limit = 50,
        offset: Offset = 0,
        status: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
        event_id: Annotated[str | None, Query(max_length=32)] = None,
        webhook: Annotated[str | None, Query(max_length=2048, description="its URL")] = None,
    ) -> models.Page[models.Delivery]:
        """The webhook delivery log, newest first (admin scope: it shows the payloads)."""
        total, rows = store.deliveries(
            token.tenant,
            webhook=webhook,
            status=status,
            event_id=event_id,
            limit=limit,
            offset=offset,
        )
        return models.Page[models.Delivery](
            total=total, limit=limit, offset=offset, items=[_delivery(row) for row in rows]
        )

    @app.get(
        "/metrics",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}},
                   **AUTH_ERRORS},
        tags=["state"],
    )  # fmt: skip
    async def get_metrics(token: Reader) -> Response:
        """Prometheus metrics: calls, registrations, SIP messages, RTP packets, webhooks
        (docs/api.md lists them)."""
        queue_depth = await webhooks.queue_depth()
        return Response(
            render(pbx, webhooks, queue_depth),
            media_type="text/plain; version=0.0.4; charset=utf-8",
        )

    @app.websocket("/events")
    async def live_events(
        websocket: WebSocket,
        token: str | None = None,
        type: str | None = None,
        extension: str | None = None,
        tenant: str | None = None,
    ) -> None:
        """Events as they happen, one JSON object per message (Event.as_dict()).

        The token comes as ``?token=`` (browsers cannot set headers on a WebSocket) or
        in the Authorization header. Filters: ``type`` (comma-separated patterns such
        as ``call.*``), ``extension`` (caller, callee or extension in the data),
        ``tenant`` (must be the token's own). A refused connection is accepted and then
        closed with 4401 (token) or 4403 (tenant) and the reason.
        """
        header = websocket.headers.get("authorization", "")
        text = token or (header[7:] if header.lower().startswith("bearer ") else None)
        record = await pbx.store.run(verify_token, text) if text else None
        if record is None:
            await websocket.accept()
            await websocket.close(4401, "missing or invalid API token")
            return
        if tenant is not None and tenant != record.tenant:
            await websocket.accept()
            await websocket.close(4403, f"this token cannot see tenant {tenant}")
            return
        patterns = [p.strip() for p in (type or "*").split(",") if p.strip()] or ["*"]
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Event | None] = asyncio.Queue()

        def offer(event: Event) -> None:
            # Called in the publisher's thread; in a server, the loop's.
            if queue.qsize() >= FEED_BACKLOG:
                queue.put_nowait(None)  # the sender closes: this client is too slow
            else:
                queue.put_nowait(event)

        def on_event(event: Event) -> None:
            if event.tenant != record.tenant or not type_matches(patterns, event.type):
                return
            if extension is not None and not event.involves(extension):
                return
            loop.call_soon_threadsafe(offer, event)

        # Subscribed before the handshake completes: a client that sees the connection
        # open sees every event published after that.
        unsubscribe = pbx.events.subscribe(on_event)
        try:
            await websocket.accept()
            # Events go out from their own task; this one reads (and ignores) what the
            # client sends until it goes away, so a disconnect ends the handler at once.
            sender = asyncio.create_task(_send_events(websocket, queue))
            try:
                while (await websocket.receive())["type"] != "websocket.disconnect":
                    pass
            finally:
                sender.cancel()
        finally:
            unsubscribe()

    add_configuration_routes(app, pbx, needs("admin"))
    add_token_routes(app, store, needs("admin"))
    add_voicemail_routes(app, pbx.mailboxes, needs("read"), needs("admin"), system_state)
    add_queue_routes(app, pbx, needs("read"), needs("admin"), system_state)
    add_conference_routes(app, pbx, needs("read"), needs("admin"), system_state)
    add_message_routes(app, pbx, needs("read"), needs("admin"), system_state)

    @app.exception_handler(ValueError)
    async def _value_error(request: Request, exc: ValueError) -> JSONResponse:
        # A value the database or the models cannot take is the client's, not a crash.
        return JSONResponse({"detail": str(exc)}, status_code=400)

    return app


async def _send_events(websocket: WebSocket, queue: asyncio.Queue[Event | None]) -> None:
    try:
        while True:
            event = await queue.get()
            if event is None:
                await websocket.close(1013, "too many events unread")
                return
            await websocket.send_text(event.to_json())
    except Exception as exc:  # the client went away mid-send: the reader ends the handler
        log.debug("event feed: send failed: %s", exc)


def _call(record: CallRecord) -> models.Call:
    talked = record.ended - record.answered if record.answered is not None else 0.0
    return models.Call(
        call_id=record.call_id,
        caller=record.caller,
        callee=record.callee,
        started=record.started,
        answered=record.answered,
        person_answered=record.person_answered,
        ended=record.ended,
        result=record.result,
        duration=round(max(talked, 0.0), 3),
        digits=record.digits,
        recording=record.recording,
        path=[p for p in record.path.split(",") if p],
        end_reason=record.end_reason,
        legs=[
            models.Leg(
                role=leg.role,
                peer=leg.peer,
                codec=leg.codec,
                packets_received=leg.packets_received,
                packets_lost=leg.packets_lost,
                loss_percent=round(leg.loss_percent, 3),
                jitter_ms=leg.jitter_ms,
                rtt_ms=leg.rtt_ms,
                mos=leg.mos,
            )
            for leg in record.legs
        ],
    )


CSV_COLUMNS = (
    "call_id", "caller", "callee", "started", "answered", "ended", "result", "duration",
    "digits", "recording", "path", "person_answered",
)  # fmt: skip


def _iso(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _csv(records: Sequence[CallRecord], total: int) -> Response:
    """Times in ISO 8601 UTC (what spreadsheets read), duration in seconds talked."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(CSV_COLUMNS)
    for record in records:
        call = _call(record)
        writer.writerow(
            [
                call.call_id, call.caller, call.callee, _iso(call.started),
                _iso(call.answered), _iso(call.ended), call.result, f"{call.duration:g}",
                call.digits, call.recording or "", " ".join(call.path),
                _iso(call.person_answered),
            ]
        )  # fmt: skip
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={
            "X-Total-Count": str(total),
            "Content-Disposition": 'attachment; filename="calls.csv"',
        },
    )


def _delivery(row: DeliveryRecord) -> models.Delivery:
    try:
        payload = json.loads(row.payload)
    except ValueError:
        payload = {"raw": row.payload}
    return models.Delivery(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        webhook=row.webhook,
        tenant=row.tenant,
        status=row.status,
        attempts=row.attempts,
        created=row.created,
        next_attempt=row.next_attempt,
        delivered_at=row.delivered_at,
        last_error=row.last_error,
        payload=payload if isinstance(payload, dict) else {"value": payload},
    )
