"""A WebSocket connection (RFC 7118) driven with no socket: a sans-I/O WebSocket client
plays the browser against it. The handshake needs the `sip` subprotocol, and a page's
Origin of the host itself or of those allowed; one WebSocket message, fragmented or not,
text or binary, is one SIP message for the receiver; a CRLFCRLF ping gets a CRLF pong;
what is not UTF-8 goes out in a binary frame; the receiver hears when the connection
closes."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest
from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response as Handshake
from websockets.typing import Origin, Subprotocol
from websockets.uri import parse_uri

from ipbx.sip.errors import SipError
from ipbx.sip.message import Request, Response
from ipbx.sip.transaction import Address
from ipbx.sip.transport.stream import StreamTransports
from ipbx.sip.transport.websocket import WebSocketConnection
from tests.sip.test_stream import OPTIONS, PEER, Transport

BROWSER = Address("WS", *PEER)


class Receiver:
    def __init__(self) -> None:
        self.messages: list[tuple[bytes, Address]] = []
        self.closed: list[Address] = []

    def message_received(self, msg: Request | Response, source: Address) -> None:
        raise AssertionError("a WebSocket message is framed by the WebSocket")

    def stream_error(self, exc: SipError, source: Address) -> None:
        raise AssertionError("a WebSocket message is framed by the WebSocket")

    def datagram_received(self, data: bytes, source: Address) -> None:
        self.messages.append((data, source))

    def connection_closed(self, source: Address) -> None:
        self.closed.append(source)


def open_connection(
    subprotocols: list[Subprotocol],
    origin: str | None = None,
    allowed: Sequence[str] = (),
) -> tuple[Receiver, WebSocketConnection, Transport, ClientProtocol, Handshake]:
    """A browser's handshake to ws://192.0.2.1:8089/, from a page of `origin` when given,
    to a server that allows the origins `allowed`."""
    receiver = Receiver()
    transports = StreamTransports(receiver, max_message_size=4096, websocket_origins=allowed)
    conn = WebSocketConnection(transports, "WS")
    transport = Transport()
    conn.connection_made(transport)
    browser = ClientProtocol(
        parse_uri("ws://192.0.2.1:8089/"),
        origin=None if origin is None else Origin(origin),
        subprotocols=subprotocols,
    )
    browser.send_request(browser.connect())
    conn.data_received(b"".join(browser.data_to_send()))
    (answer,) = exchange(browser, transport)
    assert isinstance(answer, Handshake)
    return receiver, conn, transport, browser, answer


def exchange(browser: ClientProtocol, transport: Transport) -> list[object]:
    """What the server wrote since last time, as the browser reads it."""
    browser.receive_data(bytes(transport.written))
    transport.written.clear()
    return list(browser.events_received())


def test_a_handshake_without_the_sip_subprotocol_is_refused_and_closed() -> None:
    async def run() -> None:
        _, _, transport, _, answer = open_connection([])
        assert answer.status_code == 400
        assert transport.closed

    asyncio.run(run())


@pytest.mark.parametrize(
    ("origin", "allowed", "status"),
    [
        (None, (), 101),  # no page: baresip, SIPp
        ("http://192.0.2.1:8080", (), 101),  # the web pages of the same host
        ("https://phone.example.com", (), 403),  # any other site's page
        ("https://phone.example.com", ("https://phone.example.com",), 101),
        ("https://phone.example.com:8443", ("https://phone.example.com",), 403),
        ("null", (), 403),  # a sandboxed page
        ("https://anything.example", ("*",), 101),
    ],
)
def test_a_browser_page_of_another_origin_is_refused_at_the_handshake(
    origin: str | None, allowed: tuple[str, ...], status: int
) -> None:
    async def run() -> None:
        _, _, transport, _, answer = open_connection([Subprotocol("sip")], origin, allowed)
        assert answer.status_code == status
        assert transport.closed == (status != 101)

    asyncio.run(run())


def test_one_websocket_message_is_one_sip_message_and_a_crlf_ping_is_answered() -> None:
    async def run() -> None:
        receiver, conn, transport, browser, answer = open_connection([Subprotocol("sip")])
        assert answer.status_code == 101
        assert answer.headers["Sec-WebSocket-Protocol"] == "sip"
        browser.send_text(OPTIONS[:40], fin=False)
        conn.data_received(b"".join(browser.data_to_send()))
        assert receiver.messages == []
        browser.send_continuation(OPTIONS[40:], fin=True)
        browser.send_binary(OPTIONS)
        conn.data_received(b"".join(browser.data_to_send()))
        assert receiver.messages == [(OPTIONS, BROWSER), (OPTIONS, BROWSER)]

        browser.send_text(b"\r\n\r\n")
        conn.data_received(b"".join(browser.data_to_send()))
        conn.write(b"SIP/2.0 200 OK\r\n\r\n\xff")
        pong, binary = exchange(browser, transport)
        assert pong == Frame(Opcode.TEXT, b"\r\n")
        assert binary == Frame(Opcode.BINARY, b"SIP/2.0 200 OK\r\n\r\n\xff")
        assert len(receiver.messages) == 2

        conn.connection_lost(None)
        assert receiver.closed == [BROWSER]

    asyncio.run(run())


def test_an_idle_websocket_is_reaped_like_a_tcp_connection_with_a_close_frame() -> None:
    async def run() -> None:
        _, conn, transport, browser, _ = open_connection([Subprotocol("sip")])
        now = asyncio.get_running_loop().time()
        assert conn.owner.reap(now + 10, idle_limit=3660) == 0
        # Never a SIP message: closed after HELLO_LIMIT, as stream.py does for TCP.
        assert conn.owner.reap(now + 40, idle_limit=3660) == 1
        (close,) = exchange(browser, transport)
        assert isinstance(close, Frame) and close.opcode is Opcode.CLOSE
        assert transport.closed

    asyncio.run(run())
