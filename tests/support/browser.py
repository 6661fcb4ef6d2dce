"""A browser's SIP stack as RFC 7118 draws it (SIP.js's own test messages look the same):
one WebSocket to the server with the `sip` subprotocol, a Via and a Contact under a random
`.invalid` host, `;ob` on the Contact, digest answered to 401/407. A `websockets` client;
the test says which messages go out and reads what comes back, one SIP message per
WebSocket message."""

from __future__ import annotations

import secrets
import ssl
import uuid
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any

from websockets.sync.client import ClientConnection, connect
from websockets.typing import Subprotocol

from ipbx.sip.auth import authorization
from ipbx.sip.message import Request, Response, parse_datagram
from tests.support.sipclient import LOOPBACK, failure_ack


def insecure_context() -> ssl.SSLContext:
    """Trust the server's self-signed certificate, as a user who accepted it."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


@dataclass
class Browser:
    """Extension `user` signed in from a browser tab over `url` (ws:// or wss://)."""

    url: str
    user: str
    password: str
    host: str = field(default_factory=lambda: f"{secrets.token_hex(6)}.invalid")
    instance: str = field(default_factory=lambda: str(uuid.uuid4()))
    websocket: ClientConnection = field(init=False)
    _stack: ExitStack = field(init=False, default_factory=ExitStack)

    def __post_init__(self) -> None:
        secure = self.url.startswith("wss:")
        self.transport = "WSS" if secure else "WS"
        self.websocket = self._stack.enter_context(
            connect(
                self.url,
                subprotocols=[Subprotocol("sip")],
                ssl=insecure_context() if secure else None,
                open_timeout=15,
            )
        )
        self.contact = f"<sip:{secrets.token_hex(4)}@{self.host};transport=ws;ob>"

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        """Close the WebSocket, as a tab that is closed does."""
        self._stack.close()

    def send(self, data: bytes) -> None:
        self.websocket.send(data.decode())

    def receive(self, timeout: float = 3.0) -> Request | Response:
        return parse_datagram(self.websocket.recv(timeout, decode=False))

    def final(self, timeout: float = 3.0) -> Response:
        """The next final response, past provisional ones."""
        while True:
            msg = self.receive(timeout)
            if isinstance(msg, Response) and msg.status >= 200:
                return msg

    def next_request(self, method: str, timeout: float = 3.0) -> Request:
        while True:
            msg = self.receive(timeout)
            if isinstance(msg, Request) and msg.method == method:
                return msg

    def message(
        self,
        method: str,
        uri: str,
        *,
        call_id: str,
        cseq: int,
        from_: str | None = None,
        to: str | None = None,
        headers: tuple[str, ...] = (),
        body: bytes = b"",
        content_type: str = "application/sdp",
    ) -> bytes:
        """A request from this browser; `from_` and `to` (with their tags) place it in a
        dialog."""
        branch = f"z9hG4bK{secrets.token_hex(6)}"
        contact = self.contact
        if method == "REGISTER":
            # As RFC 7118 §8's browser: outbound (RFC 5626), its connection as the flow.
            contact += f';reg-id=1;+sip.instance="<urn:uuid:{self.instance}>"'
            headers = ("Supported: path, outbound, gruu", *headers)
        lines = [
            f"{method} {uri} SIP/2.0",
            f"Via: SIP/2.0/{self.transport} {self.host};branch={branch};rport",
            "Max-Forwards: 70",
            f"From: {from_ or f'<sip:{self.user}@{LOOPBACK}>;tag=browser'}",
            f"To: {to or f'<{uri}>'}",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} {method}",
            f"Contact: {contact}",
            *headers,
            *([f"Content-Type: {content_type}"] if body else []),
            f"Content-Length: {len(body)}",
            "",
            "",
        ]
        return "\r\n".join(lines).encode() + body

    def send_authenticated(
        self,
        method: str,
        uri: str,
        *,
        to: str | None = None,
        headers: tuple[str, ...] = (),
        body: bytes = b"",
    ) -> Response | None:
        """Send a request and answer its 401/407 with digest (ACKing an INVITE's 407);
        the final response to the first attempt when it was not a challenge, else None
        (the answer to the second is the test's to wait for)."""
        call_id = secrets.token_hex(8)
        first = self.message(
            method, uri, call_id=call_id, cseq=1, to=to, headers=headers, body=body
        )
        self.send(first)
        response = self.final()
        if response.status not in (401, 407):
            return response
        name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        answer = "Authorization" if response.status == 401 else "Proxy-Authorization"
        challenge = response.headers.get_all(name)[0]
        if method == "INVITE":
            self.send(failure_ack(response, uri))
        creds = authorization(challenge, method, uri, self.user, self.password)
        extra = (*headers, f"{answer}: {creds}")
        self.send(
            self.message(method, uri, call_id=call_id, cseq=2, to=to, headers=extra, body=body)
        )
        return None

    def register(self, expires: int = 600) -> Response:
        aor = f"<sip:{self.user}@{LOOPBACK}>"
        headers = (f"Expires: {expires}",)
        first = self.send_authenticated("REGISTER", f"sip:{LOOPBACK}", to=aor, headers=headers)
        return first if first is not None else self.final()
