"""The adaptive jitter buffer: ring order across the 16-bit wrap, loss markers, adaptation."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipbx.media.jitter import Frame, JitterBuffer, JitterConfig, Lost, timestamp_diff
from ipbx.media.rtp import RtpPacket, seq_add

RATE = 8000
STEP = 160  # 20 ms of G.711
PTIME = 0.020


def packet(seq: int, ssrc: int = 1, ts: int | None = None) -> RtpPacket:
    if ts is None:
        ts = (seq * STEP) % (1 << 32)
    return RtpPacket(0, seq % 65536, ts, ssrc, payload=seq.to_bytes(4, "big"))


def drain(buffer: JitterBuffer, now: float) -> list[Frame | Lost]:
    items: list[Frame | Lost] = []
    while (item := buffer.pop(now)) is not None:
        items.append(item)
    return items


def played(items: list[Frame | Lost]) -> list[int]:
    return [item.packet.sequence_number for item in items if isinstance(item, Frame)]


def simulate(
    arrivals: list[tuple[float, RtpPacket]], end: float, buffer: JitterBuffer
) -> list[Frame | Lost]:
    """Push each packet at its arrival time and pop at a 20 ms cadence, half a frame off."""
    arrivals = sorted(arrivals, key=lambda arrival: arrival[0])
    items: list[Frame | Lost] = []
    tick = PTIME / 2
    index = 0
    while tick < end:
        while index < len(arrivals) and arrivals[index][0] <= tick:
            buffer.push(arrivals[index][1], arrivals[index][0])
            index += 1
        items.extend(drain(buffer, tick))
        tick += PTIME
    return items


def test_timestamp_diff_wraps_at_2_32() -> None:
    assert timestamp_diff(80, (1 << 32) - 80) == 160
    assert timestamp_diff((1 << 32) - 80, 80) == -160


def test_sequence_wraps_from_65535_to_0() -> None:
    buffer = JitterBuffer(RATE)
    seqs = [seq_add(65530, i) for i in range(12)]
    arrivals = [(i * PTIME, packet(seq, ts=i * STEP)) for i, seq in enumerate(seqs)]
    items = simulate(arrivals, 1.0, buffer)
    assert played(items) == seqs
    assert buffer.stats.lost == 0


def test_reordering_within_the_window_is_restored() -> None:
    buffer = JitterBuffer(RATE)
    order = [0, 1, 3, 2, 4, 6, 5, 7, 8, 9]
    # Each swapped packet is 10 ms late, inside the 20 ms minimum delay.
    arrivals = [(i * PTIME + (0.01 if seq < i else 0), packet(seq)) for i, seq in enumerate(order)]
    items = simulate(arrivals, 1.0, buffer)
    assert played(items) == list(range(10))
    assert buffer.stats.late == 0


def test_duplicates_are_ignored_and_counted() -> None:
    buffer = JitterBuffer(RATE)
    arrivals = [(i * PTIME, packet(i)) for i in range(5)]
    arrivals += [(i * PTIME + 0.001, packet(i)) for i in range(5)]
    items = simulate(arrivals, 1.0, buffer)
    assert played(items) == list(range(5))
    assert buffer.stats.duplicates == 5


def test_late_packet_is_dropped_and_counted() -> None:
    buffer = JitterBuffer(RATE)
    arrivals = [(i * PTIME, packet(i)) for i in range(10) if i != 4]
    arrivals.append((0.5, packet(4)))  # 420 ms after its turn
    items = simulate(arrivals, 1.0, buffer)
    assert played(items) == [0, 1, 2, 3, 5, 6, 7, 8, 9]
    assert buffer.stats.late == 1
    assert buffer.stats.lost == 1
    lost = [item for item in items if isinstance(item, Lost)]
    assert lost[0] == Lost(4, 4 * STEP, conceal=True)


def test_five_percent_random_loss_gives_five_percent_lost_markers() -> None:
    rng = random.Random(5)
    buffer = JitterBuffer(RATE)
    count = 5000
    kept = [seq for seq in range(count) if rng.random() >= 0.05]
    arrivals = [(seq * PTIME, packet(seq)) for seq in kept]
    items = simulate(arrivals, count * PTIME + 0.1, buffer)
    missing = count - len(kept)
    markers = sum(isinstance(item, Lost) for item in items)
    assert played(items) == kept
    assert buffer.stats.lost == missing
    assert buffer.stats.dropped == 0
    assert missing == pytest.approx(0.05 * count, rel=0.15)
    assert markers == pytest.approx(missing, rel=0.05)


def test_concealment_stops_at_the_plc_limit() -> None:
    buffer = JitterBuffer(RATE)  # 60 ms limit: three 20 ms frames
    arrivals = [(i * PTIME, packet(i)) for i in (0, 1, 2, 9, 10)]
    items = simulate(arrivals, 1.0, buffer)
    gap = items[3 : items.index(Frame(packet(9)))]
    assert [marker.conceal for marker in gap if isinstance(marker, Lost)] == [
        True,
        True,
        True,
        False,
        False,
        False,
    ]
    assert played(items) == [0, 1, 2, 9, 10]


def test_silence_suppression_resumes_on_the_new_timestamp() -> None:
    buffer = JitterBuffer(RATE)
    # A talkspurt, 400 ms of silence (no packets, timestamps jump), then the next one.
    arrivals = [(i * PTIME, packet(i, ts=i * STEP)) for i in range(5)]
    arrivals += [(0.5 + i * PTIME, packet(5 + i, ts=4000 + i * STEP)) for i in range(5)]
    items = simulate(arrivals, 1.5, buffer)
    assert played(items) == list(range(10))
    assert buffer.stats.lost == 0
    stats = buffer.stats
    assert stats.delay_ms == pytest.approx(20, abs=1)


def test_ssrc_change_resets_the_stream() -> None:
    buffer = JitterBuffer(RATE)
    arrivals = [(i * PTIME, packet(i)) for i in range(5)]
    arrivals += [(0.2 + i * PTIME, packet(30000 + i, ssrc=2, ts=999 + i * STEP)) for i in range(5)]
    items = simulate(arrivals, 1.0, buffer)
    assert played(items) == [0, 1, 2, 3, 4, 30000, 30001, 30002, 30003, 30004]
    assert buffer.stats.resets == 1
    assert buffer.stats.lost == 0


def test_sequence_jump_resets_once_confirmed() -> None:
    buffer = JitterBuffer(RATE)
    arrivals = [(i * PTIME, packet(i)) for i in range(5)]
    arrivals.append((0.1, packet(40000)))  # a stray packet alone does not restart
    arrivals += [(0.12 + i * PTIME, packet(5 + i)) for i in range(3)]
    arrivals += [(0.2 + i * PTIME, packet(20000 + i)) for i in range(4)]
    items = simulate(arrivals, 1.0, buffer)
    assert played(items) == [0, 1, 2, 3, 4, 5, 6, 7, 20000, 20001, 20002, 20003]
    assert buffer.stats.resets == 1


def test_delay_adapts_to_40_ms_uniform_jitter() -> None:
    rng = random.Random(40)
    buffer = JitterBuffer(RATE)
    count = 3000
    arrivals = [(seq * PTIME + rng.uniform(0, 0.040), packet(seq)) for seq in range(count)]
    items = simulate(arrivals, count * PTIME + 0.5, buffer)
    stats = buffer.stats
    # The 98th percentile of a 0..40 ms spread, a little more as the delay moves in frames.
    assert 36 <= stats.target_ms <= 42
    assert 36 <= stats.delay_ms <= 70
    assert stats.late + stats.lost < 0.02 * count
    assert played(items) == sorted(played(items))


def test_delay_stays_between_its_bounds() -> None:
    buffer = JitterBuffer(RATE)
    arrivals = [(seq * PTIME + (0.5 if seq % 10 == 0 else 0), packet(seq)) for seq in range(500)]
    simulate(arrivals, 12.0, buffer)
    assert buffer.stats.target_ms == 200


def test_capacity_must_be_a_power_of_two() -> None:
    with pytest.raises(ValueError):
        JitterConfig(capacity=100)


@given(
    first=st.integers(0, 65535),
    order=st.integers(1, 60).flatmap(lambda n: st.permutations(list(range(n)))),
)
def test_any_permutation_of_a_window_plays_in_order_once(first: int, order: list[int]) -> None:
    buffer = JitterBuffer(RATE)
    for index in order:
        buffer.push(packet(seq_add(first, index), ts=index * STEP), now=1.0)
    # Long after the last playout time: every held frame is due, then the buffer runs dry.
    items = [buffer.pop(now=100.0) for _ in order]
    assert all(isinstance(item, Frame) for item in items)
    assert [item.packet.sequence_number for item in items if isinstance(item, Frame)] == [
        seq_add(first, index) for index in range(len(order))
    ]
    assert isinstance(buffer.pop(now=100.0), Lost)
