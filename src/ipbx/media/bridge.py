"""The bridge technologies: how two media endpoints are joined.

One function per shape, in the way Asterisk's `bridges/` holds one file per bridge
technology: `relay` forwards RTP and RTCP byte for byte (SRTP removed and added per leg),
`transcode` plays each direction out through a jitter buffer and re-encodes it, and
`connect` picks between the two from the codecs the legs negotiated. Music on hold
(media/moh.py) plays one folder into every listening endpoint; a conference (media/mixer.py)
mixes any number of endpoints.
"""

from __future__ import annotations

import asyncio

import numpy as np

from ipbx.media.channel import Sink, arrival_clock
from ipbx.media.clock import TICK, media_clock
from ipbx.media.codecs import Pcm, pcm_rate
from ipbx.media.endpoint import DTMF_MS, MediaEndpoint
from ipbx.media.inband import dtmf_tone
from ipbx.media.playout import Playout
from ipbx.media.rtp import TIMESTAMP_MOD, media_packet
from ipbx.media.transcode import Packetizer


def connect(a: MediaEndpoint, b: MediaEndpoint) -> None:
    """Join two legs here (`join`); with media workers, one may take the bridge over
    (media/workers.py)."""
    join(a, b)
    offload = a._pool.offload
    if offload is not None:
        offload(a, b)


def join(a: MediaEndpoint, b: MediaEndpoint) -> None:
    """Join two legs in this process: relayed when they share a codec (or one has none
    yet), transcoded when their codecs differ. Encoding names are case-insensitive (RFC
    4855 §3): a phone writing `pcmu` shares PCMU with one writing `PCMU`."""
    x, y = a.codec, b.codec
    if x is None or y is None or (x.name.lower(), x.clock_rate) == (y.name.lower(), y.clock_rate):
        relay(a, b)
    else:
        transcode(a, b)


def relay(a: MediaEndpoint, b: MediaEndpoint) -> None:
    """Relay RTP and RTCP between two endpoints in both directions: byte for byte, except
    that a leg with SRTP has it removed on the way in and added on the way out."""
    a.detach()
    b.detach()
    a._partner, b._partner = b, a
    a._bridged_by = b._bridged_by = relay
    a.read_on_clock(False)
    b.read_on_clock(False)
    a._rtp.sink, b._rtp.sink = a._inbound(b._send_rtp), b._inbound(a._send_rtp)
    for src, dst in ((a, b), (b, a)):
        # The phones' own reports pass through; ours would describe streams we only relay.
        src._reports.stop()
        src._rtcp.sink = src._inbound_rtcp(_relaying_rtcp(src, dst))


def _relaying_rtcp(src: MediaEndpoint, dst: MediaEndpoint) -> Sink:
    """RTCP from src's phone to dst's: forwarded as it is, and watched on the way for
    the round trip of each leg (an SR leaving for dst's phone, src's blocks coming in)."""
    send, received, sent = dst._send_rtcp, src.round_trip.received, dst.round_trip.sent

    def relay(data: bytes) -> None:
        send(data)
        received(data)
        sent(data)

    return relay


def transcode(a: MediaEndpoint, b: MediaEndpoint) -> None:
    """Bridge two legs whose codecs differ (set by set_remote): each direction is played
    out through a jitter buffer with loss concealment, resampled and re-encoded, and sent
    as the receiving leg's own RTP stream (its SSRC, sequence and timestamps). DTMF
    events are regenerated on the other leg: as RFC 4733 events when it negotiated
    telephone-event, as tones in its audio otherwise. RTCP describes a stream that no
    longer exists on the other side, so it is not carried across. Both legs are read on
    the media clock (channel.py), which plays each direction out."""
    a.detach()
    b.detach()
    a._partner, b._partner = b, a
    a._bridged_by = b._bridged_by = transcode
    # Each direction is played out on the media clock: its packets are read there too.
    a.read_on_clock()
    b.read_on_clock()
    for src, dst in ((a, b), (b, a)):
        direction = _Transcoding(src, dst)
        src._rtp.sink = src._inbound(direction.receive)
        src._rtcp.sink = src._inbound_rtcp(src._reports.received)
        src._stop_playout.append(direction.close)
        src._report()


class _Transcoding:
    """One direction of a transcoded bridge, played out on the media clock."""

    def __init__(self, src: MediaEndpoint, dst: MediaEndpoint) -> None:
        self._src, self._dst = src, dst
        source, target = src._require_codec(), dst._require_codec()
        # The target's encoder at the source's own rate where it can run at it (Opus),
        # and the source's decoder at the encoder's: no resampling on the way.
        self._packetizer = Packetizer(target, dst.fmtp, rate=pcm_rate(source))
        clock = arrival_clock(asyncio.get_running_loop())
        self._playout = Playout(source, self._packetizer.pcm_rate, clock)
        self._tones = np.zeros(0, dtype=np.int16)
        self._timestamp: int | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        # Transcoders of one direction and codecs cost alike: the clock spreads them.
        kind = (source.name.lower(), target.name.lower())
        self._unsubscribe = media_clock().subscribe(self.tick, kind)

    def receive(self, data: bytes) -> None:
        packet = media_packet(data)
        if packet is None:
            return
        if packet.payload_type == self._src.dtmf_pt:
            if self._src.digits is not None:
                for digit in self._src.digits.event(packet):
                    self._relay_digit(digit)
        else:
            self._playout.receive_packet(packet)

    def tick(self, now: float) -> None:
        dst = self._dst
        step = self._packetizer.timestamp_step
        # Play what falls due before the next tick too: a frame due just after this
        # tick would otherwise wait a whole tick and go out with the next one, 20 ms late.
        for pcm in self._playout.pull(now + TICK):
            if len(self._tones):
                pcm = self._mix_tones(pcm)
            for payload in self._packetizer.packets(pcm):
                if self._timestamp is None:
                    self._timestamp = dst.timestamp_at(now)
                dst._send(dst._require_codec().payload_type, payload, False, self._timestamp)
                self._timestamp = (self._timestamp + step) % TIMESTAMP_MOD

    def close(self) -> None:
        self._unsubscribe()
        for task in self._tasks:
            task.cancel()

    def _relay_digit(self, digit: str) -> None:
        if self._src.on_dtmf is not None:
            self._src.on_dtmf(digit)
        if self._dst.dtmf_pt is None:
            tone = dtmf_tone(digit, DTMF_MS, rate=self._packetizer.pcm_rate)
            gap = np.zeros(len(tone) // 2, dtype=np.int16)
            self._tones = np.concatenate([self._tones, tone, gap])
            return
        task = asyncio.ensure_future(self._dst.send_dtmf(digit, DTMF_MS))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _mix_tones(self, pcm: Pcm) -> Pcm:
        # While a key is pressed its tone replaces the voice, as a phone's keypad does.
        count = min(len(pcm), len(self._tones))
        mixed = pcm.copy()
        mixed[:count] = self._tones[:count]
        self._tones = self._tones[count:]
        return mixed
