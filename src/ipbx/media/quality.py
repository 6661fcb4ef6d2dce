"""Receive statistics of an RTP stream (RFC 3550 Appendix A) and a MOS estimate (ITU-T G.107).

`ReceptionStatistics` follows the reference code of RFC 3550 A.1 (sequence validation
and extension), A.3 (expected and lost packets) and A.8 (interarrival jitter), and
builds the report block we send (§6.4.1). `read_report_block` turns a block the peer
sent about our stream into loss, jitter and round-trip time.

Time is passed in: `now` is seconds on a monotonic clock, `arrival_ntp` a 64-bit NTP
timestamp of the wall clock (RFC 3550 §4), as the round-trip computation needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ipbx.media.jitter import timestamp_diff
from ipbx.media.rtcp import ReportBlock, SenderReport
from ipbx.media.rtp import SEQ_MOD, RtpPacket, is_rtcp, seq_add

# RFC 3550 A.1 constants.
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2

# Seconds from the NTP era 0 (1900-01-01) to the Unix epoch (RFC 5905 §6).
NTP_UNIX_OFFSET = 2_208_988_800


def ntp_timestamp(unix_time: float) -> int:
    """64-bit NTP timestamp (32.32 fixed point) of a Unix time, as SR packets carry."""
    return round((unix_time + NTP_UNIX_OFFSET) * (1 << 32)) & 0xFFFF_FFFF_FFFF_FFFF


def ntp_short(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp: the LSR field format (RFC 3550 §6.4.1)."""
    return (ntp >> 16) & 0xFFFF_FFFF


