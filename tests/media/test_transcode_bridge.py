"""A transcoded bridge over loopback: PCMU phone <-> ipbx <-> Opus phone, each packet
re-encoded as it comes, DTMF regenerated on the far leg."""

import asyncio
import contextlib
import socket
from collections.abc import Awaitable, Callable
from itertools import pairwise
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipbx.media.bridge import connect, transcode
from ipbx.media.codecs import OPUS, PCMA, PCMU, Codec, create_decoder
from ipbx.media.codecs.opus import OpusEncoder
from ipbx.media.dtmf import digit_packets
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.ports import PortPool
from ipbx.media.rtp import RtpPacket, seq_diff
from ipbx.media.wav import read_wav
from tests.support.media import dominant_frequency, loopback_pool, run
from tests.support.sipclient import udp_socket

TONE = (8000 * np.sin(2 * np.pi * 1000 * np.arange(8000) / 8000)).astype(np.int16)


async def _call(pool: PortPool, pcmu_dtmf: int | None) -> tuple[MediaEndpoint, ...]:
    """x (PCMU) -- a [ipbx] b -- y (Opus); y always negotiates telephone-event."""
    x, a, b, y = [await MediaEndpoint.open(pool) for _ in range(4)]
    x.set_remote(*a.local_address, PCMU, pcmu_dtmf)
    a.set_remote(*x.local_address, PCMU, pcmu_dtmf)
    b.set_remote(*y.local_address, OPUS, 101)
    y.set_remote(*b.local_address, OPUS, 101)
    transcode(a, b)
    return x, a, b, y


def test_tone_is_transcoded(pool: PortPool, tmp_path: Path) -> None:
    async def scenario() -> None:
        x, a, b, y = await _call(pool, 101)
        y.record(tmp_path / "opus-side.wav")
        await x.play(TONE)
        await asyncio.sleep(0.3)
        y.stop_recording()
        assert b.stats.packets_sent >= 45
        for endpoint in (x, a, b, y):
            endpoint.close()

    run(scenario)
    heard = read_wav(tmp_path / "opus-side.wav", 8000)
    assert dominant_frequency(heard) == pytest.approx(1000, abs=20)


def test_packets_go_on_as_they_come_keeping_the_senders_timing(pool: PortPool) -> None:
    """A PCMU phone's stream with a loss, a late and a repeated packet, a silence and a
    new SSRC, as the Opus phone receives it: the loss is a skipped sequence number and
    20 ms of timestamps, the late and repeated packets are not sent, the silence moves
    the timestamps alone, and the new stream is a talkspurt where the clock says."""
    phone, far = udp_socket(), udp_socket()
    frame = bytes(range(160))
    # (sequence, timestamp, ssrc) in the order sent: 5 is lost, then comes late after 7,
    # 7 comes twice, 8 follows a 40 ms silence (its timestamp jumps, its number does not).
    stream = [(100 + k, 8000 + 160 * k, 7) for k in (0, 1, 2, 3, 4, 6, 7)]
    stream += [(105, 8800, 7), (107, 9120, 7), (108, 9600, 7), (109, 9760, 7)]
    stream += [(5000 + k, 123456 + 160 * k, 8) for k in range(3)]

    async def scenario() -> None:
        a, b = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        a.set_remote(*phone.getsockname(), PCMU)
        b.set_remote(*far.getsockname(), OPUS)
        transcode(a, b)
        for seq, timestamp, ssrc in stream:
            header = RtpPacket(PCMU.payload_type, seq, timestamp, ssrc, frame).serialize()
            phone.sendto(header, a.local_address)
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        for endpoint in (a, b):
            endpoint.close()

    heard = _heard(scenario, phone, far)
    assert len(heard) == len(stream) - 2
    assert {p.payload_type for p in heard} == {OPUS.payload_type}
    steps = [
        (seq_diff(q.sequence_number, p.sequence_number), (q.timestamp - p.timestamp) % 2**32)
        for p, q in pairwise(heard)
    ]
    assert steps[:8] == [(1, 960)] * 4 + [(2, 1920), (1, 960), (1, 2880), (1, 960)]
    assert [p.marker for p in heard] == [True] + [False] * 8 + [True, False, False]
    # The new stream starts where its first packet's arrival puts it: 20 ms on (plus
    # however late the test's own sleep woke).
    seq_step, timestamp_step = steps[8]
    assert seq_step == 1
    assert 960 <= timestamp_step < 960 + 2400
    assert steps[9:] == [(1, 960), (1, 960)]


