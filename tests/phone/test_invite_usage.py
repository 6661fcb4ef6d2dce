"""The phone's INVITEs against a scripted UDP peer: the ACK of a 2xx repeated for each copy
of it (RFC 3261 §13.2.2.4) and our own 2xx repeated until its ACK (§13.3.1.4), with the
real clock and sockets that the unit tests of sip/invite.py leave out."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from typing import Any, cast

from ipbx.phone.ua import Phone, PhoneSettings
from ipbx.sip.message import Request, Response, parse_datagram
from ipbx.sip.transaction import Address, make_response
from tests.support.ports import free_udp_range

HOST = "127.0.0.1"


def offer(port: int) -> bytes:
    return (
        f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
        f"m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    ).encode()


class Peer(asyncio.DatagramProtocol):
    """A SIP peer driven by the test: it keeps what it receives (RTP aside) with the time
    it arrived, and answers a BYE with 200."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None
        self.received: list[tuple[float, Request | Response, bytes]] = []
        self.phone_port = 0
        self.arrived = asyncio.Event()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[Any, ...]) -> None:
        if data[:1] == b"\x80":
            return  # the phone's RTP
        msg = parse_datagram(data)
        self.phone_port = addr[1]
        self.received.append((asyncio.get_running_loop().time(), msg, data))
        self.arrived.set()
        if isinstance(msg, Request) and msg.method == "BYE":
            self.send(make_response(msg, 200), addr[1])

    @property
    def port(self) -> int:
        assert self.transport is not None
        return int(self.transport.get_extra_info("sockname")[1])

    def send(self, msg: Request | Response, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(msg.serialize(), (HOST, port))

    def of(self, kind: str) -> list[tuple[float, Request | Response, bytes]]:
        """What came so far: requests by method, responses by status ("200")."""
        return [
            entry
            for entry in self.received
            if (entry[1].method if isinstance(entry[1], Request) else str(entry[1].status)) == kind
        ]

    async def wait_for(self, kind: str, count: int = 1) -> list[tuple[float, Any, bytes]]:
        async with asyncio.timeout(5):
            while len(self.of(kind)) < count:
                self.arrived.clear()
                await self.arrived.wait()
        return self.of(kind)


@contextlib.asynccontextmanager
async def phone_and_peer() -> AsyncIterator[tuple[Phone, Peer]]:
    loop = asyncio.get_running_loop()
    _, peer = await loop.create_datagram_endpoint(Peer, local_addr=(HOST, 0))
    settings = PhoneSettings(
        Address("UDP", HOST, peer.port), "1000", "pw", rtp_ports=free_udp_range(4)
    )
    phone = await Phone.start(settings)
    try:
        yield phone, peer
    finally:
        await phone.close()
        assert peer.transport is not None
        peer.transport.close()


def test_each_copy_of_the_2xx_gets_the_same_ack() -> None:
    async def scenario() -> None:
        async with phone_and_peer() as (phone, peer):
            calling = asyncio.create_task(phone.call("1001"))
            ((_, invite, _),) = await peer.wait_for("INVITE")
            ok = make_response(invite, 200, to_tag="callee")
            ok.headers.add("Contact", f"<sip:1001@{HOST}:{peer.port}>")
            ok.headers.add("Content-Type", "application/sdp")
            ok.body = offer(peer.port)
            peer.send(ok, peer.phone_port)
            await peer.wait_for("ACK")
            peer.send(ok, peer.phone_port)  # as if the first ACK was lost
            acks = await peer.wait_for("ACK", 2)
            assert acks[0][2] == acks[1][2]
            assert acks[0][1].headers.count("Via") == 1
            call = await calling
            assert call.dialog.remote_tag == "callee"
            await call.hangup()

    asyncio.run(asyncio.wait_for(scenario(), 20))


def test_our_2xx_goes_again_until_the_ack_comes() -> None:
    async def scenario() -> None:
        async with phone_and_peer() as (phone, peer):
            phone.accepting = True
            listening = phone.endpoint.listening("UDP")
            assert listening is not None
            invite = parse_datagram(
                (
                    f"INVITE sip:1000@{HOST}:{listening.port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {HOST}:{peer.port};branch=z9hG4bKscripted\r\n"
                    f"From: <sip:1001@{HOST}>;tag=caller\r\nTo: <sip:1000@{HOST}>\r\n"
                    f"Call-ID: scripted@{HOST}\r\nCSeq: 7 INVITE\r\nMax-Forwards: 70\r\n"
                    f"Contact: <sip:1001@{HOST}:{peer.port}>\r\n"
                    f"Content-Type: application/sdp\r\n"
                    f"Content-Length: {len(offer(peer.port))}\r\n\r\n"
                ).encode()
                + offer(peer.port)
            )
            assert isinstance(invite, Request)
            peer.send(invite, listening.port)
            incoming = await asyncio.wait_for(phone.incoming.get(), 5)
            call = await phone.answer(incoming, ring=0)
            copies = await peer.wait_for("200", 3)  # the 2xx, then at T1 and 3*T1
            gaps = [later[0] - earlier[0] for earlier, later in itertools.pairwise(copies)]
            assert 0.45 < gaps[0] < 1.0 and 0.95 < gaps[1] < 2.0, gaps  # T1, then 2*T1
            assert copies[0][2] == copies[2][2]
            ok = copies[0][1]
            ack = parse_datagram(
                (
                    f"ACK sip:1000@{HOST}:{listening.port} SIP/2.0\r\n"
                    f"Via: SIP/2.0/UDP {HOST}:{peer.port};branch=z9hG4bKack\r\n"
                    f"From: {ok.headers.get('From')}\r\nTo: {ok.headers.get('To')}\r\n"
                    f"Call-ID: scripted@{HOST}\r\nCSeq: 7 ACK\r\nMax-Forwards: 70\r\n"
                    f"Content-Length: 0\r\n\r\n"
                ).encode()
            )
            assert isinstance(ack, Request)
            peer.send(ack, listening.port)
            await asyncio.sleep(2.5)  # the next copy was due 3.5 s after the first
            assert len(peer.of("200")) == 3
            await call.hangup()

    asyncio.run(asyncio.wait_for(scenario(), 20))
