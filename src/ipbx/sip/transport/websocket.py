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
"""

from __future__ import annotations

import asyncio
import logging

from websockets.frames import Frame, Opcode
from websockets.http11 import Request as Handshake
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from ipbx.sip.message import StreamFramer
from ipbx.sip.transport.stream import StreamConnection, StreamTransports

log = logging.getLogger("ipbx.sip.websocket")

SUBPROTOCOL = Subprotocol("sip")


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
                response = websocket.accept(event)
                websocket.send_response(response)
                if response.status_code != 101:
                    log.info("refused a WebSocket from %s: %s", self.address,
                             websocket.handshake_exc)  # fmt: skip
            elif isinstance(event, Frame):
                self._frame(event)
        self._flush()

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