class ReceptionStatistics:
    """What we know about one source we receive, and the report block we send about it."""

    def __init__(self, ssrc: int, clock_rate: int) -> None:
        self.ssrc = ssrc
        self.clock_rate = clock_rate
        self.max_seq = 0
        self.cycles = 0
        self.base_seq = 0
        self.bad_seq = SEQ_MOD + 1
        self.probation = MIN_SEQUENTIAL
        self.received = 0
        self._expected_prior = 0
        self._received_prior = 0
        self._started = False
        # A.8: jitter in timestamp units, kept as a float (the integer version rounds).
        self.jitter = 0.0
        self._last_arrival: float | None = None
        self._last_timestamp = 0
        # The last SR from this source: its middle NTP bits and when it arrived (§6.4.1).
        self._last_sr = 0
        self._last_sr_arrival: float | None = None

    def receive(self, packet: RtpPacket, now: float) -> bool:
        """Account for one packet; False while the source is on probation or after a jump."""
        if packet.ssrc != self.ssrc:
            raise ValueError(f"packet from SSRC {packet.ssrc:#x}, expected {self.ssrc:#x}")
        return self.count(packet.sequence_number, packet.timestamp, now)

    def count(self, seq: int, timestamp: int, now: float) -> bool:
        """`receive` for a caller that read the header fields itself (the relay path)."""
        if not self._started:
            # A.1: a new source starts on probation, one below its first sequence number.
            self._init_seq(seq)
            self.max_seq = seq_add(seq, -1)
            self._started = True
        if not self._update_seq(seq):
            return False
        self._update_jitter(timestamp, now)
        return True

    @property
    def extended_highest_sequence(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        # A.3: expected = extended_max - base_seq + 1
        return self.extended_highest_sequence - self.base_seq + 1 if self.received else 0

    @property
    def cumulative_lost(self) -> int:
        """Expected minus received: negative when duplicates arrive (A.3)."""
        return self.expected - self.received

    @property
    def jitter_ms(self) -> float:
        return 1000 * self.jitter / self.clock_rate

    def on_sender_report(self, report: SenderReport, now: float) -> None:
        """Remember this source's SR for the LSR and DLSR fields of our next block."""
        self._last_sr = ntp_short(report.ntp_timestamp)
        self._last_sr_arrival = now

    def report_block(self, now: float) -> ReportBlock:
        """The block for our next SR or RR; starts a new fraction-lost interval (A.3)."""
        expected = self.expected
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior = expected
        self._received_prior = self.received
        lost_interval = expected_interval - received_interval
        fraction = 0
        if expected_interval and lost_interval > 0:
            fraction = (lost_interval << 8) // expected_interval
        # A.3: the cumulative count is a signed 24-bit field; clamp rather than wrap.
        lost = max(-0x800000, min(0x7FFFFF, self.cumulative_lost))
        delay = 0
        if self._last_sr_arrival is not None:
            # §6.4.1: DLSR in units of 1/65536 s since the last SR arrived.
            delay = round((now - self._last_sr_arrival) * 65536) & 0xFFFF_FFFF
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=fraction,
            packets_lost=lost,
            highest_sequence=self.extended_highest_sequence & 0xFFFF_FFFF,
            jitter=int(self.jitter),
            last_sr=self._last_sr,
            delay_since_last_sr=delay,
        )

    def _init_seq(self, seq: int) -> None:
        self.base_seq = seq
        self.max_seq = seq
        self.bad_seq = SEQ_MOD + 1  # so that seq == bad_seq is false
        self.cycles = 0
        self.received = 0
        self._received_prior = 0
        self._expected_prior = 0

    def _update_seq(self, seq: int) -> bool:
        # RFC 3550 A.1 update_seq(), line for line.
        udelta = (seq - self.max_seq) % SEQ_MOD
        if self.probation:
            # Packets are accepted only once MIN_SEQUENTIAL of them came in sequence.
            if seq == seq_add(self.max_seq, 1):
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            # In order, with a permissible gap.
            if seq < self.max_seq:
                self.cycles += SEQ_MOD  # sequence number wrapped: count another cycle
            self.max_seq = seq
        elif udelta <= SEQ_MOD - MAX_MISORDER:
            # A very large jump: believe it when the next packet follows (the sender
            # restarted without changing SSRC).
            if seq != self.bad_seq:
                self.bad_seq = seq_add(seq, 1)
                return False
            self._init_seq(seq)
        # Otherwise a duplicate or a reordered packet: counted, no change to max_seq.
        self.received += 1
        return True

    def _update_jitter(self, timestamp: int, now: float) -> None:
        # A.8: D(i-1, i) = (R_i - R_{i-1}) - (S_i - S_{i-1}) in timestamp units;
        # J += (|D| - J) / 16. The difference form keeps the 32-bit wrap out of it.
        if self._last_arrival is not None:
            arrival_delta = (now - self._last_arrival) * self.clock_rate
            transit_delta = arrival_delta - timestamp_diff(timestamp, self._last_timestamp)
            self.jitter += (abs(transit_delta) - self.jitter) / 16
        self._last_arrival = now
        self._last_timestamp = timestamp


@dataclass(frozen=True, slots=True)
class RemoteReception:
    """How the peer receives our stream, read from a report block it sent (§6.4.1)."""

    ssrc: int
    fraction_lost: float
    cumulative_lost: int
    extended_highest_sequence: int
    jitter_ms: float
    round_trip_time: float | None


def round_trip_time(block: ReportBlock, arrival_ntp: int) -> float | None:
    """Seconds from our SR to this block's arrival, less the peer's hold time (§6.4.1).

    RTT = A - LSR - DLSR, all in the middle 32 bits of NTP time; None when the peer has
    not received an SR from us yet (LSR = 0).
    """
    if block.last_sr == 0:
        return None
    rtt = (ntp_short(arrival_ntp) - block.last_sr - block.delay_since_last_sr) & 0xFFFF_FFFF
    return rtt / 65536


def read_report_block(block: ReportBlock, clock_rate: int, arrival_ntp: int) -> RemoteReception:
    return RemoteReception(
        ssrc=block.ssrc,
        fraction_lost=block.fraction_lost / 256,
        cumulative_lost=block.packets_lost,
        extended_highest_sequence=block.highest_sequence,
        jitter_ms=1000 * block.jitter / clock_rate,
        round_trip_time=round_trip_time(block, arrival_ntp),
    )


# E-model, ITU-T G.107, with the simplifications of Cole & Rosenbluth, "Voice over IP
# performance monitoring", ACM SIGCOMM CCR 31(2), 2001.


