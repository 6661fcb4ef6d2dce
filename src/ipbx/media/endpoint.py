"""A media endpoint: one RTP/RTCP socket pair and what a call does with it.

Modes for incoming packets: terminate (decode for recording, detect DTMF),
echo, or bridge to another endpoint. The bridge path forwards datagrams
byte for byte without parsing them: it is the hot path at hundreds of calls.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Concatenate, ParamSpec, Protocol, TypeVar

import numpy as np

from ipbx.media.audiofile import AudioFileError, read_audio
from ipbx.media.channel import Channel, ChannelPair, Sink, arrival_clock, discard
from ipbx.media.codecs import (
    Codec,
    CodecError,
    Decoder,
    Encoder,
    Pcm,
    create_decoder,
    create_encoder,
)
from ipbx.media.digits import DigitListener
from ipbx.media.dtmf import digit_event, digit_packets
from ipbx.media.ports import PortPool, PortPoolExhausted
from ipbx.media.quality import StreamMeter
from ipbx.media.reports import LegReports
from ipbx.media.rtp import SEQ_MOD, TIMESTAMP_MOD, fixed_header, media_packet, seq_add
from ipbx.media.srtp import SrtpContext, protecting, unprotecting
from ipbx.media.wav import WavWriter, finish
from ipbx.media.webrtc import WebRtcTransport

log = logging.getLogger(__name__)

# RFC 3551 §4.5: 20 ms is the default packetisation for G.711.
PTIME_MS = 20
_PTIME = PTIME_MS / 1000
RTP_SSRC_OFFSET = 8
RTCP_SSRC_OFFSET = 4
# Length of a DTMF key press ipbx regenerates on another leg (Q.24 asks for >= 40 ms).
DTMF_MS = 100


class MediaError(RuntimeError):
    """A media operation that cannot run in the endpoint's current state."""


@dataclass(frozen=True, slots=True)
class MediaStats:
    packets_sent: int
    bytes_sent: int
    packets_received: int
    bytes_received: int


class Away(Protocol):
    """Where an endpoint's media went (a media worker): what brings it back, bridged
    here again with its partner unless `rejoin` is false (the bridge is ending)."""

    def come_home(self, rejoin: bool = True) -> None: ...


P = ParamSpec("P")
R = TypeVar("R")
Method = Callable[Concatenate["MediaEndpoint", P], R]


def _home_first(rejoin: bool = True) -> Callable[[Method[P, R]], Method[P, R]]:
    """Bring the endpoint back from a media worker before the method changes it."""

    def decorate(method: Method[P, R]) -> Method[P, R]:
        @functools.wraps(method)
        def at_home(self: MediaEndpoint, /, *args: P.args, **kwargs: P.kwargs) -> R:
            if self.away is not None:
                self.away.come_home(rejoin)
            return method(self, *args, **kwargs)

        return at_home

    return decorate


