"""A stream connection (RFC 3261 §18.3) hands whole messages and framing errors to its
receiver, answers a CRLFCRLF ping with a CRLF (RFC 5626 §3.5.1), and closes after a
framing error; driven here by a stand-in receiver and transport, with no socket."""

from __future__ import annotations

import asyncio

from ipbx.sip.errors import SipError
from ipbx.sip.message import BadRequest, Request, Response
from ipbx.sip.transaction import Address
from ipbx.sip.transport.stream import StreamConnection, StreamTransports

PEER = ("192.0.2.7", 5062)
OPTIONS = (
    b"OPTIONS sip:ipbx@192.0.2.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 192.0.2.7:5062;branch=z9hG4bK-1\r\n"
    b"From: <sip:1000@192.0.2.1>;tag=a\r\n"
    b"To: <sip:ipbx@192.0.2.1>\r\n"
    b"Call-ID: stream-1\r\n"
    b"CSeq: 1 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)


class Receiver:
    def __init__(self) -> None:
        self.messages: list[tuple[Request | Response, Address]] = []
        self.errors: list[tuple[SipError, Address]] = []

    def message_received(self, msg: Request | Response, source: Address) -> None:
        self.messages.append((msg, source))

    def stream_error(self, exc: SipError, source: Address) -> None:
        self.errors.append((exc, source))


class Transport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written = bytearray()
        self.closed = False

    def get_extra_info(self, name: str, default: object = None) -> object:
        return PEER if name == "peername" else default

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True


def connected() -> tuple[Receiver, StreamTransports, StreamConnection, Transport]:
    receiver = Receiver()
    streams = StreamTransports(receiver, max_message_size=4096)
    conn = StreamConnection(streams, "TCP")
    transport = Transport()
    conn.connection_made(transport)
    return receiver, streams, conn, transport


def test_messages_split_across_reads_reach_the_receiver_with_the_peer_address() -> None:
    async def run() -> None:
        receiver, streams, conn, _ = connected()
        peer = Address("TCP", *PEER)
        assert streams.connections[peer] is conn
        conn.data_received(OPTIONS[:50])
        assert receiver.messages == []
        conn.data_received(OPTIONS[50:] + OPTIONS)
        assert [(m.call_id, source) for m, source in receiver.messages] == [
            ("stream-1", peer),
            ("stream-1", peer),
        ]

    asyncio.run(run())


def test_a_keep_alive_ping_gets_a_pong() -> None:
    async def run() -> None:
        receiver, _, conn, transport = connected()
        conn.data_received(b"\r\n\r\n")
        assert bytes(transport.written) == b"\r\n"
        assert receiver.messages == []

    asyncio.run(run())


def test_a_request_without_content_length_is_a_framing_error_that_closes_the_connection() -> None:
    async def run() -> None:
        receiver, streams, conn, transport = connected()
        conn.data_received(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
        [(error, source)] = receiver.errors
        assert isinstance(error, BadRequest) and error.status == 400
        assert source == Address("TCP", *PEER)
        assert transport.closed
        conn.connection_lost(None)
        assert streams.connections == {}

    asyncio.run(run())
