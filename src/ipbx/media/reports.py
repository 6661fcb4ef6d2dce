"""RTCP on a media endpoint: the round-trip time to the phone, and the reports ipbx
sends where it is the RTP source itself.

Round trip (RFC 3550 §6.4.1): a receiver echoes the middle bits of the last SR it got
(LSR) with the time it held it (DLSR); RTT = arrival - LSR - DLSR. ipbx notes, on its
own clock, when each SR left for the phone, whoever wrote it: its own on a leg it
terminates, the far phone's on a relayed call. The SR's NTP field then serves only as
an identifier, so the far phone's clock never has to agree with ours.

Reports: on a leg ipbx terminates (echo test, prompts, transcoding) the phone's RTP
stream ends here, so ipbx reports on it, and on its own stream, every 5 s (the RFC 3550
§6.2 minimum), randomised by ±50 % so that sessions do not synchronise (§6.3.5).
A relayed leg carries the phones' own reports end to end instead.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import OrderedDict
from collections.abc import Callable

from ipbx.media.quality import StreamMeter, ntp_short, ntp_timestamp
from ipbx.media.rtcp import (
    ReceiverReport,
    RtcpError,
    RtcpPacket,
    SenderReport,
    parse_compound,
    sdes_cname,
)

log = logging.getLogger(__name__)

REPORT_INTERVAL = 5.0
# SRs remembered per phone: a report block names one of the last few (reports every
# 5 s, so this covers a minute of lost reports).
_SENT_SRS = 12


def _parse(data: bytes) -> list[RtcpPacket]:
    try:
        return parse_compound(data)
    except RtcpError as exc:
        log.debug("dropping malformed RTCP: %s", exc)
        return []


class RoundTripMeter:
    """Round-trip times between ipbx and one phone, in milliseconds."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._sent: OrderedDict[int, float] = OrderedDict()
        self._samples = 0
        self._total = 0.0

    def __getstate__(self) -> dict[str, object]:
        """What a media worker and the server pass each other: all but the clock."""
        state = dict(vars(self))
        del state["_clock"]
        return state

    def take_over(self, other: RoundTripMeter) -> None:
        """Go on from the round trips `other` (the same leg, elsewhere) measured."""
        self._sent, self._samples, self._total = other._sent, other._samples, other._total

    def sent(self, data: bytes) -> None:
        """An RTCP datagram on its way to the phone."""
        for packet in _parse(data):
            if isinstance(packet, SenderReport):
                self._sent[ntp_short(packet.ntp_timestamp)] = self._clock()
                while len(self._sent) > _SENT_SRS:
                    self._sent.popitem(last=False)

    def received(self, data: bytes) -> None:
        """An RTCP datagram from the phone: its report blocks close the loops."""
        now = self._clock()
        for packet in _parse(data):
            if not isinstance(packet, SenderReport | ReceiverReport):
                continue
            for block in packet.reports:
                left = self._sent.get(block.last_sr) if block.last_sr else None
                if left is None:
                    continue
                rtt = now - left - block.delay_since_last_sr / 65536
                if rtt >= 0:
                    self._samples += 1
                    self._total += rtt

    @property
    def rtt_ms(self) -> float | None:
        """The mean of the round trips measured so far; None before the first."""
        return 1000 * self._total / self._samples if self._samples else None


class Reporter:
    """Periodic SR/RR for one leg whose RTP ipbx sends itself (see the module doc).

    `sent` tells how many RTP packets and payload octets ipbx has sent on the leg and
    the RTP timestamp of now; `send` puts a datagram on the RTCP socket.
    """

    def __init__(
        self,
        ssrc: int,
        meter: StreamMeter,
        round_trip: RoundTripMeter,
        sent: Callable[[], tuple[int, int, int]],
        send: Callable[[bytes], None],
        cname: str,
    ) -> None:
        self._ssrc = ssrc
        self._meter = meter
        self._round_trip = round_trip
        self._sent = sent
        self._send = send
        self._cname = cname
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = None
        self._schedule()

    def received(self, data: bytes) -> None:
        """RTCP from the phone: its SRs (for our blocks' LSR/DLSR), its blocks (RTT)."""
        self._round_trip.received(data)
        stats = self._meter.current
        if stats is None:
            return
        for packet in _parse(data):
            if isinstance(packet, SenderReport) and packet.ssrc == stats.ssrc:
                stats.on_sender_report(packet, self._loop.time())

    def report(self) -> bytes:
        """The compound packet to send now: SR if we have sent RTP, RR otherwise."""
        stats = self._meter.current
        blocks = [stats.report_block(self._loop.time())] if stats and stats.received else []
        packets, octets, rtp_timestamp = self._sent()
        if packets:
            ntp = ntp_timestamp(time.time())
            report: SenderReport | ReceiverReport = SenderReport(
                self._ssrc, ntp, rtp_timestamp, packets, octets, blocks
            )
        else:
            report = ReceiverReport(self._ssrc, blocks)
        return report.serialize() + sdes_cname(self._ssrc, self._cname)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule(self) -> None:
        delay = REPORT_INTERVAL * random.uniform(0.5, 1.5)
        self._timer = self._loop.call_later(delay, self._fire)

    def _fire(self) -> None:
        data = self.report()
        self._round_trip.sent(data)
        self._send(data)
        self._schedule()


class LegReports:
    """The RTCP of one leg: the phone's reports, read for round-trip times, and from
    `start()` on (ipbx became the leg's RTP source) reports of our own (`Reporter`)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.round_trip = RoundTripMeter(clock)
        self._reporter: Reporter | None = None

    @property
    def sending(self) -> bool:
        """Whether reports of our own go out (from `start()` to `stop()`)."""
        return self._reporter is not None

    def received(self, data: bytes) -> None:
        if self._reporter is not None:
            self._reporter.received(data)
        else:
            self.round_trip.received(data)

    def start(
        self,
        ssrc: int,
        meter: StreamMeter,
        sent: Callable[[], tuple[int, int, int]],
        send: Callable[[bytes], None],
        cname: str,
    ) -> None:
        if self._reporter is None:
            self._reporter = Reporter(ssrc, meter, self.round_trip, sent, send, cname)

    def stop(self) -> None:
        if self._reporter is not None:
            self._reporter.stop()
            self._reporter = None
