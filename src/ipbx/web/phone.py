"""The softphone page: `GET /phone` on the API listener, a WebRTC phone in a browser tab.

The page (templates/phone.html, static/phone.js) signs in as an extension with its SIP
password and runs JsSIP (static/jssip.min.js, vendored with its licences) over the SIP
WebSocket listener named here: `wss://` when `sip.listen` has one, else `ws://`. A
listener on every interface (0.0.0.0, ::) is reached at the host the page came from;
one bound to an address, at that address.

`GET /phone/history` is the extension's own call history, for the same credentials as
its SIP account (HTTP Basic, checked against the HA1 the registrar uses): the default
tenant's extensions, as the registrar serves them, and the calls of that tenant where
the extension is caller or callee. Failed sign-ins count per source address as failed
digests do on SIP (`sip.ban_failures` in `sip.ban_window` seconds ban the source for
`sip.ban_seconds`: 429).
"""

from __future__ import annotations

import base64
import binascii
import hmac
import time
from typing import TYPE_CHECKING

from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import BaseModel

from ipbx.config import ListenAddress
from ipbx.pbx.events import DEFAULT_TENANT
from ipbx.pbx.guard import Guard
from ipbx.sip.auth import ha1
from ipbx.store import CallRecord, ExtensionRecord, Store
from ipbx.web.visitor import page

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices

HISTORY_LENGTH = 20
_WILDCARDS = frozenset({"0.0.0.0", "::"})


class PhoneCall(BaseModel):
    """One call of the extension's history as the page lists it."""

    started: float
    caller: str
    callee: str
    result: str
    duration: float  # seconds talked


class PhoneHistory(BaseModel):
    extension: str
    name: str
    calls: list[PhoneCall]


def websocket_url(listen: list[ListenAddress], page_host: str) -> str | None:
    """The URL of the SIP WebSocket listener a page reached at `page_host` connects to:
    the secure one first; None when there is no WebSocket listener."""
    for transport in ("wss", "ws"):
        for address in listen:
            if address.transport == transport:
                host = page_host if address.host in _WILDCARDS else address.host
                if ":" in host and not host.startswith("["):
                    host = f"[{host}]"
                return f"{transport}://{host}:{address.port}"
    return None


def add_phone_page(app: FastAPI, pbx: PbxServices) -> None:
    sip = pbx.config.sip
    guard = Guard(sip.ban_failures, sip.ban_window, sip.ban_seconds, sip.trusted)

    @app.get("/phone", include_in_schema=False)
    async def phone(request: Request) -> Response:
        page_host = request.url.hostname or "localhost"
        url = websocket_url(pbx.config.sip.listen, page_host)
        domain = pbx.config.sip.domain or page_host
        response: Response = page(request, "phone.html", None, websocket=url, domain=domain)
        return response

    @app.get("/phone/history", include_in_schema=False)
    async def history(request: Request) -> PhoneHistory:
        source = request.client.host if request.client else ""
        now = time.monotonic()
        if not guard.admits(source, now):
            raise HTTPException(429, "Too many wrong passwords: try again later.")
        credentials = _basic(request.headers.get("authorization", ""))
        if credentials is None:
            raise HTTPException(401, "Sign in with the extension's number and SIP password.")
        number, password = credentials
        extension = await pbx.store.run(Store.get_extension, number, DEFAULT_TENANT)
        if extension is None or not _password_matches(extension, pbx.config.sip.realm, password):
            guard.failed(source, now)
            raise HTTPException(401, "Wrong extension or password.")
        guard.succeeded(source)
        _, records = await pbx.store.run(
            Store.search_call_records,
            DEFAULT_TENANT,
            number=extension.number,
            limit=HISTORY_LENGTH,
        )
        return PhoneHistory(
            extension=extension.number,
            name=extension.name,
            calls=[_phone_call(record) for record in records],
        )


def _basic(header: str) -> tuple[str, str] | None:
    """(user, password) of an `Authorization: Basic` header (RFC 7617), or None."""
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        text = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user, colon, password = text.partition(":")
    return (user, password) if colon and user else None


def _password_matches(extension: ExtensionRecord, realm: str, password: str) -> bool:
    """The SIP password of `extension`, by the HA1 its digest checks use."""
    return hmac.compare_digest(ha1(extension.number, realm, password), extension.ha1_md5)


def _phone_call(record: CallRecord) -> PhoneCall:
    talked = record.ended - record.answered if record.answered is not None else 0.0
    return PhoneCall(
        started=record.started,
        caller=record.caller,
        callee=record.callee,
        result=record.result,
        duration=round(max(talked, 0.0), 1),
    )
