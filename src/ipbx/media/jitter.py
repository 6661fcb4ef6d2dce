"""Adaptive jitter buffer for the decoding paths: recording, transcoding, DTMF detection.

Packets go in with their arrival time, frames come out at the playout clock; the
caller passes the time in (seconds on a monotonic clock), the buffer never reads it.
The store is a ring of fixed capacity indexed by sequence number modulo the
capacity, a power of two, so the index stays right across the 16-bit wrap (as in
aiortc's jitter buffer).

Target delay: a quantile of the recent transit times (RFC 3550 §6.4.1: arrival time
minus RTP timestamp), measured above the fastest transit in the window. We prefer
this to scaling the RFC 3550 A.8 interarrival jitter J: J is a smoothed mean of
|transit difference| between consecutive packets, so it says nothing directly
about how many packets a given delay makes late, it reads D/3 for a uniform
0..D spread and it lags behind spikes. A quantile sets the late-packet rate
outright, whatever the shape of the delay distribution (WebRTC's NetEq also
targets a quantile of the relative arrival delay). J is still computed, for RTCP,
in quality.py.

The playout delay moves one frame at a time: it grows by waiting one more frame for
a missing packet (the decoder conceals that frame), and shrinks by dropping a frame
when the next one is already here, at most once per `shrink_interval` frames.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass

from ipbx.media.rtp import SEQ_MOD, TIMESTAMP_MOD, RtpPacket, seq_add, seq_diff

# Opus carries at most 120 ms per packet (RFC 6716 §3.2.5); a larger timestamp step
# between consecutive sequence numbers is a silence gap, not the frame duration.
_MAX_FRAME_SECONDS = 0.120


def timestamp_diff(a: int, b: int) -> int:
    """Signed distance a - b between RTP timestamps, which wrap modulo 2**32 (RFC 3550 §5.1)."""
    return (a - b + TIMESTAMP_MOD // 2) % TIMESTAMP_MOD - TIMESTAMP_MOD // 2


@dataclass(frozen=True, slots=True)
class JitterConfig:
    # Slots in the ring; a power of two dividing 2**16 keeps `seq % capacity` continuous
    # across the wrap. 128 slots hold 2.5 s of 20 ms frames.
    capacity: int = 128
    # Frame duration assumed until two consecutive packets show the real one
    # (RFC 3551 §4.2: 20 ms is the default audio packetization interval).
    ptime_ms: int = 20
    min_delay_ms: float = 20.0
    max_delay_ms: float = 200.0
    # 2 % late packets: the decoding paths care more about loss than about latency.
    quantile: float = 0.98
    # Transit samples kept: 5 s at 20 ms, long enough for the 98th percentile to mean
    # something (5 samples above it), short enough to follow a route change.
    window: int = 250
    # ITU-T G.711 Appendix I mutes its concealment after 60 ms of consecutive loss;
    # beyond that the buffer tells the decoder to play silence.
    plc_limit_ms: float = 60.0
    # At most one frame dropped per this many frames played when the delay shrinks.
    shrink_interval: int = 50

    def __post_init__(self) -> None:
        if not 1 <= self.capacity <= SEQ_MOD // 2 or self.capacity & (self.capacity - 1):
            raise ValueError("jitter buffer capacity must be a power of two up to 32768")
        if not 0 <= self.min_delay_ms <= self.max_delay_ms:
            raise ValueError("jitter buffer needs 0 <= min_delay_ms <= max_delay_ms")
        if not 0 < self.quantile <= 1 or self.window < 1:
            raise ValueError("jitter buffer quantile must be in (0, 1] and window >= 1")


@dataclass(frozen=True, slots=True)
class Frame:
    """A packet whose playout time has come: decode it."""

    packet: RtpPacket


@dataclass(frozen=True, slots=True)
class Lost:
    """A frame slot with no packet to play.

    `conceal` is True while the decoder should run packet loss concealment, False once
    the run of missing frames is past the PLC limit and it should play silence.
    """

    sequence_number: int
    timestamp: int
    conceal: bool


@dataclass(frozen=True, slots=True)
class JitterStats:
    received: int
    played: int
    # Sequence numbers given up for good (never arrived before their turn).
    lost: int
    # Arrived after their turn and were discarded.
    late: int
    duplicates: int
    # Frames discarded to shorten the delay.
    dropped: int
    # Lost markers emitted without giving up a sequence number: waiting one more frame
    # for a late packet, or an empty buffer (an outage or silence suppression).
    stretched: int
    # Restarts on a new SSRC or a sequence jump.
    resets: int
    delay_ms: float
    target_ms: float


class _TransitWindow:
    """The last `size` transit times, also kept sorted for the minimum and the quantile."""

    def __init__(self, size: int, quantile: float) -> None:
        self._recent: deque[float] = deque(maxlen=size)
        self._sorted: list[float] = []
        self._quantile = quantile

    def add(self, transit: float) -> None:
        if len(self._recent) == self._recent.maxlen:
            del self._sorted[bisect.bisect_left(self._sorted, self._recent[0])]
        self._recent.append(transit)
        bisect.insort(self._sorted, transit)

    def clear(self) -> None:
        self._recent.clear()
        self._sorted.clear()

    @property
    def fastest(self) -> float:
        return self._sorted[0]

    @property
    def spread(self) -> float:
        """Transit at the quantile, above the fastest one."""
        index = min(len(self._sorted) - 1, int(self._quantile * len(self._sorted)))
        return self._sorted[index] - self._sorted[0]


class JitterBuffer:
    """One RTP stream (one SSRC) from the network to a decoder.

    Call `push` for every packet as it arrives and `pop` at the playout clock; `pop`
    returns one item per frame slot that is due, so a caller that fell behind loops
    until it returns None.
    """

    def __init__(self, clock_rate: int, config: JitterConfig | None = None) -> None:
        self.clock_rate = clock_rate
        self.config = config or JitterConfig()
        self._ring: list[RtpPacket | None] = [None] * self.config.capacity
        # The unwrapped timestamp of each slot's packet, as extended when it came.
        self._stamps = [0] * self.config.capacity
        self._window = _TransitWindow(self.config.window, self.config.quantile)
        self._step = clock_rate * self.config.ptime_ms // 1000
        self._ssrc: int | None = None
        # Next sequence number to play and the extended (unwrapped) timestamp of its slot.
        self._next_seq = 0
        self._next_ts = 0
        self._highest_seq = 0
        self._ts_ref = 0
        # The slot of extended timestamp t is due at t / clock_rate + _offset.
        self._offset = 0.0
        self._playing = False
        # Set by empty-buffer markers: the next frame re-anchors the playout clock.
        self._resync = False
        self._previous_ts: int | None = None
        self._lost_run = 0
        self._since_shrink = 0
        self._probe: tuple[RtpPacket, float] | None = None
        self._received = self._played = self._lost = self._late = 0
        self._duplicates = self._dropped = self._stretched = self._resets = 0

    def push(self, packet: RtpPacket, now: float) -> None:
        if packet.ssrc != self._ssrc:
            # RFC 3550 §3 (SSRC): a new SSRC is a new source with its own sequence and timing;
            # frames still held from the old one are discarded.
            self._restart(packet, now)
            return
        capacity = self.config.capacity
        distance = seq_diff(packet.sequence_number, self._next_seq)
        if not -capacity < distance < capacity:
            # RFC 3550 A.1: a big jump is believed only when the next packet follows it.
            if self._probe and packet.sequence_number == seq_add(self._probe[0].sequence_number, 1):
                self._restart(*self._probe)
                self.push(packet, now)
            else:
                self._probe = (packet, now)
            return
        self._probe = None
        slot = packet.sequence_number % capacity
        held = self._ring[slot]
        if held is not None and held.sequence_number == packet.sequence_number:
            self._duplicates += 1
            return
        ts = self._extend(packet.timestamp)
        self._window.add(now - ts / self.clock_rate)
        if distance < 0:
            if self._playing or seq_diff(self._highest_seq, packet.sequence_number) >= capacity:
                self._late += 1
                return
            # Not playing yet: an earlier packet moves the start back.
            self._next_seq, self._next_ts = packet.sequence_number, ts
        self._store(packet, ts)

    def pop(self, now: float) -> Frame | Lost | None:
        if self._ssrc is None:
            return None
        if not self._playing:
            self._offset = self._desired_offset()
        frame_seconds = self._step / self.clock_rate
        head = self._held(self._next_seq)
        if head is None:
            if now < self._next_ts / self.clock_rate + self._offset:
                return None
            pending = self._lowest_pending()
            if pending is not None and not self._resync:
                if self._desired_offset() - self._offset >= frame_seconds / 2:
                    # Wait one frame longer for the missing packet: the delay grows.
                    self._offset += frame_seconds
                    self._stretched += 1
                    return self._lost_marker()
                self._lost += 1
                marker = self._lost_marker()
                self._next_seq = seq_add(self._next_seq, 1)
                self._next_ts += self._step
                return marker
            if pending is None or timestamp_diff(pending.timestamp, self._next_ts) > 0:
                # Empty buffer, or the next packet's slot has not come yet.
                self._stretched += 1
                self._resync = True
                marker = self._lost_marker()
                self._next_ts += self._step
                return marker
            # Markers already filled the time of the missing packets: skip to this one.
            self._lost += seq_diff(pending.sequence_number, self._next_seq)
            self._next_seq = pending.sequence_number
            head = pending
        ts = self._stamps[head.sequence_number % self.config.capacity]
        if self._resync:
            # The frame takes the current slot: markers that covered its own time (a late
            # packet) push the playout clock back; a later timestamp (after silence
            # suppression) keeps it.
            self._offset += max(0, self._next_ts - ts) / self.clock_rate
            self._resync = False
        if now < ts / self.clock_rate + self._offset:
            return None
        if self._should_shrink(frame_seconds):
            self._dropped += 1
            self._offset -= frame_seconds
            self._since_shrink = 0
            self._learn_step(ts)
            self._advance_past(head, ts)
            return self.pop(now)
        self._playing = True
        self._played += 1
        self._since_shrink += 1
        self._lost_run = 0
        self._learn_step(ts)
        self._advance_past(head, ts)
        return Frame(head)

    @property
    def stats(self) -> JitterStats:
        delay = self._offset - self._window.fastest if self._ssrc is not None else 0.0
        return JitterStats(
            received=self._received,
            played=self._played,
            lost=self._lost,
            late=self._late,
            duplicates=self._duplicates,
            dropped=self._dropped,
            stretched=self._stretched,
            resets=self._resets,
            delay_ms=1000 * delay,
            target_ms=1000 * self._target_delay() if self._ssrc is not None else 0.0,
        )

    def _restart(self, packet: RtpPacket, now: float) -> None:
        if self._ssrc is not None:
            self._resets += 1
        self._ssrc = packet.ssrc
        self._ring = [None] * self.config.capacity
        self._window.clear()
        self._probe = None
        self._playing = self._resync = False
        self._previous_ts = None
        self._lost_run = 0
        self._next_seq = self._highest_seq = packet.sequence_number
        self._next_ts = self._ts_ref = packet.timestamp
        self._window.add(now - packet.timestamp / self.clock_rate)
        self._store(packet, packet.timestamp)

    def _store(self, packet: RtpPacket, ts: int) -> None:
        slot = packet.sequence_number % self.config.capacity
        self._ring[slot] = packet
        self._stamps[slot] = ts
        self._received += 1
        if seq_diff(packet.sequence_number, self._highest_seq) > 0:
            self._highest_seq = packet.sequence_number

    def _extend(self, timestamp: int) -> int:
        """The timestamp unwrapped next to the latest one seen (RFC 3550 §5.1 wrap)."""
        extended = self._ts_ref + timestamp_diff(timestamp, self._ts_ref % TIMESTAMP_MOD)
        self._ts_ref = max(self._ts_ref, extended)
        return extended

    def _held(self, seq: int) -> RtpPacket | None:
        packet = self._ring[seq % self.config.capacity]
        return packet if packet is not None and packet.sequence_number == seq else None

    def _lowest_pending(self) -> RtpPacket | None:
        for distance in range(1, seq_diff(self._highest_seq, self._next_seq) + 1):
            packet = self._held(seq_add(self._next_seq, distance))
            if packet is not None:
                return packet
        return None

    def _target_delay(self) -> float:
        low, high = self.config.min_delay_ms / 1000, self.config.max_delay_ms / 1000
        return min(high, max(low, self._window.spread))

    def _desired_offset(self) -> float:
        return self._window.fastest + self._target_delay()

    def _should_shrink(self, frame_seconds: float) -> bool:
        return (
            self._playing
            and self._since_shrink >= self.config.shrink_interval
            and self._offset - self._desired_offset() >= frame_seconds
            and self._held(seq_add(self._next_seq, 1)) is not None
        )

    def _lost_marker(self) -> Lost:
        self._lost_run += 1
        self._previous_ts = None
        frame_ms = 1000 * self._step / self.clock_rate
        conceal = self._lost_run * frame_ms <= self.config.plc_limit_ms
        return Lost(self._next_seq, self._next_ts % TIMESTAMP_MOD, conceal)

    def _learn_step(self, ts: int) -> None:
        # Consecutive frames show the real packetization, which a=ptime (RFC 4566 §6) may change.
        if self._previous_ts is not None:
            step = ts - self._previous_ts
            if 0 < step <= self.clock_rate * _MAX_FRAME_SECONDS:
                self._step = step
        self._previous_ts = ts

    def _advance_past(self, packet: RtpPacket, ts: int) -> None:
        self._next_seq = seq_add(packet.sequence_number, 1)
        self._next_ts = ts + self._step