@dataclass(frozen=True, slots=True)
class EquipmentImpairment:
    """Codec impairment Ie and packet-loss robustness Bpl (ITU-T G.113 Appendix I)."""

    ie: float
    bpl: float


# G.113 Appendix I: G.711 without concealment under random loss, and with the
# ITU-T G.711 Appendix I PLC.
G711 = EquipmentImpairment(ie=0, bpl=4.3)
G711_PLC = EquipmentImpairment(ie=0, bpl=25.1)
# G.113 Appendix I: G.729A (with VAD).
G729 = EquipmentImpairment(ie=11, bpl=19.0)
# Assumptions, not ITU-T values: G.113 gives G.722 and Opus only on the wideband
# scale of G.107.1, which this narrowband formula cannot use. Both are at least as
# good as G.711 with PLC in narrowband terms (Opus carries its own PLC, G.722 is used
# with G.722 Appendix III/IV PLC), so they get G.711-with-PLC values; this under-rates
# wideband calls rather than flattering them.
G722 = G711_PLC
OPUS = G711_PLC

# R0 - Is with every other G.107 parameter at its default (Cole & Rosenbluth 2001).
_R_DEFAULT = 93.2


def delay_impairment(delay_ms: float) -> float:
    """Id for a one-way mouth-to-ear delay (Cole & Rosenbluth 2001)."""
    return 0.024 * delay_ms + 0.11 * max(0.0, delay_ms - 177.3)


def effective_equipment_impairment(
    codec: EquipmentImpairment, loss_percent: float, burst_ratio: float = 1.0
) -> float:
    """Ie,eff = Ie + (95 - Ie) * Ppl / (Ppl / BurstR + Bpl) (ITU-T G.107, 2005 and later)."""
    return codec.ie + (95 - codec.ie) * loss_percent / (loss_percent / burst_ratio + codec.bpl)


def r_factor(
    codec: EquipmentImpairment, loss_percent: float, delay_ms: float, burst_ratio: float = 1.0
) -> float:
    return (
        _R_DEFAULT
        - delay_impairment(delay_ms)
        - effective_equipment_impairment(codec, loss_percent, burst_ratio)
    )


def mos_from_r(r: float) -> float:
    """ITU-T G.107 Annex B: MOS = 1 + 0.035R + 7e-6 R(R - 60)(100 - R), within [1, 4.5].

    R is taken within [0, 100] first; the cubic dips just below 1 for R under ~6.5,
    which the clamp also removes, so MOS never rises as R falls.
    """
    r = min(100.0, max(0.0, r))
    return max(1.0, min(4.5, 1 + 0.035 * r + 7e-6 * r * (r - 60) * (100 - r)))


def mos(
    codec: EquipmentImpairment, loss_percent: float, delay_ms: float, burst_ratio: float = 1.0
) -> float:
    """Estimated listening-quality MOS for a codec, packet loss (%) and one-way delay."""
    return mos_from_r(r_factor(codec, loss_percent, delay_ms, burst_ratio))


_IMPAIRMENTS = {"PCMU": G711_PLC, "PCMA": G711_PLC, "G729": G729, "G722": G722, "OPUS": OPUS}


def leg_mos(codec: str, loss_percent: float, jitter_ms: float, rtt_ms: float | None) -> float:
    """MOS of what one phone sent us. The delay is half the round trip when RTCP gave
    one, plus the jitter buffer a receiver would need (twice the interarrival jitter,
    Cole & Rosenbluth's rule) and one 20 ms packet. Unknown codecs count as G.711."""
    impairment = _IMPAIRMENTS.get(codec.upper(), G711_PLC)
    delay = (rtt_ms or 0.0) / 2 + 2 * jitter_ms + 20
    return mos(impairment, loss_percent, delay)


@dataclass(frozen=True, slots=True)
class MeterReading:
    packets_received: int
    packets_lost: int
    jitter_ms: float

    @property
    def loss_percent(self) -> float:
        expected = self.packets_received + self.packets_lost
        return 100 * self.packets_lost / expected if expected > 0 else 0.0


