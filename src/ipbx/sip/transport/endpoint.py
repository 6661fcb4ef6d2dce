"""The asyncio shell around the sans-I/O SIP layers, in the manner of aioquic's
asyncio/protocol.py: sockets in, `TransactionLayer` in the middle, a transaction user (TU)
on top. This file and its siblings are the only SIP code that knows asyncio.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from collections.abc import Callable, Sequence
from typing import Any, Protocol, cast

from ipbx.sip.errors import SipError
from ipbx.sip.invite import Resend, Respond, Send
from ipbx.sip.message import BadRequest, Request, Response, parse_datagram
from ipbx.sip.stun import binding_response, is_stun
from ipbx.sip.transaction import (
    REASONS,
    Address,
    CancelReceived,
    ClientTransaction,
    Event,
    RequestReceived,
    ResponseHandler,
    ResponseReceived,
    ServerTransaction,
    ServerTransactionFailed,
    Timers,
    TransactionLayer,
    make_response,
    new_branch,
)
from ipbx.sip.transport.stream import WEBSOCKET, StreamTransports
from ipbx.sip.transport.websocket import WebSocketConnection
from ipbx.sip.uri import Uri, Via

log = logging.getLogger("ipbx.sip")

DEFAULT_PORTS = {"UDP": 5060, "TCP": 5060, "TLS": 5061, "WS": 80, "WSS": 443}
# Peers whose listener is remembered when several UDP listeners share a family; past this
# the longest-silent is forgotten and reached through the routing choice again.
MAX_PEERS_REMEMBERED = 100_000


class TransactionUser(Protocol):
    def on_request(self, request: Request, source: Address, tx: ServerTransaction | None) -> None:
        """A new request; for an ACK to a 2xx, `tx` is None."""

    def on_cancel(self, tx: ServerTransaction) -> None:
        """A CANCEL for a pending INVITE (already answered 200)."""

    def on_no_ack(self, tx: ServerTransaction) -> None:
        """A final response to an INVITE was never acknowledged."""


# Sources a UDP listener remembers, so that the transactions of a phone share one Address.
_SOURCES = 4096


class _Datagram(asyncio.DatagramProtocol):
    """One UDP listener: what arrives is handed to the endpoint with the listener's
    address, so that answers leave through the same socket (RFC 3261 §18.2.2)."""

    def __init__(self, endpoint: SipEndpoint, address: Address | None = None) -> None:
        self.endpoint = endpoint
        self.address = address
        self.transport: asyncio.DatagramTransport | None = None
        self._sources: dict[tuple[Any, ...], Address] = {}

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports do not subclass asyncio's, hence a cast and not a check.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        source = self._sources.get(addr)
        if source is None:
            if len(self._sources) >= _SOURCES:
                self._sources.clear()
            source = self._sources[addr] = Address("UDP", addr[0], addr[1])
        self.endpoint.datagram_received(data, source, self.address)

    def error_received(self, exc: Exception) -> None:
        # A send that failed, or ICMP port unreachable: the transaction times out on its
        # own, but the log says why.
        log.info("udp error on %s: %s", self.address, exc)


class SipEndpoint:
    """Owns the listening sockets and the transaction layer; routes events to the TU."""

    def __init__(
        self,
        tu: TransactionUser,
        *,
        max_message_size: int = 65535,
        timers: Timers | None = None,
        user_agent: str = "ipbx",
        websocket_origins: Sequence[str] = (),
    ) -> None:
        self.tu = tu
        self.layer = TransactionLayer(timers)
        self.max_message_size = max_message_size
        self.user_agent = user_agent
        self.loop = asyncio.get_running_loop()
        # UDP listeners by address family, and for a family with more than one, the
        # listener each peer's messages last arrived on (oldest first, bounded).
        self._udp: dict[int, dict[Address, _Datagram]] = {}
        self._arrived_on: dict[tuple[str, int], Address] = {}
        self._listening: dict[str, Address] = {}
        self.streams = StreamTransports(self, max_message_size, websocket_origins)
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        # Policy hook: a source for which this says False is ignored (banned scanners).
        self.admits: Callable[[str, float], bool] = lambda host, now: True
        # Told when a connection closes that cannot be dialled again (a WebSocket).
        self.on_connection_closed: Callable[[Address], None] = lambda peer: None

    # --- listening ------------------------------------------------------------------------

    async def listen(
        self, transport: str, host: str, port: int, tls: ssl.SSLContext | None = None
    ) -> Address:
        """Open a listening socket; returns the bound address (port 0 picks a free one)."""
        transport = transport.upper()
        if transport == "UDP":
            family = socket.AF_INET6 if ":" in host else socket.AF_INET
            udp_transport, protocol = await self.loop.create_datagram_endpoint(
                lambda: _Datagram(self), local_addr=(host, port), family=family
            )
            sock = udp_transport.get_extra_info("socket")
            # Bursts of REGISTERs (a site's phones after a power cut) overflow the default
            # buffer; the kernel caps this at net.core.rmem_max.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
            bound = udp_transport.get_extra_info("sockname")
            address = Address("UDP", host, int(bound[1]))
            protocol.address = address
            self._udp.setdefault(family, {})[address] = protocol
        elif transport in WEBSOCKET:
            address = await self.streams.listen(transport, host, port, tls, WebSocketConnection)
        else:
            address = await self.streams.listen(transport, host, port, tls)
        self._listening.setdefault(transport, address)
        log.info("listening on %s:%s:%d", transport.lower(), host, address.port)
        return address

    def attach(self, transport: asyncio.DatagramTransport, address: Address) -> None:
        """Carry UDP over `transport`, which stands for a socket bound at `address`: its
        sendto() takes what we send, and what arrives for us comes in through
        datagram_received(). Tests plug an in-memory network in here."""
        protocol = _Datagram(self, address)
        protocol.connection_made(transport)
        family = socket.AF_INET6 if ":" in address.host else socket.AF_INET
        self._udp.setdefault(family, {})[address] = protocol
        self._listening.setdefault("UDP", address)

    def connected(self, peer: Address) -> bool:
        """Whether a TCP, TLS or WebSocket connection to or from `peer` is open."""
        return peer in self.streams.connections

    def listening(self, transport: str) -> Address | None:
        return self._listening.get(transport.upper())

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        for listeners in self._udp.values():
            for protocol in listeners.values():
                if protocol.transport is not None:
                    protocol.transport.close()
        await self.streams.close()

    # --- receiving --------------------------------------------------------------------------

    def datagram_received(
        self, data: bytes, source: Address, listener: Address | None = None
    ) -> None:
        """A datagram from `source`, arrived on the UDP listener at `listener`."""
        if not self.admits(source.host, self.loop.time()):
            return
        if listener is not None:
            self._arrived(source, listener)
        if len(data) > self.max_message_size or data in (b"\r\n\r\n", b"\r\n"):
            return  # keep-alive CRLFs on UDP need no answer
        if is_stun(data):
            # A keep-alive (RFC 5626 §4.4.1): tell the phone its mapped address.
            answer = binding_response(data, source.host, source.port)
            if answer is not None:
                self.send_raw(answer, source)
            return
        try:
            msg = parse_datagram(data)
        except BadRequest as exc:
            self._refuse(exc, source)
            return
        except SipError as exc:
            # Not even a request line, or a broken response: nothing to answer to.
            log.debug("dropped a datagram from %s: %s", source, exc.reason)
            self.layer.messages.malformed_dropped += 1
            return
        self.message_received(msg, source)

    def message_received(self, msg: Request | Response, source: Address) -> None:
        if source.transport != "UDP" and not self.admits(source.host, self.loop.time()):
            return
        try:
            events = self.layer.receive(msg, source, self.loop.time())
        except SipError as exc:
            if isinstance(msg, Request):
                self._refuse(BadRequest(exc.status, exc.reason, msg), source, counted=True)
            return
        self._dispatch(events)
        self._pump()

    def stream_error(self, exc: SipError, source: Address) -> None:
        if isinstance(exc, BadRequest):
            self._refuse(exc, source)

    def connection_closed(self, source: Address) -> None:
        self.on_connection_closed(source)

    def _refuse(self, exc: BadRequest, source: Address, *, counted: bool = False) -> None:
        request = exc.request
        log.info("refused %s from %s: %d %s", request.method, source, exc.status, exc.reason)
        if not counted:  # refused before the transaction layer saw (and counted) it
            self.layer.messages.request_received(request.method)
        if request.method == "ACK" or not request.headers.get("Via"):
            self.layer.messages.malformed_dropped += 1
            return
        try:
            response = make_response(request, exc.status, None)
        except SipError:
            self.layer.messages.malformed_dropped += 1
            return
        response.reason = reason_phrase(exc.status, exc.reason)
        self.send_raw(response.serialize(), source)
        self.layer.messages.response_sent(exc.status)

    def _dispatch(self, events: list[Event]) -> None:
        tu = self.tu
        for event in events:
            try:
                if isinstance(event, RequestReceived):
                    tu.on_request(event.request, event.source, event.transaction)
                elif isinstance(event, ResponseReceived):
                    handler = event.transaction.on_response
                    if handler is not None:
                        handler(event.response, event.transaction)
                elif isinstance(event, CancelReceived):
                    tu.on_cancel(event.transaction)
                elif isinstance(event, ServerTransactionFailed):
                    tu.on_no_ack(event.transaction)
            except SipError as exc:
                if isinstance(event, RequestReceived) and event.transaction is not None:
                    self.reply(event.transaction, exc.status, reason_phrase(exc.status, exc.reason))
                else:
                    # A response we cannot use (a 2xx without Contact, say): nobody to
                    # answer, but the call it belonged to must not fail in silence.
                    log.warning("unusable %r: %d %s", event, exc.status, exc.reason)
            except Exception:
                log.exception("transaction user failed on %r", event)
                if isinstance(event, RequestReceived) and event.transaction is not None:
                    self.reply(event.transaction, 500)

    # --- sending ------------------------------------------------------------------------------

    def send_request(
        self,
        request: Request,
        dest: Address,
        on_response: ResponseHandler | None = None,
    ) -> ClientTransaction:
        self._add_via(request, dest)
        request.headers.set("User-Agent", self.user_agent)
        tx = self.layer.send_request(request, dest, self.loop.time(), on_response)
        self._pump()
        return tx

    def send_cancel(self, cancel: Request, dest: Address) -> ClientTransaction:
        """A CANCEL keeps the INVITE's Via and branch (RFC 3261 §9.1), so none is added."""
        tx = self.layer.send_request(cancel, dest, self.loop.time())
        self._pump()
        return tx

    def send_ack(self, ack: Request, dest: Address) -> None:
        self._add_via(ack, dest)
        self.layer.send_ack(ack, dest)
        self._pump()

    def respond(self, tx: ServerTransaction, response: Response) -> None:
        if response.status >= 200 and "Server" not in response.headers:
            response.headers.add("Server", self.user_agent)
        self.layer.respond(tx, response, self.loop.time())
        self._pump()

    def reply(
        self,
        tx: ServerTransaction,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> Response:
        response = make_response(tx.request, status, reason, tx.to_tag)
        for name, value in headers or []:
            response.headers.add(name, value)
        self.respond(tx, response)
        return response

    def transmit(
        self, out: Send | Respond | Resend, on_response: ResponseHandler | None = None
    ) -> None:
        """Send what an INVITE usage (sip/invite.py) returned; `on_response` is the handler
        of an INVITE sent again with credentials."""
        if isinstance(out, Resend):
            self.send_raw(out.data, out.dest)
        elif isinstance(out, Respond):
            self.respond(out.transaction, out.response)
        elif out.request.method == "ACK":
            self.send_ack(out.request, out.dest)
        elif out.request.method == "CANCEL":
            self.send_cancel(out.request, out.dest)
        else:
            self.send_request(out.request, out.dest, on_response)

    def send_raw(self, data: bytes, dest: Address) -> None:
        if dest.transport != "UDP":
            self.streams.send(data, dest)
            return
        protocol = self._udp_listener(dest)
        if protocol is None or protocol.transport is None:
            log.warning("cannot send to %s: no UDP listener for its address family", dest)
            return
        try:
            protocol.transport.sendto(data, (dest.host, dest.port))
        except OSError as exc:
            log.info("cannot send to %s from %s: %s", dest, protocol.address, exc)

    # --- which listener a peer is reached through ---------------------------------------------

    def _arrived(self, source: Address, listener: Address) -> None:
        """Remember the listener `source`'s messages arrive on, when there is a choice."""
        family = socket.AF_INET6 if ":" in listener.host else socket.AF_INET
        if len(self._udp.get(family, ())) < 2:
            return
        key = (source.host, source.port)
        arrived = self._arrived_on
        if arrived.get(key) == listener:
            return
        arrived.pop(key, None)
        arrived[key] = listener
        if len(arrived) > MAX_PEERS_REMEMBERED:
            del arrived[next(iter(arrived))]

    def _udp_listener(self, dest: Address) -> _Datagram | None:
        """The UDP listener messages to `dest` leave through: the one its messages arrive
        on (RFC 3261 §18.2.2), else the one bound to the address the kernel would send
        from (or to any address), else the first one."""
        listeners = self._udp.get(socket.AF_INET6 if ":" in dest.host else socket.AF_INET)
        if not listeners:
            return None
        if len(listeners) == 1:
            return next(iter(listeners.values()))
        arrived = self._arrived_on.get((dest.host, dest.port))
        if arrived is not None and arrived in listeners:
            return listeners[arrived]
        source = route_source(dest.host)
        for address, protocol in listeners.items():
            if address.host == source:
                return protocol
        for address, protocol in listeners.items():
            if address.host in ("0.0.0.0", "::"):
                return protocol
        return next(iter(listeners.values()))

    def local_address(self, dest: Address) -> Address:
        """The address our messages to `dest` leave from (for Via and Contact)."""
        if dest.transport == "UDP":
            protocol = self._udp_listener(dest)
            if protocol is None or protocol.address is None:
                raise SipError(503, f"no UDP socket for {dest.host}")
            local = protocol.address
        else:
            found = self._listening.get(dest.transport)
            if found is None:
                raise SipError(503, f"no {dest.transport} transport")
            local = found
        if local.host in ("0.0.0.0", "::"):
            return Address(local.transport, route_source(dest.host), local.port)
        return local

    def contact(self, dest: Address, user: str | None = None) -> Uri:
        local = self.local_address(dest)
        params: dict[str, str | None] = {}
        if dest.transport in WEBSOCKET:
            params["transport"] = "ws"  # RFC 7118 §5.2: WSS is `ws` in a URI too
        elif dest.transport != "UDP":
            params["transport"] = dest.transport.lower()
        return Uri("sip", user, None, _host_literal(local.host), local.port, params)

    def _add_via(self, request: Request, dest: Address) -> None:
        local = self.local_address(dest)
        via = Via(
            dest.transport,
            _host_literal(local.host),
            local.port,
            {"branch": new_branch(), "rport": None},
        )
        request.headers.prepend("Via", str(via))

    def _pump(self) -> None:
        for data, dest in self.layer.outgoing():
            self.send_raw(data, dest)
        deadline = self.layer.next_deadline()
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = self.loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        self._dispatch(self.layer.expire(self.loop.time()))
        self._pump()


def resolve(uri: Uri) -> Address:
    """Where to send a request for `uri` (RFC 3263 without DNS: numeric hosts and names
    the system resolver knows; SRV/NAPTR lookups belong to the trunk layer)."""
    transport = (uri.transport or ("tls" if uri.scheme == "sips" else "udp")).upper()
    host, port = uri.host_port(DEFAULT_PORTS.get(transport, 5060))
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        host = str(socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)[0][4][0])
    return Address(transport, host, port)


def route_source(host: str) -> str:
    """The local address the kernel would use to reach `host` (no packet is sent)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((host, 9))
            return str(probe.getsockname()[0])
        except OSError:
            return "127.0.0.1" if family == socket.AF_INET else "::1"


def _host_literal(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def reason_phrase(status: int, detail: str) -> str:
    """The status's own reason phrase, with `detail` (why, for whoever reads the log of
    the other side) in parentheses."""
    base = REASONS.get(status, "Error")
    # A reason phrase is free text; CR/LF would break the status line.
    detail = detail.replace("\r", " ").replace("\n", " ")[:80]
    return f"{base} ({detail})" if detail else base
