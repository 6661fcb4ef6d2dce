"""A transcoded bridge over loopback: PCMU phone <-> ipbx <-> Opus phone, with audio
played out through the jitter buffer and DTMF regenerated on the far leg."""

import asyncio
from pathlib import Path

import numpy as np
import pytest

from ipbx.media.bridge import connect, transcode
from ipbx.media.clock import media_clock
from ipbx.media.codecs import OPUS, PCMA, PCMU, Codec
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.ports import PortPool
from ipbx.media.rtp import RtpPacket
from ipbx.media.wav import read_wav
from tests.support.media import dominant_frequency, run

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


def test_tone_is_transcoded_and_stops_ticking_when_the_call_ends(
    pool: PortPool, tmp_path: Path
) -> None:
    async def scenario() -> None:
        x, a, b, y = await _call(pool, 101)
        y.record(tmp_path / "opus-side.wav")
        await x.play(TONE)
        await asyncio.sleep(0.3)
        y.stop_recording()
        assert b.stats.packets_sent >= 45
        assert len(media_clock()) == 2  # one playout per direction
        for endpoint in (x, a, b, y):
            endpoint.close()
        assert len(media_clock()) == 0

    run(scenario)
    heard = read_wav(tmp_path / "opus-side.wav", 8000)
    assert dominant_frequency(heard) == pytest.approx(1000, abs=20)


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