class StreamMeter:
    """Receive statistics of everything one phone sends, read from raw datagrams.

    The relay path calls it for every packet, so it reads only the header fields it
    needs. A new SSRC (a phone that restarts its stream, RFC 3550 §8.2) starts a new
    ReceptionStatistics; the counts of earlier sources are kept in the totals.
    """

    def __init__(self, clock: Callable[[], float], clock_rate: int = 8000) -> None:
        # Arrival time of the packet being counted; its owner may change it (endpoint.py).
        self.clock = clock
        self.clock_rate = clock_rate
        self._ssrc = b""
        self._stats: ReceptionStatistics | None = None
        self._received = 0
        self._lost = 0
        # While another process meters the stream (a media worker): its latest reading.
        self.elsewhere: MeterReading | None = None

    def __getstate__(self) -> dict[str, object]:
        """What a media worker and the server pass each other: all but the clock."""
        state = dict(vars(self))
        del state["clock"]
        return state

    def take_over(self, other: StreamMeter) -> None:
        """Go on from where `other` (the same stream, metered elsewhere) has got to."""
        self.clock_rate = other.clock_rate
        self._ssrc, self._stats = other._ssrc, other._stats
        self._received, self._lost = other._received, other._lost
        self.elsewhere = None

    def forwarded(self, packets: int, in_gaps: bool = False) -> None:
        """`packets` of the stream went by without being read here (the kernel forwarded
        or dropped them, media/kernel.py): counted as received, with no loss or jitter
        known. The source's statistics start again with its next packet here, so that
        the packets the kernel carried are not counted lost; `in_gaps`: they were taken
        from between packets read here (a listening leg's voice, its events read), whose
        sequence numbers counted them lost."""
        stats = self._stats
        self._retire()
        if in_gaps and stats is not None:
            self._lost -= min(packets, max(0, stats.cumulative_lost))
        self._ssrc, self._stats = b"", None
        self._received += packets
        self.elsewhere = None

    def __call__(self, data: bytes) -> None:
        if len(data) < 12 or is_rtcp(data):
            return
        stats = self._stats
        if data[8:12] != self._ssrc:
            self._retire()
            self._ssrc = data[8:12]
            stats = self._stats = ReceptionStatistics(
                int.from_bytes(self._ssrc, "big"), self.clock_rate
            )
        assert stats is not None
        stats.count((data[2] << 8) | data[3], int.from_bytes(data[4:8], "big"), self.clock())

    @property
    def current(self) -> ReceptionStatistics | None:
        """The statistics of the source sending now (None before its first packet)."""
        return self._stats

    def reading(self) -> MeterReading:
        if self.elsewhere is not None:
            return self.elsewhere
        stats = self._stats
        received, lost = self._received, self._lost
        if stats is not None:
            received += stats.received
            lost += max(0, stats.cumulative_lost)
        return MeterReading(received, lost, stats.jitter_ms if stats is not None else 0.0)

    def _retire(self) -> None:
        if self._stats is not None:
            self._received += self._stats.received
            self._lost += max(0, self._stats.cumulative_lost)


class ReceptionTotals:
    """Packets received and lost over all the stream meters of one media engine, since
    it started: the live meters' readings plus those of the meters closed, for /metrics.

    A meter's own figures can step back (RFC 3550 A.1 restarts the count after a
    sequence jump; a late packet lowers the loss), so each total is the highest ever
    reported: as a Prometheus counter, it never decreases.
    """

    def __init__(self) -> None:
        self._live: set[StreamMeter] = set()
        self._closed_received = 0
        self._closed_lost = 0
        self._reported = (0, 0)

    def open(self, meter: StreamMeter) -> None:
        self._live.add(meter)

    def close(self, meter: StreamMeter) -> None:
        if meter in self._live:
            self._live.remove(meter)
            reading = meter.reading()
            self._closed_received += reading.packets_received
            self._closed_lost += reading.packets_lost

    def totals(self) -> tuple[int, int]:
        """(received, lost): the packets of every stream so far."""
        received, lost = self._closed_received, self._closed_lost
        for meter in self._live:
            reading = meter.reading()
            received += reading.packets_received
            lost += reading.packets_lost
        before_received, before_lost = self._reported
        self._reported = (max(before_received, received), max(before_lost, lost))
        return self._reported
