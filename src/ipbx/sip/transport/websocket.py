"""SIP over WebSocket (RFC 7118): the transport browsers' SIP stacks (JsSIP, SIP.js) speak.

The WebSocket protocol itself (RFC 6455: the HTTP upgrade, frames, masking, ping/pong,
the closing handshake) is the `websockets` package's sans-I/O `ServerProtocol`, driven
here from an asyncio protocol like the TCP and TLS connections of stream.py (`wss://` is
the same server behind the TLS listener's certificate). What is SIP's:

- The handshake must agree on the `sip` subprotocol (RFC 7118 §4.1); a client that does not
  offer it gets a 400 and no connection.
- One WebSocket message carries one SIP message (RFC 7118 §4.2), in a text frame or a
  binary one: it is framed by the WebSocket, as a datagram is, so a Content-Length is
  honoured when present and not needed otherwise (sip/message.py `parse_datagram`). A
  malformed message gets its 400 and the connection stays up, since no boundary was lost.
  Messages go out as text frames, as binary ones when they are not UTF-8.
- A CRLFCRLF message is a keep-alive ping and gets a CRLF pong (RFC 5626 §4.4.1), as on
  TCP; WebSocket pings are answered by the protocol itself.
- A browser cannot be connected to: requests reach it over its connection while it lives
  (stream.py never dials a WebSocket address), and the receiver is told when it closes,
  so that what was bound to it goes with it.
- A browser names the page that opens a WebSocket in the handshake's Origin (RFC 6455
  §4.1, §10.2); a handshake from a page of another origin gets a 403, so that a site the
  user visits cannot reach ipbx from the user's browser. Accepted: the origins listed
  (`sip.websocket_origins`; `*` for any), and pages of the host the WebSocket was
  reached at (the Origin's host is the Host header's, any scheme and port: the web
  pages are served on another port of the same host). Clients that send no Origin
  (baresip, SIPp, scripts) are not browsers and are accepted.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from urllib.parse import urlsplit

from websockets.datastructures import MultipleValuesError
from websockets.frames import Frame, Opcode
from websockets.http11 import Request as Handshake
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from ipbx.sip.message import StreamFramer
from ipbx.sip.transport.stream import StreamConnection, StreamTransports

log = logging.getLogger("ipbx.sip.websocket")

SUBPROTOCOL = Subprotocol("sip")
ANY_ORIGIN = "*"


def check_origin(value: str) -> str:
    """An origin as the configuration lists it: `*`, or scheme://host[:port] of a web
    page (http or https, nothing after the port), lower-cased as browsers send it."""
    if value == ANY_ORIGIN:
        return value
    try:
        parts = urlsplit(value)
        # .port raises for a port that is not a number.
        web = parts.scheme in ("http", "https") and bool(parts.hostname) and parts.port != 0
    except ValueError:
        web = False
    if not web:
        raise ValueError(f"{value!r}: expected an origin such as https://pbx.example.com")
    if parts.path or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{value!r}: an origin is scheme://host[:port], nothing more")
    return value.lower()


def origin_allowed(handshake: Handshake, allowed: Sequence[str]) -> bool:
    """Whether a handshake's Origin may open a WebSocket (see the module docstring)."""
    try:
        origin = handshake.headers.get("Origin")
    except MultipleValuesError:
        return False
    if origin is None or ANY_ORIGIN in allowed or origin.lower() in allowed:
        return True
    host = handshake.headers.get("Host")
    try:
        return host is not None and urlsplit(origin).hostname == urlsplit(f"//{host}").hostname
    except ValueError:
        return False


class WebSocketConnection(StreamConnection):
    """One browser's WebSocket connection, named like a stream connection by the peer's
    (transport, host, port)."""

    def __init__(self, owner: StreamTransports, transport_name: str) -> None:
        super().__init__(owner, transport_name)
        self.websocket = ServerProtocol(
            subprotocols=[SUBPROTOCOL], max_size=owner.max_message_size, logger=log
        )
        self._fragments: list[bytes] = []

    def data_received(self, data: bytes) -> None:
        self.last_active = asyncio.get_running_loop().time()
        websocket = self.websocket
        websocket.receive_data(data)
        for event in websocket.events_received():
            if isinstance(event, Handshake):
                self._handshake(event)
            elif isinstance(event, Frame):
                self._frame(event)
        self._flush()

    def _handshake(self, handshake: Handshake) -> None:
        websocket = self.websocket
        if origin_allowed(handshake, self.owner.websocket_origins):
            response = websocket.accept(handshake)
            problem: object = websocket.handshake_exc
        else:
            response = websocket.reject(403, "Origin not allowed\n")
            problem = f"Origin {handshake.headers.get('Origin')} not allowed"
        websocket.send_response(response)
        if response.status_code != 101:
            log.info("refused a WebSocket from %s: %s", self.address, problem)

    def eof_received(self) -> bool | None:
        self.websocket.receive_eof()
        self._flush()
        return None

    def _frame(self, frame: Frame) -> None:
        if frame.opcode not in (Opcode.TEXT, Opcode.BINARY, Opcode.CONT):
            return  # control frames: the protocol answered pings and closes already
        self._fragments.append(bytes(frame.data))
        if not frame.fin:
            return
        message = b"".join(self._fragments)
        self._fragments.clear()
        if message == StreamFramer.PING:
            self.write(b"\r\n")
            return
        self.messages += 1
        self.owner.receiver.datagram_received(message, self.address)

    def write(self, data: bytes) -> None:
        if self.websocket.state is not State.OPEN:
            return
        try:
            data.decode()
        except UnicodeDecodeError:
            self.websocket.send_binary(data)
        else:
            self.websocket.send_text(data)
        self._flush()
        self.last_active = asyncio.get_running_loop().time()

    def _flush(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        for chunk in self.websocket.data_to_send():
            if chunk:
                transport.write(chunk)
        # After a refused handshake or the closing handshake: close once what is
        # buffered is sent (asyncio flushes before closing).
        if self.websocket.close_expected():
            transport.close()

    def close(self) -> None:
        if self.websocket.state is State.OPEN:
            self.websocket.send_close()
            self._flush()
        super().close()

    def connection_lost(self, exc: Exception | None) -> None:
        was_current = self.owner.connections.get(self.address) is self
        super().connection_lost(exc)
        if was_current:
            self.owner.receiver.connection_closed(self.address)
