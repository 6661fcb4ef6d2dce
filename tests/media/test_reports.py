"""RTCP of a media endpoint: round trips measured on our own clock, reports we send."""

import asyncio

import numpy as np
import pytest

from ipbx.media import reports
from ipbx.media.bridge import relay
from ipbx.media.codecs import PCMU
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.ports import PortPool
from ipbx.media.quality import StreamMeter, ntp_short
from ipbx.media.reports import Reporter, RoundTripMeter
from ipbx.media.rtcp import RTCP_SDES, ReceiverReport, ReportBlock, SenderReport, parse_compound
from ipbx.media.rtp import RtpPacket
from tests.support.media import run


def _block(ssrc: int, lsr: int, dlsr_seconds: float) -> ReportBlock:
    return ReportBlock(ssrc, 0, 0, 100, 8, lsr, round(dlsr_seconds * 65536))


def test_round_trip_is_arrival_minus_departure_minus_the_phones_hold_time() -> None:
    """The SR may come from the far phone with any clock: only its identity counts."""
    now = [100.0]
    meter = RoundTripMeter(lambda: now[0])
    far_clock_ntp = 0xDEADBEEF_12345678
    meter.sent(SenderReport(7, far_clock_ntp, 0, 10, 1600).serialize())
    assert meter.rtt_ms is None
    now[0] = 100.5
    # The phone held the SR 0.44 s before reporting: the network took 60 ms both ways.
    rr = ReceiverReport(9, [_block(7, ntp_short(far_clock_ntp), 0.44)])
    meter.received(rr.serialize())
    assert meter.rtt_ms is not None and abs(meter.rtt_ms - 60) < 0.1
    meter.received(ReceiverReport(9, [_block(7, 0x1234, 0.1)]).serialize())  # unknown SR
    meter.received(b"\x80\xc9garbage")
    assert meter.rtt_ms is not None and abs(meter.rtt_ms - 60) < 0.1


def test_reporter_sends_an_sr_with_a_block_about_the_phones_stream_and_a_cname() -> None:
    async def scenario() -> None:
        loop = asyncio.get_running_loop()
        meter = StreamMeter(loop.time)
        for seq in range(50):
            if seq != 20:
                meter(RtpPacket(0, seq, seq * 160, 0xABC, b"\xff" * 160).serialize())
        round_trip = RoundTripMeter(loop.time)
        sent: list[bytes] = []
        reporter = Reporter(0x55, meter, round_trip, lambda: (40, 6400, 1234), sent.append, "x@y")
        packets = parse_compound(reporter.report())
        reporter.stop()
        assert sent == []  # the first report waits 2.5-7.5 s (RFC 3550 §6.2)
        sr = packets[0]
        assert isinstance(sr, SenderReport)
        assert (sr.ssrc, sr.rtp_timestamp, sr.packet_count, sr.octet_count) == (
            0x55,
            1234,
            40,
            6400,
        )
        [block] = sr.reports
        assert (block.ssrc, block.packets_lost) == (0xABC, 1)
        silent = Reporter(
            0x56, StreamMeter(loop.time), round_trip, lambda: (0, 0, 0), sent.append, "x"
        )
        silent.stop()
        report = silent.report()
        assert isinstance(parse_compound(report)[0], ReceiverReport)
        assert report[len(ReceiverReport(0x56).serialize()) + 1] == RTCP_SDES

    run(scenario)


def test_a_relayed_call_measures_each_legs_round_trip(
    pool: PortPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two phones' own SRs and RRs pass through the relay; ipbx times each leg's loop."""
    monkeypatch.setattr(reports, "REPORT_INTERVAL", 0.15)

    async def scenario() -> None:
        x, a, b, y = [await MediaEndpoint.open(pool) for _ in range(4)]
        x.set_remote(*a.local_address, PCMU)
        a.set_remote(*x.local_address, PCMU)
        b.set_remote(*y.local_address, PCMU)
        y.set_remote(*b.local_address, PCMU)
        relay(a, b)
        tone = np.zeros(8000, dtype=np.int16)
        await asyncio.gather(x.play(tone), y.play(tone))
        # Reports go at random intervals; on a loaded machine the second pair may come
        # after the tone: wait for it, within a bound.
        for _ in range(100):
            if all(leg.round_trip.rtt_ms is not None for leg in (a, b)):
                break
            await asyncio.sleep(0.05)
        for leg in (a, b):
            assert leg.round_trip.rtt_ms is not None
            assert 0 <= leg.round_trip.rtt_ms < 50  # loopback
        for endpoint in (x, a, b, y):
            endpoint.close()

    run(scenario)