class MediaEndpoint:
    """Create with `await MediaEndpoint.open(pool)`; `close()` returns the ports."""

    def __init__(self, pool: PortPool[ChannelPair], port: int, rtp: Channel, rtcp: Channel) -> None:
        self._pool = pool
        self._port = port
        self._rtp = rtp
        self._rtcp = rtcp
        self._partner: MediaEndpoint | None = None
        self.codec: Codec | None = None
        self.dtmf_pt: int | None = None
        self.fmtp: Mapping[str, str] = {}
        self.on_dtmf: Callable[[str], None] | None = None
        self._decoder: Decoder | None = None
        self._recorder: WavWriter | None = None
        self.digits: DigitListener | None = DigitListener()
        self._keys = asyncio.Lock()  # held while digits are sent (send_dtmf)
        # What the phone sends us, packet by packet, on every path (relay included): timed
        # by the loop's clock itself on the relay path, a Python call less a packet.
        self.meter = StreamMeter(asyncio.get_running_loop().time)
        pool.reception.open(self.meter)
        # The phone's RTCP, and ours on a leg where ipbx is the RTP source (reports.py).
        self._reports = LegReports(asyncio.get_running_loop().time)
        self.round_trip = self._reports.round_trip
        # A second consumer of the received RTP (a call recorder), beside the mode's own.
        self._tap: Sink | None = None
        self._mode: Callable[[], None] = self._terminate_mode
        # How to stop what plays out on the media clock for this endpoint's bridge.
        self._stop_playout: list[Callable[[], None]] = []
        # RFC 3550 §5.1: SSRC, first sequence number and timestamp are random.
        self._ssrc = random.getrandbits(32)
        self._seq = random.randrange(SEQ_MOD)
        self._timestamp_base = random.randrange(TIMESTAMP_MOD)
        self._epoch = asyncio.get_running_loop().time()
        # The stream's timing while a transcoded bridge sends on it (see timestamp_at).
        self._timeline: Callable[[float], int] | None = None
        self._closed = False
        self._srtp: SrtpContext | None = None
        # The bridge function that joined this endpoint to its partner, to rewire with.
        self._bridged_by: Callable[[MediaEndpoint, MediaEndpoint], None] | None = None
        self._send_rtp: Sink = rtp.send
        self._send_rtcp: Sink = rtcp.send
        self.webrtc: WebRtcTransport | None = None
        # Set while a media worker carries this endpoint's bridge (media/workers.py).
        self.away: Away | None = None
        self._terminate_mode()

    @classmethod
    async def open(cls, pool: PortPool[ChannelPair], latching: bool = True) -> MediaEndpoint:
        """Take a warm RTP/RTCP pair, or bind one, skipping ports another process holds.
        With `latching` (a server's endpoint), RTP goes back to where the phone's packets
        come from; without (a phone's), always to the address from SDP."""
        return cls(pool, *await _take_pair(pool, latching))

    @property
    def local_address(self) -> tuple[str, int]:
        return self._pool.address, self._port

    @property
    def remote_address(self) -> tuple[str, int] | None:
        """Where RTP goes now: the SDP address, or the latched source."""
        peer = self._rtp.peer
        return None if peer is None else (peer[0], peer[1])

    @property
    def stats(self) -> MediaStats:
        rtp = self._rtp
        return MediaStats(
            rtp.packets_sent, rtp.bytes_sent, rtp.packets_received, rtp.bytes_received
        )

    @_home_first()
    def set_remote(
        self,
        host: str,
        port: int,
        codec: Codec,
        dtmf_pt: int | None = None,
        rtcp_port: int | None = None,
        fmtp: Mapping[str, str] | None = None,
    ) -> None:
        """Apply a negotiated SDP; call again on every re-INVITE."""
        # RFC 3550 §11: RTCP goes to the next port unless a=rtcp (RFC 3605) says otherwise.
        self._rtp.set_peer((host, port))
        self._rtcp.set_peer((host, port + 1 if rtcp_port is None else rtcp_port))
        self.set_codec(codec, dtmf_pt, fmtp)

    @_home_first()
    def set_codec(
        self, codec: Codec, dtmf_pt: int | None = None, fmtp: Mapping[str, str] | None = None
    ) -> None:
        """The codec (and telephone-event payload type) the phone sends and receives, and
        the format parameters it asked for (a=fmtp: how it wants to receive the codec)."""
        self.codec = codec
        self.dtmf_pt = dtmf_pt
        self.fmtp = fmtp or {}
        self.meter.clock_rate = codec.clock_rate
        # A codec we cannot decode can still be bridged; only record() needs it.
        try:
            self._decoder = create_decoder(codec)
        except CodecError:
            self._decoder = None

    @_home_first()
    def use_webrtc(self) -> WebRtcTransport:
        """Make this a WebRTC leg (media/webrtc.py); the same transport on later calls."""
        self.webrtc = self.webrtc or WebRtcTransport(self._rtp, self._rtcp, self.set_srtp)
        self.read_on_clock(False)
        return self.webrtc

    @_home_first()
    def read_on_clock(self, clocked: bool = True) -> None:
        """Read the phone's RTP on the media clock's ticks (channel.py: for a leg whose
        packets are only used there), or as it comes. A WebRTC leg is read as it comes:
        its ICE checks and DTLS want answers at once."""
        clocked = clocked and self.webrtc is None
        self._rtp.set_clocked(clocked)
        loop = asyncio.get_running_loop()
        self.meter.clock = arrival_clock(loop) if clocked else loop.time

    @_home_first()
    def echo(self) -> None:
        """Send every RTP packet back where it came from (still detecting DTMF)."""
        self.detach()
        self.read_on_clock(False)
        self._mode = self._echo_mode
        self._echo_mode()
        self._report()

    @_home_first()
    def set_tap(self, tap: Sink | None) -> None:
        """Give every received RTP packet (after SRTP) also to `tap`, whatever the mode;
        None removes it."""
        self._tap = tap
        if self._partner is not None and self._bridged_by is not None:
            self._bridged_by(self, self._partner)
        else:
            self._mode()

    @_home_first(rejoin=False)
    def detach(self) -> None:
        """Leave echo or bridge mode (both legs of a bridge) and terminate media here."""
        partner, self._partner = self._partner, None
        for endpoint in (self, partner):
            if endpoint is not None:
                for stop in endpoint._stop_playout:
                    stop()
                endpoint._stop_playout.clear()
        if partner is not None:
            partner._partner = None
            partner._terminate()
        self._terminate()

    @_home_first()
    def record(self, path: str | Path) -> None:
        """Write the received audio, decoded, to a WAV file until stop_recording()."""
        codec = self._require_codec()
        if self._decoder is None:
            raise MediaError(f"cannot record: no decoder for {codec.name}")
        self.stop_recording()
        self._recorder = WavWriter(path, rate=self._decoder.pcm_rate)
        self._report()

    @_home_first()
    def stop_recording(self) -> Path | None:
        recorder, self._recorder = self._recorder, None
        return finish(recorder)

    @_home_first()
    async def play(self, source: str | Path | Pcm) -> None:
        """Send audio in real time, returning when it has all been sent. A file may be
        any format FFmpeg reads (WAV, MP3, Ogg, FLAC ...) at any rate; PCM is taken to
        be at the codec's PCM rate (`pcm_rate`)."""
        codec = self._require_codec()
        encoder = _encoder(codec)
        pcm = await _read_frames(source, encoder.pcm_rate)
        frame = encoder.pcm_rate * PTIME_MS // 1000
        step = codec.samples_per_frame(PTIME_MS)
        self._report()
        loop = asyncio.get_running_loop()
        start = loop.time()
        first_timestamp = self.timestamp_at(start)
        for index, offset in enumerate(range(0, len(pcm), frame)):
            # Each frame is due at start + n x ptime, so sleep jitter never accumulates.
            await _sleep_until(loop, start + index * _PTIME)
            if self._closed:
                return
            # RFC 3551 §4.1: the marker bit flags the first packet of a talkspurt.
            self._send(
                codec.payload_type,
                encoder.encode(pcm[offset : offset + frame]),
                marker=index == 0,
                timestamp=(first_timestamp + index * step) % TIMESTAMP_MOD,
            )

    def send_audio(self, payload: bytes, timestamp: int, marker: bool = False) -> None:
        """Send a frame encoded for many endpoints (music on hold) as this one's own RTP."""
        if self.codec is None or self._closed:
            return
        if self.away is not None:
            self.away.come_home()
        self._report()
        self._send(self.codec.payload_type, payload, marker, timestamp)

    @_home_first()
    async def send_dtmf(self, digits: str, duration_ms: int = 100, gap_ms: int = 60) -> None:
        """Send digits as RFC 4733 telephone-events at real-time pace, after the digits
        still being sent: two keys' packets side by side would read as more keys."""
        codec = self._require_codec()
        if self.dtmf_pt is None:
            raise MediaError("the peer did not negotiate telephone-event")
        for digit in digits:
            digit_event(digit)
        async with self._keys:
            loop = asyncio.get_running_loop()
            due = loop.time()
            for digit in digits:
                packets = digit_packets(
                    digit, self.timestamp_at(due), codec.clock_rate, duration_ms, PTIME_MS
                )
                for packet in packets:
                    await _sleep_until(loop, due)
                    if self._closed or self.dtmf_pt is None:
                        return
                    self._send(self.dtmf_pt, packet.payload, packet.marker, packet.timestamp)
                    due += _PTIME
                due += gap_ms / 1000

    @_home_first(rejoin=False)
    def close(self) -> None:
        """Return the ports. What a finished call still reads (`meter`, `round_trip`,
        `stats`, `codec`) stays; the rest goes, with every reference back to this
        endpoint, so that it is freed by reference counting as soon as nothing refers to
        it (a transaction may, for 64*T1) and never waits for the cyclic collector."""
        if self._closed:
            return
        self._closed = True
        self._pool.reception.close(self.meter)
        self.detach()
        self._reports.stop()
        self.stop_recording()
        if self.webrtc is not None:
            self.webrtc.close()
        self._rtp.reset()
        self._rtcp.reset()
        now = asyncio.get_running_loop().time()
        if not self._pool.keep_warm(self._port, (self._rtp, self._rtcp), now):
            self._rtp.close()
            self._rtcp.close()
            self._pool.release(self._port)
        self._mode = _closed_mode
        self._send_rtp = self._send_rtcp = discard
        self.on_dtmf = None
        self._tap = self.webrtc = None
        self._decoder = None
        self.digits = None

    @_home_first()
    def set_srtp(self, context: SrtpContext | None) -> None:
        """Put SRTP (RFC 3711) on this leg, or take it off; a running bridge is rewired,
        so the other leg may stay plain RTP. Without SRTP on either leg the relay path
        is the plain byte copy."""
        if context is self._srtp:
            return
        self._srtp = context
        self._send_rtp = self._rtp.send if context is None else protecting(context, self._rtp.send)
        self._send_rtcp = (
            self._rtcp.send if context is None else protecting(context, self._rtcp.send)
        )
        if self._partner is not None and self._bridged_by is not None:
            self._bridged_by(self, self._partner)
        else:
            self._mode()

    def _inbound(self, sink: Sink) -> Sink:
        """The RTP socket's sink: SRTP removed, then `sink`, the meter and the tap."""
        meter, tap = self.meter, self._tap
        if tap is None:

            def received(data: bytes) -> None:
                sink(data)
                meter(data)

        else:

            def received(data: bytes) -> None:
                sink(data)
                meter(data)
                tap(data)

        return received if self._srtp is None else unprotecting(self._srtp, received)

    def _inbound_rtcp(self, sink: Sink) -> Sink:
        return sink if self._srtp is None else unprotecting(self._srtp, sink)

    def _terminate(self) -> None:
        """Terminate media here from now on (a closed endpoint's sockets may already
        serve another endpoint: it touches them no more)."""
        if not self._closed:
            self._mode = self._terminate_mode
            self._terminate_mode()

    def _terminate_mode(self) -> None:
        self._rtp.sink = self._inbound(self._on_rtp)
        self._rtcp.sink = self._inbound_rtcp(self._reports.received)

    def _report(self) -> None:
        """Send RTCP reports of our own from now on (ipbx is this leg's RTP source)."""
        if not self._closed and not self._reports.sending:
            cname = f"ipbx-{self._ssrc:08x}@{self._pool.address}"
            self._reports.start(self._ssrc, self.meter, self._sent_counts, self._out_rtcp, cname)

    def _out_rtcp(self, data: bytes) -> None:
        self._send_rtcp(data)  # whichever it is by then (SRTCP, or nothing once closed)

    def _sent_counts(self) -> tuple[int, int, int]:
        rtp = self._rtp
        now = asyncio.get_running_loop().time()
        return rtp.packets_sent, rtp.bytes_sent - 12 * rtp.packets_sent, self.timestamp_at(now)

    def _echo_mode(self) -> None:
        send, listen = self._send_rtp, self._on_rtp

        def echoed(data: bytes) -> None:
            send(data)
            listen(data)

        self._rtp.sink = self._inbound(echoed)
        self._rtcp.sink = self._inbound_rtcp(self._reports.received)

    def _on_rtp(self, data: bytes) -> None:
        digits = self.digits
        if digits is None:
            return
        # A peer using rtcp-mux (RFC 5761) sends RTCP here too.
        packet = media_packet(data)
        if packet is None:
            return
        if packet.payload_type == self.dtmf_pt:
            self._heard(digits.event(packet))
            return
        if (
            self._decoder is None
            or self.codec is None
            or packet.payload_type != self.codec.payload_type
            or (self._recorder is None and not digits.hears_tones)
        ):
            return
        pcm = self._decoder.decode(packet.payload)
        if self._recorder is not None:
            self._recorder.write(pcm)
        self._heard(digits.audio(pcm, self._decoder.pcm_rate))

    def _heard(self, digits: list[str]) -> None:
        """Tell `on_dtmf` of the digits the phone sent."""
        if self.on_dtmf is not None:
            for digit in digits:
                self.on_dtmf(digit)

    def _send(self, payload_type: int, payload: bytes, marker: bool, timestamp: int) -> None:
        header = fixed_header(payload_type, self._seq, timestamp, self._ssrc, marker)
        self._send_rtp(header + payload)
        self._seq = seq_add(self._seq, 1)

    def timestamp_at(self, when: float) -> int:
        """The RTP timestamp of audio sampled at loop time `when`: one clock for audio,
        telephone-events (which begin at the time their timestamp gives, RFC 4733 §2.2.1)
        and the SRs' RTP time, so interleaving them never makes it go back. A transcoded
        bridge's audio keeps the far phone's timing, which drifts from ours: while it
        sends on this leg its timeline is the clock (`_timeline`, see bridge.py)."""
        if self._timeline is not None:
            return self._timeline(when)
        return self._own_timestamp(when)

    def _own_timestamp(self, when: float) -> int:
        clock_rate = self.codec.clock_rate if self.codec else 8000
        return (self._timestamp_base + round((when - self._epoch) * clock_rate)) % TIMESTAMP_MOD

    def _timestamp_base_at(self, now: float) -> int:
        """The base of this leg's own clock that gives, at `now`, the timestamp its stream
        has (for the clock to go on from elsewhere: media/handover.py)."""
        drift = self.timestamp_at(now) - self._own_timestamp(now)
        return (self._timestamp_base + drift) % TIMESTAMP_MOD

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def pcm_rate(self) -> int:
        """The sample rate of the audio play() takes and record() writes for the codec
        (16000 for G.722 on its 8000 Hz RTP clock, 48000 for Opus)."""
        codec = self._require_codec()
        return self._decoder.pcm_rate if self._decoder is not None else codec.clock_rate

    def _require_codec(self) -> Codec:
        if self.codec is None or self._closed:
            raise MediaError("set_remote() must negotiate a codec first (or endpoint closed)")
        return self.codec


