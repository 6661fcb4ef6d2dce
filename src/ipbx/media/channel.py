"""One UDP socket of a media endpoint, with symmetric-RTP latching.

Symmetric RTP (RFC 4961) and NAT practice: send to the address from SDP
until the first packet arrives, then send to wherever packets really come
from. A latched peer is only replaced by a new source that also carries a
new SSRC, so a stray or spoofed packet reusing the stream cannot hijack it.

Reading. A channel starts on the event loop's own datagram transport, the cheapest
way to forward a packet the moment it arrives (a relayed call). A leg whose packets
are only used on the media clock's ticks (music on hold, a queue's waiting room, a
conference) is read on the clock instead (`set_clocked`): what has arrived is read
after each tick's work, so hundreds of such sockets cost the clock's own wake-ups
rather than one per packet. The kernel stamps each datagram's arrival (SO_TIMESTAMPNS)
and `arrival_clock` gives that time to whoever asks while the packet is handled, so
jitter figures and jitter buffers see when a packet came, not when it was read. A
channel that has left its transport keeps its own socket: read on the clock, or when
readable (the loop's add_reader) once it is relayed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import struct
from collections.abc import Callable
from typing import Any, cast

from ipbx.media.clock import MediaClock, media_clock, system_offset

log = logging.getLogger(__name__)

Address = tuple[Any, ...]
Sink = Callable[[bytes], None]

# Linux: <asm-generic/socket.h>; the socket module does not name it.
SO_TIMESTAMPNS = 35
_STAMP = struct.Struct("qq")
_ANCILLARY = socket.CMSG_SPACE(_STAMP.size)
_DATAGRAM = 2048
# Datagrams read from one socket at a time: a flood on one leg cannot stall the others.
READ_BUDGET = 32
# When the packet being handled arrived (loop time), while a clocked read hands it on.
_arrival: float | None = None


def arrival_clock(loop: asyncio.AbstractEventLoop) -> Callable[[], float]:
    """The loop's clock, except while a packet read on the media clock is handled: then
    the time the kernel received it."""
    now = loop.time

    def clock() -> float:
        return now() if _arrival is None else _arrival

    return clock


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
        # The socket, once the channel has left its transport (see the module's notes).
        self._sock: socket.socket | None = None
        self._clock: MediaClock | None = None
        self.reset()

    def reset(self) -> None:
        """Forget the peer and the counts: the socket stays open for another endpoint."""
        self.set_clocked(False)
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
        if self.transport is not None and self.transport.is_closing():
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
        if way.peer is None:
            return
        if way.transport is not None:
            way.transport.sendto(data, way.peer)
        elif not way.sendto(data, way.peer):
            return
        self.packets_sent += 1
        self.bytes_sent += len(data)

    def sendto(self, data: bytes, addr: Address) -> bool:
        """Send one datagram to `addr` whichever way the channel reads; whether it left."""
        if self.transport is not None:
            self.transport.sendto(data, addr)
            return True
        if self._sock is None:
            return False
        try:
            self._sock.sendto(data, addr)
        except OSError as exc:  # a full buffer, or ICMP from a peer that went away
            self.error_received(exc)
            return False
        return True

    @property
    def clocked(self) -> bool:
        return self._clock is not None

    def set_clocked(self, clocked: bool) -> None:
        """Read on the media clock's ticks, or as packets come."""
        if clocked == self.clocked or (self.transport is None and self._sock is None):
            return
        loop = asyncio.get_running_loop()
        if self._sock is None:
            if not clocked:
                return
            self._leave_transport()
        assert self._sock is not None
        if clocked:
            loop.remove_reader(self._sock.fileno())
            self._clock = media_clock()
            self._clock.add_reader(self)
        else:
            assert self._clock is not None
            self._clock.remove_reader(self)
            self._clock = None
            self.read_queued(system_offset())
            loop.add_reader(self._sock.fileno(), self._readable)

    def _leave_transport(self) -> None:
        """Take the socket over from the transport (a duplicate of its descriptor: the
        transport closes its own)."""
        assert self.transport is not None
        original = self.transport.get_extra_info("socket")
        sock = socket.socket(original.family, socket.SOCK_DGRAM, fileno=os.dup(original.fileno()))
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        self.transport.close()
        self.transport = None
        self._sock = sock

    def hand_over(self) -> socket.socket:
        """Stop reading: another process reads the socket (a media worker, media/workers.py)
        until `take_back`. The socket returned is the channel's own, to pass on."""
        if self.transport is not None:
            self._leave_transport()
        assert self._sock is not None
        if self._clock is not None:
            self._clock.remove_reader(self)
            self._clock = None
        else:
            asyncio.get_running_loop().remove_reader(self._sock.fileno())
        return self._sock

    def take_back(self) -> None:
        """Read again as packets come (after `hand_over`)."""
        assert self._sock is not None
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._readable)

    def fileno(self) -> int:
        """The socket's descriptor while the channel has its own socket (-1 otherwise)."""
        return -1 if self._sock is None else self._sock.fileno()

    def read_queued(self, offset: float) -> None:
        """Hand on what has arrived, each datagram at its arrival time (`offset` is the
        loop's clock less the system's, which stamps the datagrams)."""
        for _ in range(READ_BUDGET):
            if not self.read_one(offset):
                return

    def read_one(self, offset: float) -> bool:
        """Hand on one datagram, if one has arrived (a clocked read: see read_queued)."""
        global _arrival
        sock = self._sock
        if sock is None:
            return False
        try:
            data, ancillary, _, addr = sock.recvmsg(_DATAGRAM, _ANCILLARY)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError as exc:
            self.error_received(exc)
            return True
        if ancillary:
            seconds, nanoseconds = _STAMP.unpack_from(ancillary[0][2])
            _arrival = seconds + nanoseconds * 1e-9 + offset
        try:
            self.datagram_received(data, addr)
        finally:
            _arrival = None
        return True

    def _readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        for _ in range(READ_BUDGET):
            try:
                data, addr = sock.recvfrom(_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                self.error_received(exc)
                continue
            self.datagram_received(data, addr)

    def set_peer(self, peer: Address) -> None:
        """A new address from SDP: send there until packets show the real source."""
        self.peer = peer
        self.latched = False

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
        if self._clock is not None:
            self._clock.remove_reader(self)
            self._clock = None
        if self._sock is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed
                asyncio.get_running_loop().remove_reader(self._sock.fileno())
            self._sock.close()
            self._sock = None
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
