"""One UDP socket of a media endpoint, with symmetric-RTP latching.

Symmetric RTP (RFC 4961) and NAT practice: send to the address from SDP
until the first packet arrives, then send to wherever packets really come
from. A latched peer is only replaced by a new source that also carries a
new SSRC, so a stray or spoofed packet reusing the stream cannot hijack it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any, cast

log = logging.getLogger(__name__)

Address = tuple[Any, ...]
Sink = Callable[[bytes], None]


def discard(data: bytes) -> None:
    """The sink of a channel nobody listens to."""


class Channel(asyncio.DatagramProtocol):
    def __init__(self, ssrc_offset: int, latching: bool = True) -> None:
        # Where the SSRC sits: byte 8 of an RTP header, byte 4 of an RTCP one.
        self._ssrc_offset = ssrc_offset
        # A server latches; a phone sends where the SDP says (RFC 3264 §5.1) and takes
        # packets from wherever they come, as phones behind a media relay must.
        self.latching = latching
        self.transport: asyncio.DatagramTransport | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the peer and the counts: the socket stays open for another endpoint."""
        self.peer: Address | None = None
        self.latched = False
        self.peer_ssrc = b""
        self.sink: Sink = discard
        # On a WebRTC leg (media/webrtc.py): what takes the datagrams that are not RTP
        # (returning True for those it took), and on the RTCP channel, the RTP channel
        # its RTCP leaves by (rtcp-mux, RFC 5761).
        self.demux: Callable[[bytes, Address], bool] | None = None
        self.mux: Channel | None = None
        self.packets_sent = 0
        self.bytes_sent = 0
        self.packets_received = 0
        self.bytes_received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: not our failure.
        log.debug("media socket error from %s: %s", self.peer, exc)

    def datagram_received(self, data: bytes, addr: Address) -> None:
        if self.demux is not None and self.demux(data, addr):
            return
        if (
            self.latching
            and (addr != self.peer or not self.latched)
            and not self._latch(data, addr)
        ):
            return
        self.packets_received += 1
        self.bytes_received += len(data)
        self.sink(data)

    def send(self, data: bytes) -> None:
        way = self if self.mux is None else self.mux
        if way.peer is None or way.transport is None:
            return
        way.transport.sendto(data, way.peer)
        self.packets_sent += 1
        self.bytes_sent += len(data)

    def set_peer(self, peer: Address) -> None:
        """A new address from SDP: send there until packets show the real source."""
        self.peer = peer
        self.latched = False

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        self.sink = discard

    def _latch(self, data: bytes, addr: Address) -> bool:
        ssrc = data[self._ssrc_offset : self._ssrc_offset + 4]
        if len(ssrc) < 4 or (self.latched and ssrc == self.peer_ssrc):
            return False
        if self.latched:
            log.info("media source moved from %s to %s with a new SSRC", self.peer, addr)
        self.peer = addr
        self.latched = True
        self.peer_ssrc = ssrc
        return True


ChannelPair = tuple[Channel, Channel]