def _closed_mode() -> None:
    """The mode of a closed endpoint: its sockets are no longer its own."""


def close_pool(pool: PortPool[ChannelPair]) -> None:
    """Close the sockets the pool keeps warm (at shutdown)."""
    for rtp, rtcp in pool.drain_warm():
        rtp.close()
        rtcp.close()


async def _take_pair(pool: PortPool[ChannelPair], latching: bool) -> tuple[int, Channel, Channel]:
    """A port and its RTP and RTCP channels (MediaEndpoint.open): a warm pair once out of
    quarantine, else a newly bound one, else a warm one still in quarantine."""
    loop = asyncio.get_running_loop()
    warm = pool.take_warm(loop.time())
    if warm is None:
        try:
            return await _bind_pair(loop, pool, latching)
        except PortPoolExhausted:
            warm = pool.take_warm(loop.time(), force=True)
            if warm is None:
                raise
    port, (rtp, rtcp) = warm
    for channel in (rtp, rtcp):
        channel.reset()
        channel.latching = latching
    return port, rtp, rtcp


async def _bind_pair(
    loop: asyncio.AbstractEventLoop, pool: PortPool[ChannelPair], latching: bool
) -> tuple[int, Channel, Channel]:
    for _ in range(pool.size):
        port = pool.acquire()
        rtp = Channel(RTP_SSRC_OFFSET, latching)
        rtcp = Channel(RTCP_SSRC_OFFSET, latching)
        try:
            await _bind(loop, rtp, pool.address, port)
            await _bind(loop, rtcp, pool.address, port + 1)
        except OSError as exc:
            log.debug("RTP port %d busy: %s", port, exc)
            rtp.close()
            pool.release(port)
            continue
        return port, rtp, rtcp
    raise PortPoolExhausted(f"every RTP port in {pool.first}-{pool.last} is busy")


