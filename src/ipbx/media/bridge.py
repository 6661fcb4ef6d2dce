"""The bridge technologies: how two media endpoints are joined.

One function per shape, in the way Asterisk's `bridges/` holds one file per bridge
technology: `relay` forwards RTP and RTCP byte for byte (SRTP removed and added per leg),
`transcode` decodes each packet and re-encodes it as it comes, and
`connect` picks between the two from the codecs the legs negotiated. Music on hold
(media/moh.py) plays one folder into every listening endpoint; a conference (media/mixer.py)
mixes any number of endpoints.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import numpy as np

from ipbx.media.channel import Sink
from ipbx.media.codecs import Pcm
from ipbx.media.endpoint import DTMF_MS, MediaEndpoint
from ipbx.media.inband import dtmf_tone
from ipbx.media.jitter import timestamp_diff
from ipbx.media.quality import MAX_DROPOUT, MAX_MISORDER
from ipbx.media.rtp import TIMESTAMP_MOD, media_packet, seq_add, seq_diff
from ipbx.media.transcode import Transcoder


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
    """Bridge two legs whose codecs differ (set by set_remote): each packet is decoded,
    resampled, re-encoded and sent on as it arrives, as the receiving leg's own RTP
    stream (its SSRC and sequence; timestamps that keep the sender's timing). DTMF
    events are regenerated on the other leg: as RFC 4733 events when it negotiated
    telephone-event, as tones in place of its audio otherwise. RTCP describes a stream
    that no longer exists on the other side, so it is not carried across.

    There is no jitter buffer on the way, as on a relayed call: the receiving phone's
    own buffer absorbs the network's jitter, once, from timing passed on as it came.
    FreeSWITCH's documentation advises the same for a bridged call ("preserve the
    original timestamps so your phone can use its own jitterbuffer"), and rtpengine
    transcodes without one unless given --jitter-buffer. Played out on the media clock
    through a buffer of its own, as this bridge was before, a transcoded packet cost
    15-30 % more CPU, and every packet waited for its slot of the clock: in alternating
    100-call runs on one core the added jitter's p99 was 2.7 and 9.8 ms, packet by
    packet 1.4 and 1.5 ms (README, the sixth paired run)."""
    a.detach()
    b.detach()
    a._partner, b._partner = b, a
    a._bridged_by = b._bridged_by = transcode
    a.read_on_clock(False)
    b.read_on_clock(False)
    for src, dst in ((a, b), (b, a)):
        direction = _Transcoding(src, dst)
        dst._timeline = direction.timestamp_at
        src._rtp.sink = src._inbound(direction.receive)
        src._rtcp.sink = src._inbound_rtcp(src._reports.received)
        src._stop_playout.append(direction.close)
        src._report()


class _Transcoding:
    """One direction of a transcoded bridge.

    A packet that comes after a later one was sent on (reordered or repeated) is
    dropped: its turn has passed. One Opus packet lost before ipbx is rebuilt from the
    next one's in-band FEC (concealed by libopus where that carries none) and goes out
    late, in its place; other losses leave their sequence numbers unused, so the
    receiver counts them lost and conceals them as it would on a relayed call. A
    silence (Opus DTX: the timestamp jumps, the sequence does not) moves the timestamps
    on alone. A new SSRC, or a jump in the sequence or back in time, starts a new
    talkspurt (marker bit) where the wall clock says it is. Key tones for a leg without
    telephone-event go out in place of the voice, at ipbx's own pace."""

    def __init__(self, src: MediaEndpoint, dst: MediaEndpoint) -> None:
        self._src, self._dst = src, dst
        source, target = src._require_codec(), dst._require_codec()
        self._transcoder = Transcoder(source, target, dst_fmtp=dst.fmtp)
        self._packetizer = self._transcoder.packetizer
        self._source_pt, self._target_pt = source.payload_type, target.payload_type
        self._source_rate, self._target_rate = source.clock_rate, target.clock_rate
        self._clock = asyncio.get_running_loop().time
        self._tones = np.zeros(0, dtype=np.int16)
        self._tasks: set[asyncio.Task[None]] = set()
        self._keying: asyncio.Task[None] | None = None
        self._started = False
        # The stream being passed on (None: the next packet starts a talkspurt).
        self._ssrc: int | None = None
        self._seq = 0
        # The source timestamp the next packet should have, and the target timestamp of
        # the first sample not yet sent (packets of unequal ptimes: one waits for more).
        self._next_in = 0
        self._out = 0
        # When the next packet is due (loop time), and a packet's length in target units.
        self._due = 0.0
        self._frame = 0

    def receive(self, data: bytes) -> None:
        packet = media_packet(data)
        if packet is None:
            return
        if packet.payload_type == self._src.dtmf_pt:
            if self._src.digits is not None:
                for digit in self._src.digits.event(packet):
                    self._relay_digit(digit)
            return
        if packet.payload_type != self._source_pt or self._keying is not None:
            return
        now = self._clock()
        marker = packet.marker
        delta = seq_diff(packet.sequence_number, self._seq)
        gap = timestamp_diff(packet.timestamp, self._next_in)
        if packet.ssrc != self._ssrc or not 0 < delta < MAX_DROPOUT or gap < 0:
            if packet.ssrc == self._ssrc and -MAX_MISORDER < delta <= 0:
                return
            self._restart(now)
            marker = True
        elif gap:
            recovered = self._recovered(packet.payload, delta, gap)
            if len(recovered):
                self._pass_on(recovered, False)
            else:
                self._skip(delta - 1, gap)
        pcm = self._transcoder.decode(packet.payload)
        rate = self._transcoder.dst_rate
        self._ssrc, self._seq = packet.ssrc, packet.sequence_number
        self._next_in = (packet.timestamp + len(pcm) * self._source_rate // rate) % TIMESTAMP_MOD
        self._frame = len(pcm) * self._target_rate // rate
        self._due = now + len(pcm) / rate
        self._pass_on(pcm, marker)

    def _pass_on(self, pcm: Pcm, marker: bool) -> None:
        dst, step = self._dst, self._packetizer.timestamp_step
        for payload in self._transcoder.encode(pcm):
            dst._send(self._target_pt, payload, marker, self._out)
            marker = False
            self._out = (self._out + step) % TIMESTAMP_MOD

    def _recovered(self, payload: bytes, delta: int, gap: int) -> Pcm:
        """The audio of the one packet lost just before `payload`, from the redundancy
        `payload` carries (Opus in-band FEC, which useinbandfec=1 asks for); none for
        another gap, or a codec without it."""
        if delta != 2 or gap * self._target_rate // self._source_rate != self._frame:
            return np.zeros(0, dtype=np.int16)
        transcoder = self._transcoder
        return transcoder.recover(payload, gap * transcoder.src_rate // self._source_rate)

    def _waiting(self) -> int:
        """The target timestamp units of the samples waiting for their packet."""
        packetizer = self._packetizer
        return packetizer.pending * packetizer.timestamp_step // packetizer.packet_samples

    def _restart(self, now: float) -> None:
        if not self._started:
            self._out = self._dst.timestamp_at(now)
            self._started = True
        else:
            late = round(max(0.0, now - self._due) * self._target_rate)
            self._out = (self._out + self._waiting() + late) % TIMESTAMP_MOD
        self._due = max(now, self._due)
        self._packetizer.discard()

    def _skip(self, lost: int, gap: int) -> None:
        """Move on past `lost` packets and `gap` source timestamp units that never came."""
        if lost > 0 and self._frame:
            # The receiver's sequence skips the packets those would have made.
            step = self._packetizer.timestamp_step
            self._dst._seq = seq_add(self._dst._seq, round(lost * self._frame / step))
        advance = self._waiting() + gap * self._target_rate // self._source_rate
        self._out = (self._out + advance) % TIMESTAMP_MOD
        self._packetizer.discard()

    def timestamp_at(self, when: float) -> int:
        """The timestamp of audio at loop time `when` on the stream this direction sends:
        where its packets' timing puts it (the leg's own clock before the first)."""
        if not self._started:
            return self._dst._own_timestamp(when)
        return (self._out + round((when - self._due) * self._target_rate)) % TIMESTAMP_MOD

    def close(self) -> None:
        """Stop; the leg's own clock goes on from where this direction's timeline got to."""
        for task in self._tasks:
            task.cancel()
        dst = self._dst
        dst._timestamp_base = dst._timestamp_base_at(self._clock())
        dst._timeline = None

    def _relay_digit(self, digit: str) -> None:
        if self._src.on_dtmf is not None:
            self._src.on_dtmf(digit)
        if self._dst.dtmf_pt is None:
            tone = dtmf_tone(digit, DTMF_MS, rate=self._transcoder.dst_rate)
            gap = np.zeros(len(tone) // 2, dtype=np.int16)
            self._tones = np.concatenate([self._tones, tone, gap])
            if self._keying is None:
                self._keying = self._start(self._play_tones())
            return
        self._start(self._dst.send_dtmf(digit, DTMF_MS))

    def _start(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _play_tones(self) -> None:
        """Send the key tones in place of the voice, at the packet rate, whether or not
        the phone sends audio meanwhile (it may fall silent while a key is held)."""
        loop = asyncio.get_running_loop()
        # The tones start where the voice's last packet ends (now, if that has passed).
        self._restart(loop.time())
        due = self._due
        marker, samples = True, self._packetizer.packet_samples
        try:
            while len(self._tones):
                frame, self._tones = self._tones[:samples], self._tones[samples:]
                self._pass_on(np.pad(frame, (0, samples - len(frame))), marker)
                marker = False
                due += samples / self._transcoder.dst_rate
                self._due = due
                await asyncio.sleep(due - loop.time())
        finally:
            # The voice resumes as a new talkspurt, after the tones.
            self._keying, self._ssrc = None, None
