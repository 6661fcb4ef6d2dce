"""What one media endpoint's leg has got to, for the process that carries it next.

A media worker (media/workers.py) carries a bridge for a while and then hands it back;
the leg goes on from where the other process left it: where its phone really sends from
(latching), the codec, our SSRC, sequence number and timestamp clock (so that the phone
sees one unbroken stream), the packet counts and the stream meter and round trips that
the call's record and the media time-out read.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass

from ipbx.media.channel import Address, Channel
from ipbx.media.codecs import Codec
from ipbx.media.endpoint import RTCP_SSRC_OFFSET, RTP_SSRC_OFFSET, MediaEndpoint
from ipbx.media.ports import PortPool
from ipbx.media.quality import StreamMeter
from ipbx.media.reports import RoundTripMeter

# A channel's peer, whether it is latched, the SSRC it latched on, whether it latches,
# and its counts: packets and bytes sent, packets and bytes received.
ChannelState = tuple[Address | None, bool, bytes, bool, tuple[int, int, int, int]]


@dataclass(slots=True)
class LegState:
    port: int
    rtp: ChannelState
    rtcp: ChannelState
    codec: Codec | None
    dtmf_pt: int | None
    fmtp: dict[str, str]
    ssrc: int
    seq: int
    timestamp_base: int
    epoch: float
    meter: StreamMeter
    round_trip: RoundTripMeter


def leg_state(endpoint: MediaEndpoint) -> LegState:
    now = asyncio.get_running_loop().time()
    return LegState(
        endpoint._port,
        _channel_state(endpoint._rtp),
        _channel_state(endpoint._rtcp),
        endpoint.codec,
        endpoint.dtmf_pt,
        dict(endpoint.fmtp),
        endpoint._ssrc,
        endpoint._seq,
        endpoint._timestamp_base_at(now),
        endpoint._epoch,
        endpoint.meter,
        endpoint.round_trip,
    )


def resume(endpoint: MediaEndpoint, state: LegState) -> None:
    """Go on with `endpoint` from where its leg got to elsewhere (the codec is set apart:
    it does not change while a leg is away)."""
    for channel, (peer, latched, peer_ssrc, latching, counts) in (
        (endpoint._rtp, state.rtp),
        (endpoint._rtcp, state.rtcp),
    ):
        channel.peer, channel.latched, channel.peer_ssrc = peer, latched, peer_ssrc
        channel.latching = latching
        (channel.packets_sent, channel.bytes_sent) = counts[:2]
        (channel.packets_received, channel.bytes_received) = counts[2:]
    endpoint._ssrc, endpoint._seq = state.ssrc, state.seq
    endpoint._timestamp_base, endpoint._epoch = state.timestamp_base, state.epoch
    endpoint.meter.take_over(state.meter)
    endpoint.round_trip.take_over(state.round_trip)


class Adoption:
    """Endpoints on sockets another process bound and handed over (`await take()` for
    each), going on from their legs' states; `start()` once they are joined. Until then
    their sockets are read, but what arrives is held, and handed on by `start()`: a
    datagram that came while the bridge was being set up is not lost."""

    def __init__(self, address: str) -> None:
        self._address = address
        self._held: list[tuple[Channel, _Holder]] = []

    async def take(
        self, state: LegState, rtp_socket: socket.socket, rtcp_socket: socket.socket
    ) -> MediaEndpoint:
        """The endpoint; its ports are its own pool's, kept by nobody once it closes."""
        pool: PortPool[tuple[Channel, Channel]] = PortPool(
            self._address, state.port, state.port + 1, warm_limit=0
        )
        pool.acquire()
        loop = asyncio.get_running_loop()
        channels = Channel(RTP_SSRC_OFFSET), Channel(RTCP_SSRC_OFFSET)
        for channel, sock in zip(channels, (rtp_socket, rtcp_socket), strict=True):
            transport, holder = await loop.create_datagram_endpoint(_Holder, sock=sock)
            channel.transport = transport
            self._held.append((channel, holder))
        endpoint = MediaEndpoint(pool, state.port, *channels)
        if state.codec is not None:
            endpoint.set_codec(state.codec, state.dtmf_pt, state.fmtp)
        resume(endpoint, state)
        return endpoint

    def start(self) -> None:
        for channel, holder in self._held:
            # A channel the bridge reads on the media clock has left its transport.
            if channel.transport is not None:
                channel.transport.set_protocol(channel)
            for data, addr in holder.held:
                channel.datagram_received(data, addr)
        self._held.clear()


class _Holder(asyncio.DatagramProtocol):
    def __init__(self) -> None:
        self.held: list[tuple[bytes, Address]] = []

    def datagram_received(self, data: bytes, addr: Address) -> None:
        self.held.append((data, addr))


def _channel_state(channel: Channel) -> ChannelState:
    counts = (
        channel.packets_sent,
        channel.bytes_sent,
        channel.packets_received,
        channel.bytes_received,
    )
    return channel.peer, channel.latched, channel.peer_ssrc, channel.latching, counts