def test_keys_and_the_legs_clock_keep_the_transcoded_audios_timing(pool: PortPool) -> None:
    """A PCMU phone whose clock runs ahead of ipbx's (here, a second of audio sent at
    once) presses a key: the event regenerated toward the Opus phone is stamped on its
    audio's timeline, not on ipbx's clock a second behind (an event begins at the time
    its timestamp gives, RFC 4733 §2.2.1), and once the bridge is gone the leg's clock goes on from
    there rather than back."""
    phone, far = udp_socket(), udp_socket()
    clock: list[int] = []

    async def scenario() -> None:
        a, b = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        a.set_remote(*phone.getsockname(), PCMU, 101)
        b.set_remote(*far.getsockname(), OPUS, 101)
        transcode(a, b)
        for k in range(50):
            a._rtp.sink(RtpPacket(PCMU.payload_type, 100 + k, 160 * k, 7, bytes(160)).serialize())
        for k, key in enumerate(digit_packets("5", 160 * 50, 8000)):
            event = RtpPacket(101, 150 + k, key.timestamp, 7, key.payload, key.marker)
            a._rtp.sink(event.serialize())
        await asyncio.sleep(0.4)
        a.detach()
        clock.append(b.timestamp_at(asyncio.get_running_loop().time()))
        for endpoint in (a, b):
            endpoint.close()

    heard = _heard(scenario, phone, far)
    audio = [p for p in heard if p.payload_type == OPUS.payload_type]
    keys = [p for p in heard if p.payload_type == 101]
    assert len(audio) == 50
    assert keys
    last = audio[-1].timestamp
    # The key went in 20 ms after the last audio packet's start, as the phone sent it.
    assert {(p.timestamp - last) % 2**32 for p in keys} <= set(range(0, 2 * 960))
    # 0.4 s on, the leg's own clock reads 0.4 s past the audio, not 0.6 s before it.
    assert 0 < (clock[0] - last) % 2**32 < 48000


@pytest.mark.parametrize(
    ("pcmu_dtmf", "gap_ms"),
    [(101, 120), (None, 120), (101, 20)],
    ids=["rfc4733", "inband", "rfc4733-fast-keys"],
)
def test_dtmf_from_the_opus_leg_reaches_the_pcmu_leg(
    pool: PortPool, pcmu_dtmf: int | None, gap_ms: int
) -> None:
    """As RFC 4733 events where the PCMU phone negotiated telephone-event, as tones in
    its audio where it did not (its own in-band detector hears them). Keys pressed
    faster than ipbx sends them again are sent one after the other, never interleaved
    (a receiver would take each change of event for a new key)."""
    heard: list[str] = []
    seen_by_ipbx: list[str] = []

    async def scenario() -> None:
        x, a, b, y = await _call(pool, pcmu_dtmf)
        x.on_dtmf = heard.append
        b.on_dtmf = seen_by_ipbx.append
        silence = np.zeros(16000, dtype=np.int16)
        await asyncio.gather(y.play(silence), y.send_dtmf("5#1", duration_ms=60, gap_ms=gap_ms))
        await asyncio.sleep(0.4)
        for endpoint in (x, a, b, y):
            endpoint.close()

    run(scenario)
    assert seen_by_ipbx == ["5", "#", "1"]
    assert heard == ["5", "#", "1"]


@pytest.mark.parametrize(
    ("codec", "transcoded"), [(Codec("pcmu", 0, 8000), False), (PCMA, True)], ids=["pcmu", "pcma"]
)
def test_connect_transcodes_only_legs_whose_codecs_differ(
    pool: PortPool, codec: Codec, transcoded: bool
) -> None:
    """Encoding names are case-insensitive (RFC 4855 §3): a phone that writes `pcmu`
    shares PCMU with one that writes `PCMU`, and its packets are relayed as they are."""

    async def scenario() -> None:
        x, a, b, y = [await MediaEndpoint.open(pool) for _ in range(4)]
        x.set_remote(*a.local_address, codec)
        a.set_remote(*x.local_address, codec)
        b.set_remote(*y.local_address, PCMU)
        y.set_remote(*b.local_address, PCMU)
        connect(a, b)
        heard: list[RtpPacket] = []
        y.set_tap(lambda data: heard.append(RtpPacket.parse(data)))
        await x.play(TONE[:1600])
        await asyncio.sleep(0.2)
        # Relayed: x's own stream; transcoded: b's, in y's codec.
        assert len(heard) >= 8
        assert {p.ssrc == x._ssrc for p in heard} == {not transcoded}
        assert {p.payload_type for p in heard} == {PCMU.payload_type}
        for endpoint in (x, a, b, y):
            endpoint.close()

    run(scenario)


