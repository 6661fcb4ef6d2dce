"""Browser tabs for the WebRTC bench: SIP over WebSocket (RFC 7118), one wss://
connection per tab, signed in as its own extension, as JsSIP and SIP.js do it: the
`sip` subprotocol, Via and Contact under a random `.invalid` host with `;ob`, REGISTER
with SIP Outbound's reg-id and +sip.instance (RFC 5626), digest (RFC 7616) on 401/407.

Like bench/sipua.py (whose parsing and digest it uses) it is independent of ipbx's own
SIP stack. The transport is reliable, so nothing is resent (RFC 3261 17.1.1.2); every
wait is bounded. Requests ipbx sends the tab (a BYE, an OPTIONS) get a 200.
"""

from __future__ import annotations

import asyncio
import secrets
import uuid

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from bench.sipua import (
    LOOPBACK,
    Message,
    SipFailure,
    build_request,
    build_response,
    digest_authorization,
    md5_challenge,
    new_branch,
    parse_message,
    uri_of,
)
from tests.support.browser import insecure_context


class BrowserTab:
    """Extension `user` signed in from a browser tab over `url` (wss:// or ws://). Its
    one call's From carries the display name "call <index>", which ipbx copies to the
    callee (bench/sipua.py pairs the callee's leg by it)."""

    def __init__(self, url: str, user: str, password: str, index: int) -> None:
        self.url, self.user, self.password, self.index = url, user, password, index
        self.transport = "WSS" if url.startswith("wss:") else "WS"
        self.host = f"{secrets.token_hex(6)}.invalid"
        self.contact = f"<sip:{secrets.token_hex(4)}@{self.host};transport=ws;ob>"
        self._instance = str(uuid.uuid4())
        self._websocket: ClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._waiting: dict[tuple[str, int, str], asyncio.Future[Message]] = {}
        self._dialog: tuple[str, str, str, str] | None = None  # call-id, from, to, target

    async def open(self, timeout: float = 10.0) -> None:
        # No WebSocket pings: the bench's send loop does not run this event loop.
        self._websocket = await connect(
            self.url,
            subprotocols=[Subprotocol("sip")],
            ssl=insecure_context() if self.transport == "WSS" else None,
            open_timeout=timeout,
            ping_interval=None,
        )
        self._reader = asyncio.create_task(self._read())

    async def close(self) -> None:
        if self._websocket is not None:
            await self._websocket.close()
        if self._reader is not None:
            self._reader.cancel()
        for waiter in self._waiting.values():
            waiter.cancel()

    async def register(self, timeout: float = 10.0) -> None:
        aor = f"<sip:{self.user}@{LOOPBACK}>"
        contact = f'{self.contact};reg-id=1;+sip.instance="<urn:uuid:{self._instance}>"'
        extra = [f"Contact: {contact}", "Supported: path, outbound, gruu", "Expires: 600"]
        ok = await self._authenticated("REGISTER", f"sip:{LOOPBACK}", aor, extra, b"", timeout)
        if ok.status != 200:
            raise SipFailure(f"REGISTER {self.user}: {ok.first_line}")

    async def call(self, callee: str, offer: bytes, timeout: float = 10.0) -> bytes:
        """INVITE `callee` with `offer` (digest on 407), ACK its 200; the answer."""
        uri = f"sip:{callee}@{LOOPBACK}"
        extra = [f"Contact: {self.contact}"]
        ok = await self._authenticated("INVITE", uri, f"<{uri}>", extra, offer, timeout)
        if ok.status != 200:
            raise SipFailure(f"call {self.index}: {ok.first_line}")
        call_id, cseq, _ = ok.key
        target = uri_of(ok.header("contact")) or uri
        self._dialog = (call_id, ok.header("from"), ok.header("to"), target)
        ack = build_request("ACK", target, self._via(), call_id, cseq, *self._dialog[1:3], [])
        await self._send(ack)
        return ok.body

    async def hang_up(self, timeout: float = 10.0) -> bool:
        """BYE the call; whether it got its 200."""
        if self._dialog is None:
            return False
        call_id, from_, to, target = self._dialog
        self._dialog = None
        bye = build_request("BYE", target, self._via(), call_id, 3, from_, to, [])
        try:
            return (await self._transaction(bye, (call_id, 3, "BYE"), timeout)).status == 200
        except (SipFailure, ConnectionClosed):
            return False

    # ------------------------------------------------------------------------------------

    def _via(self, branch: str | None = None) -> str:
        return f"SIP/2.0/{self.transport} {self.host};branch={branch or new_branch()};rport"

    async def _send(self, data: bytes) -> None:
        assert self._websocket is not None
        await self._websocket.send(data.decode())

    async def _authenticated(
        self, method: str, uri: str, to: str, extra: list[str], body: bytes, timeout: float
    ) -> Message:
        """Send the request, answer a 401/407 challenge once; the final response."""
        call_id, tag = secrets.token_hex(8), secrets.token_hex(4)
        from_ = f'"call {self.index}" <sip:{self.user}@{LOOPBACK}>;tag={tag}'
        auth: list[str] = []
        cseq = 1
        while True:
            branch = new_branch()
            data = build_request(
                method, uri, self._via(branch), call_id, cseq, from_, to, [*extra, *auth], body
            )
            final = await self._transaction(data, (call_id, cseq, method), timeout)
            if final.status not in (401, 407) or cseq == 2:
                return final
            if method == "INVITE":
                # The ACK to a non-2xx final: same branch, the response's To (17.1.1.3).
                ack = build_request(
                    "ACK", uri, self._via(branch), call_id, cseq, from_, final.header("to"), []
                )
                await self._send(ack)
            name = "www-authenticate" if final.status == 401 else "proxy-authenticate"
            answer = "Authorization" if final.status == 401 else "Proxy-Authorization"
            challenge = md5_challenge(final.all(name))
            value = digest_authorization(challenge, method, uri, self.user, self.password)
            auth, cseq = [f"{answer}: {value}"], 2

    async def _transaction(self, data: bytes, key: tuple[str, int, str], timeout: float) -> Message:
        final: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._waiting[key] = final
        try:
            await self._send(data)
            return await asyncio.wait_for(final, timeout)
        except TimeoutError:
            raise SipFailure(f"no final response to {key} in {timeout:.0f} s") from None
        finally:
            self._waiting.pop(key, None)

    async def _read(self) -> None:
        assert self._websocket is not None
        try:
            async for frame in self._websocket:
                data = frame.encode() if isinstance(frame, str) else frame
                if data.strip():  # keep-alive CRLFs carry nothing
                    await self._received(parse_message(data))
        except ConnectionClosed:
            return

    async def _received(self, message: Message) -> None:
        if message.status is not None:
            waiter = self._waiting.get(message.key)
            if message.status >= 200 and waiter is not None and not waiter.done():
                waiter.set_result(message)
        elif message.method != "ACK":
            if message.method == "BYE":
                self._dialog = None
            await self._send(build_response(message, 200, "", self.contact))