async def _read_frames(source: str | Path | Pcm, rate: int) -> Pcm:
    """whole_frames, a file read off the loop."""
    if isinstance(source, str | Path):
        return await asyncio.to_thread(whole_frames, source, rate)
    return whole_frames(source, rate)


def whole_frames(source: str | Path | Pcm, rate: int) -> Pcm:
    """The audio of a file (any format FFmpeg reads; MediaError when it cannot) or of PCM,
    at `rate`, padded with silence to whole 20 ms frames."""
    if isinstance(source, str | Path):
        try:
            pcm = read_audio(source, rate)
        except AudioFileError as exc:
            raise MediaError(str(exc)) from exc
    else:
        pcm = np.asarray(source, dtype=np.int16)
    frame = rate * PTIME_MS // 1000
    return np.concatenate([pcm, np.zeros(-len(pcm) % frame, dtype=np.int16)])


def _encoder(codec: Codec) -> Encoder:
    try:
        return create_encoder(codec)
    except CodecError as exc:
        raise MediaError(f"cannot play: {exc}") from exc


async def _bind(loop: asyncio.AbstractEventLoop, channel: Channel, address: str, port: int) -> None:
    await loop.create_datagram_endpoint(lambda: channel, local_addr=(address, port))


async def _sleep_until(loop: asyncio.AbstractEventLoop, due: float) -> None:
    delay = due - loop.time()
    if delay > 0:
        await asyncio.sleep(delay)
