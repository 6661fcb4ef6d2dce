"""RFC 3550 Appendix A receive statistics, §6.4.1 round-trip time, and the G.107 MOS."""

from __future__ import annotations

import itertools
import random
import statistics

import pytest

from ipbx.media.quality import (
    G711,
    G711_PLC,
    G729,
    ReceptionStatistics,
    StreamMeter,
    leg_mos,
    mos,
    mos_from_r,
    ntp_short,
    ntp_timestamp,
    r_factor,
    read_report_block,
    round_trip_time,
)
from ipbx.media.rtcp import ReceiverReport, ReportBlock, SenderReport, parse_compound
from ipbx.media.rtp import RtpPacket, seq_add

RATE = 8000
STEP = 160
PTIME = 0.020
SSRC = 0x1234


def packet(seq: int, ts: int) -> RtpPacket:
    return RtpPacket(0, seq % 65536, ts % (1 << 32), SSRC)


def feed(stats: ReceptionStatistics, first: int, count: int, skip: set[int] | None = None) -> None:
    for i in range(count):
        if skip and i in skip:
            continue
        stats.receive(packet(first + i, i * STEP), i * PTIME)


def test_a1_probation_then_counting() -> None:
    stats = ReceptionStatistics(SSRC, RATE)
    assert not stats.receive(packet(100, 0), 0.0)  # first of MIN_SEQUENTIAL
    assert stats.receive(packet(101, STEP), PTIME)
    assert (stats.received, stats.expected, stats.cumulative_lost) == (1, 1, 0)


def test_extended_highest_sequence_across_the_wrap() -> None:
    stats = ReceptionStatistics(SSRC, RATE)
    feed(stats, 65530, 20)
    assert stats.max_seq == seq_add(65530, 19)
    assert stats.extended_highest_sequence == 65536 + 13
    assert stats.cumulative_lost == 0
    block = stats.report_block(1.0)
    assert block.highest_sequence == 65549


def test_large_jump_restarts_only_when_confirmed() -> None:
    stats = ReceptionStatistics(SSRC, RATE)
    feed(stats, 10, 5)
    assert not stats.receive(packet(40000, 0), 1.0)
    assert stats.receive(packet(15, 5 * STEP), 1.0)
    assert not stats.receive(packet(50000, 0), 2.0)
    assert stats.receive(packet(50001, STEP), 2.02)
    assert (stats.base_seq, stats.extended_highest_sequence, stats.received) == (50001, 50001, 1)


def test_duplicates_make_cumulative_loss_negative() -> None:
    stats = ReceptionStatistics(SSRC, RATE)
    feed(stats, 0, 10)
    feed(stats, 5, 3)
    assert stats.cumulative_lost == -3
    assert stats.report_block(1.0).packets_lost == -3


def test_five_percent_loss_gives_fraction_lost_13_of_256() -> None:
    rng = random.Random(3550)
    stats = ReceptionStatistics(SSRC, RATE)
    count = 20000
    lost = {i for i in range(2, count) if rng.random() < 0.05}
    feed(stats, 1000, count, lost)
    block = stats.report_block(count * PTIME)
    assert block.fraction_lost == pytest.approx(0.05 * 256, abs=1.5)
    assert block.packets_lost == len(lost)
    # A.3: the next interval starts from here; nothing new, nothing lost.
    assert stats.report_block(count * PTIME + 5).fraction_lost == 0
    # Interval only: 10 expected, 5 received → 128/256.
    feed(stats, 1000 + count, 10, {0, 2, 4, 6, 8})
    assert stats.report_block(count * PTIME + 10).fraction_lost == 128


def test_jitter_converges_for_40_ms_uniform_arrival_jitter() -> None:
    # Arrival = send time + U(0, 40 ms): E|D| for two such independent delays is 40/3 ms,
    # the value the A.8 estimator (gain 1/16) settles around.
    rng = random.Random(8)
    stats = ReceptionStatistics(SSRC, RATE)
    samples = []
    for i in range(20000):
        stats.receive(packet(i, i * STEP), i * PTIME + rng.uniform(0, 0.040))
        if i > 1000:
            samples.append(stats.jitter_ms)
    assert statistics.fmean(samples) == pytest.approx(40 / 3, rel=0.05)
    assert stats.report_block(0).jitter == pytest.approx(40 / 3 * 8, abs=40)


def test_jitter_is_zero_for_a_steady_stream_across_the_timestamp_wrap() -> None:
    stats = ReceptionStatistics(SSRC, RATE)
    for i in range(100):
        stats.receive(packet(i, (1 << 32) - 50 * STEP + i * STEP), i * PTIME)
    assert stats.jitter == pytest.approx(0, abs=1e-6)