def _passed_on(
    pool: PortPool, source: Codec, target: Codec, packets: list[RtpPacket]
) -> list[RtpPacket]:
    """`packets` handed to a transcoded bridge's `source` leg as its phone's, one after
    the other; what the `target` leg's phone then receives, until 0.2 s of silence."""
    phone, far = udp_socket(), udp_socket()

    async def scenario() -> None:
        a, b = await MediaEndpoint.open(pool), await MediaEndpoint.open(pool)
        a.set_remote(*phone.getsockname(), source)
        b.set_remote(*far.getsockname(), target)
        transcode(a, b)
        for packet in packets:
            a._rtp.sink(packet.serialize())
        await asyncio.sleep(0.05)
        for endpoint in (a, b):
            endpoint.close()

    return _heard(scenario, phone, far)


def _heard(
    scenario: Callable[[], Awaitable[None]], phone: socket.socket, far: socket.socket
) -> list[RtpPacket]:
    """Run `scenario`; then what the `far` phone's socket received, until 0.2 s of
    silence. Both phones' sockets are closed."""
    heard = []
    try:
        run(scenario)
        far.settimeout(0.2)
        with contextlib.suppress(TimeoutError):
            while True:
                heard.append(RtpPacket.parse(far.recv(2048)))
    finally:
        phone.close()
        far.close()
    return heard


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=40),
    st.integers(min_value=0, max_value=0xFFFF),
    st.integers(min_value=0, max_value=0xFFFFFFFF),
)
def test_whatever_the_arrival_order_each_newer_packet_goes_on_once_in_its_place(
    order: list[int], first_seq: int, first_timestamp: int
) -> None:
    """Packets k of one PCMU stream arrive in any order, lost or repeated: each one newer
    than all before it is sent on once, its place kept (sequence k apart, timestamps
    k x 20 ms apart, across both wraps); the others are dropped."""
    stream = [
        RtpPacket(
            PCMU.payload_type,
            (first_seq + k) % 2**16,
            (first_timestamp + 160 * k) % 2**32,
            7,
            bytes(160),
        )
        for k in order
    ]
    # Each example runs its own event loop: a pool's warm sockets belong to one.
    heard = _passed_on(loopback_pool(), PCMU, OPUS, stream)
    newer = [k for index, k in enumerate(order) if all(k > j for j in order[:index])]
    for (j, p), (k, q) in pairwise(zip(newer, heard, strict=True)):
        assert seq_diff(q.sequence_number, p.sequence_number) == k - j
        assert (q.timestamp - p.timestamp) % 2**32 == 960 * (k - j)


def test_one_opus_packet_lost_is_rebuilt_from_the_next_and_sent_in_its_place(
    pool: PortPool,
) -> None:
    """An Opus phone sending in-band FEC (what useinbandfec=1 asks for) loses packet 10
    on the way: the PCMU phone gets it all the same, rebuilt from packet 11, in its
    place: no sequence number and no 20 ms of timestamps missing, the tone unbroken."""
    encoder = OpusEncoder(fec=True, rate=8000)
    payloads = [encoder.encode(frame) for frame in TONE[:3200].reshape(-1, 160)]
    stream = [
        RtpPacket(OPUS.payload_type, 100 + k, 960 * k, 7, payload)
        for k, payload in enumerate(payloads)
        if k != 10
    ]
    heard = _passed_on(pool, OPUS, PCMU, stream)
    assert [seq_diff(q.sequence_number, p.sequence_number) for p, q in pairwise(heard)] == [1] * 19
    assert {(q.timestamp - p.timestamp) % 2**32 for p, q in pairwise(heard)} == {160}
    rebuilt = create_decoder(PCMU).decode(heard[10].payload)
    assert dominant_frequency(rebuilt) == pytest.approx(1000, abs=50)
