"""Stream transports (TCP and TLS, and WebSocket in websocket.py): connections, framing
and reuse (RFC 3261 §18.3).

A connection is named by the peer's (transport, host, port); responses and requests to
that peer reuse it, which is what lets phones behind NAT receive calls over the
connection they opened (an RFC 5626 flow; the registrar's side is pbx/outbound.py). A
CRLFCRLF ping gets a CRLF pong (RFC 5626 §3.5.1, §4.4.1). A framing error closes the
connection, since the message boundaries are lost. Idle connections are reaped (`reap`):
ones that never carried a SIP message after HELLO_LIMIT seconds, others after the
configured idle time (long enough for a registered phone's refreshes to keep its
connection), so a scanner that opens connections and goes quiet cannot exhaust file
descriptors.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Sequence
from typing import Protocol, cast

from ipbx.sip.errors import SipError
from ipbx.sip.message import Request, Response, StreamFramer
from ipbx.sip.transaction import Address

log = logging.getLogger("ipbx.sip.stream")

# WebSocket connections (websocket.py) are only opened by the peer, a browser that has
# no address to be reached at (RFC 7118): a message for one that is gone is dropped.
WEBSOCKET = frozenset({"WS", "WSS"})
HELLO_LIMIT = 32.0  # 64*T1: as long as a transaction would wait for its first message


class StreamReceiver(Protocol):
    """Where the stream transports hand what they read (the SIP endpoint)."""

    def message_received(self, msg: Request | Response, source: Address) -> None:
        """A whole message, framed by its Content-Length."""

    def stream_error(self, exc: SipError, source: Address) -> None:
        """A message that cannot be framed; its connection is closed after this."""

    def datagram_received(self, data: bytes, source: Address) -> None:
        """One message framed by its transport (a WebSocket message)."""

    def connection_closed(self, source: Address) -> None:
        """A connection that cannot be dialled again (a WebSocket) has closed."""


class StreamConnection(asyncio.Protocol):
    def __init__(self, owner: StreamTransports, transport_name: str) -> None:
        self.owner = owner
        self.name = transport_name
        self.framer = StreamFramer(owner.max_message_size)
        self.transport: asyncio.Transport | None = None
        self.address = Address(transport_name, "", 0)
        self.last_active = asyncio.get_running_loop().time()
        self.messages = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, hence a cast and not a check.
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self.address = Address(self.name, str(peer[0]), int(peer[1]))
        self.owner.connections[self.address] = self

    def data_received(self, data: bytes) -> None:
        self.last_active = asyncio.get_running_loop().time()
        try:
            for item in self.framer.feed(data):
                if isinstance(item, bytes):
                    self.write(b"\r\n")
                else:
                    self.messages += 1
                    self.owner.receiver.message_received(item, self.address)
        except SipError as exc:
            log.info("closing %s: %s", self.address, exc.reason)
            self.owner.receiver.stream_error(exc, self.address)
            self.close()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)
            self.last_active = asyncio.get_running_loop().time()

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.owner.connections.get(self.address) is self:
            del self.owner.connections[self.address]


class StreamTransports:
    def __init__(
        self,
        receiver: StreamReceiver,
        max_message_size: int,
        websocket_origins: Sequence[str] = (),
    ) -> None:
        self.receiver = receiver
        self.max_message_size = max_message_size
        # Web page origins a WebSocket handshake is accepted from (websocket.py).
        self.websocket_origins = websocket_origins
        self.connections: dict[Address, StreamConnection] = {}
        self._servers: list[asyncio.Server] = []
        self._tls: dict[str, ssl.SSLContext | None] = {}
        self._pending: dict[Address, list[bytes]] = {}

    async def listen(
        self,
        transport: str,
        host: str,
        port: int,
        tls: ssl.SSLContext | None,
        connection: type[StreamConnection] = StreamConnection,
    ) -> Address:
        """Listen for `transport` connections, each served by a `connection`."""
        if transport in ("TLS", "WSS") and tls is None:
            raise SipError(500, f"{transport} needs a certificate")
        loop = asyncio.get_running_loop()
        server = await loop.create_server(
            lambda: connection(self, transport), host, port, ssl=tls, reuse_address=True
        )
        self._servers.append(server)
        self._tls[transport] = tls
        bound = server.sockets[0].getsockname()
        return Address(transport, host, int(bound[1]))

    def send(self, data: bytes, dest: Address) -> None:
        conn = self.connections.get(dest)
        if conn is not None:
            conn.write(data)
            return
        if dest.transport in WEBSOCKET:
            log.info("cannot send to %s: its WebSocket connection is gone", dest)
            return
        queued = self._pending.get(dest)
        if queued is not None:
            queued.append(data)
            return
        self._pending[dest] = [data]
        asyncio.get_running_loop().create_task(self._connect(dest))

    def reap(self, now: float, idle_limit: float) -> int:
        """Close idle connections (see the module docstring); returns how many."""
        idle = [
            conn
            for conn in self.connections.values()
            if now - conn.last_active
            > (idle_limit if conn.messages else min(HELLO_LIMIT, idle_limit))
        ]
        for conn in idle:
            log.info("closing idle connection %s", conn.address)
            conn.close()
        return len(idle)

    async def _connect(self, dest: Address) -> None:
        loop = asyncio.get_running_loop()
        client_tls: ssl.SSLContext | None = None
        if dest.transport == "TLS":
            # Peers on a PBX's own network mostly carry self-signed certificates.
            client_tls = ssl.create_default_context()
            client_tls.check_hostname = False
            client_tls.verify_mode = ssl.CERT_NONE
        try:
            _, conn = await loop.create_connection(
                lambda: StreamConnection(self, dest.transport), dest.host, dest.port, ssl=client_tls
            )
        except OSError as exc:
            log.info("cannot connect to %s: %s", dest, exc)
            self._pending.pop(dest, None)
            return
        # Register under the address we dialled, which is how the TU names the peer.
        self.connections[dest] = conn
        conn.address = dest
        for data in self._pending.pop(dest, []):
            conn.write(data)

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for conn in list(self.connections.values()):
            conn.close()
        for server in self._servers:
            await server.wait_closed()