def test_packet_from_another_ssrc_is_refused() -> None:
    with pytest.raises(ValueError):
        ReceptionStatistics(SSRC, RATE).receive(RtpPacket(0, 1, 0, SSRC + 1), 0.0)


def test_round_trip_time_from_an_sr_rr_pair() -> None:
    # We send an SR at wall time T; the peer holds it 250 ms and answers with an RR that
    # arrives at T + 330 ms: the network round trip is 80 ms.
    sent = 1_700_000_000.25
    sr = SenderReport(0xAAAA, ntp_timestamp(sent), 0, 10, 1600)
    peer = ReceptionStatistics(0xAAAA, RATE)
    (received_sr,) = parse_compound(sr.serialize())
    assert isinstance(received_sr, SenderReport)
    peer.on_sender_report(received_sr, now=50.0)
    rr = ReceiverReport(0xBBBB, [peer.report_block(now=50.25)])
    (received_rr,) = parse_compound(rr.serialize())
    assert isinstance(received_rr, ReceiverReport)
    block = received_rr.reports[0]
    assert block.last_sr == ntp_short(sr.ntp_timestamp)
    assert block.delay_since_last_sr == 0.25 * 65536
    rtt = round_trip_time(block, ntp_timestamp(sent + 0.330))
    assert rtt == pytest.approx(0.080, abs=1 / 65536)
    reading = read_report_block(block, RATE, ntp_timestamp(sent + 0.330))
    assert reading.round_trip_time == rtt


def test_hand_built_block_reads_back() -> None:
    # The RFC 3550 §6.4.1 example: A = 0xb710:8000, LSR = 0xb705:2000,
    # DLSR = 0x0005:4000 (5.250 s) give a round trip of 0x0006:2000 (6.125 s).
    block = ReportBlock(SSRC, 64, 7, 70000, 80, last_sr=0xB705_2000, delay_since_last_sr=0x5_4000)
    arrival = 0xB710_8000 << 16
    reading = read_report_block(block, RATE, arrival)
    assert reading.fraction_lost == 0.25
    assert reading.cumulative_lost == 7
    assert reading.extended_highest_sequence == 70000
    assert reading.jitter_ms == 10
    assert reading.round_trip_time == 6.125


def test_no_round_trip_before_any_sr() -> None:
    assert round_trip_time(ReportBlock(SSRC, 0, 0, 0, 0, 0, 0), ntp_timestamp(0)) is None


def test_clean_g711_scores_about_4_4() -> None:
    assert r_factor(G711, 0, 0) == pytest.approx(93.2)
    assert mos(G711, 0, 0) == pytest.approx(4.41, abs=0.01)
    assert mos(G711_PLC, 0, 20) == pytest.approx(4.4, abs=0.02)


def test_mos_falls_monotonically_with_loss_and_delay() -> None:
    for codec in (G711, G711_PLC, G729):
        by_loss = [mos(codec, loss, 50) for loss in range(0, 30)]
        assert all(a > b for a, b in itertools.pairwise(by_loss))
        by_delay = [mos(codec, 1, delay) for delay in range(0, 500, 10)]
        assert all(a > b for a, b in itertools.pairwise(by_delay))


def test_plc_and_random_loss_rank_as_g113_says() -> None:
    assert mos(G711_PLC, 5, 50) > mos(G711, 5, 50)
    assert mos(G729, 0, 50) < mos(G711, 0, 50)
    assert mos(G711_PLC, 5, 50, burst_ratio=2) < mos(G711_PLC, 5, 50)


def test_r_to_mos_is_clamped() -> None:
    assert mos_from_r(-20) == 1.0
    assert mos_from_r(3) == 1.0
    assert mos_from_r(120) == 4.5
    values = [mos_from_r(r / 2) for r in range(0, 241)]
    assert values == sorted(values)


def test_stream_meter_counts_loss_and_jitter_across_a_new_ssrc() -> None:
    now = [0.0]
    meter = StreamMeter(lambda: now[0])
    for ssrc in (1, 2):
        for seq in range(200):
            now[0] += 0.020
            if seq % 20 != 5:
                meter(RtpPacket(0, seq, seq * 160, ssrc, b"\xff" * 160).serialize())
    meter(b"\x80\xc8" + bytes(30))  # RTCP on a muxed port is not counted
    reading = meter.reading()
    assert reading.packets_lost == 20
    assert reading.loss_percent == pytest.approx(5.0, abs=0.3)
    assert reading.jitter_ms < 1
    assert leg_mos("PCMU", reading.loss_percent, reading.jitter_ms, None) < leg_mos(
        "PCMU", 0.0, reading.jitter_ms, None
    )
