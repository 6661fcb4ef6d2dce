"""Transcoding between legs with no codec in common: the tone survives, and n ms in
gives n ms out."""

import numpy as np
import pytest

from ipbx.media.codecs import G722, G729, OPUS, PCMA, PCMU, create_decoder, create_encoder
from ipbx.media.codecs.base import Codec
from ipbx.media.transcode import Transcoder
from tests.support.tones import assert_tone, tone

SECOND = 1000


def packets(codec: Codec, ms: int, ptime_ms: int = 20) -> list[bytes]:
    encoder = create_encoder(codec)
    samples = encoder.pcm_rate * ptime_ms // 1000
    pcm = tone(encoder.pcm_rate, ms)
    return [encoder.encode(pcm[i : i + samples]) for i in range(0, len(pcm), samples)]


def run(transcoder: Transcoder, payloads: list[bytes]) -> list[bytes]:
    return [out for payload in payloads for out in transcoder.transcode(payload)]


def decode(codec: Codec, payloads: list[bytes]) -> np.ndarray:
    decoder = create_decoder(codec)
    return np.concatenate([decoder.decode(p) for p in payloads])


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (PCMU, OPUS),
        (OPUS, PCMU),
        (OPUS, G722),
        (G722, PCMA),
        (G729, OPUS),
    ],
)
def test_tone_survives_one_packet_out_per_packet_in(src: Codec, dst: Codec) -> None:
    out = run(Transcoder(src, dst), packets(src, SECOND))
    assert len(out) == SECOND // 20
    decoded = decode(dst, out)
    assert_tone(decoded, create_decoder(dst).pcm_rate)


def test_pcmu_to_opus_and_back() -> None:
    there = run(Transcoder(PCMU, OPUS), packets(PCMU, SECOND))
    back = run(Transcoder(OPUS, PCMU), there)
    assert len(back) == SECOND // 20
    assert all(len(p) == 160 for p in back)
    assert_tone(decode(PCMU, back), 8000)


def test_reframes_30_ms_packets_into_20_ms() -> None:
    transcoder = Transcoder(PCMA, G722)
    counts = [len(transcoder.transcode(p)) for p in packets(PCMA, 600, ptime_ms=30)]
    # 30 ms in: 20 ms out with 10 left over, then 40 ms: two out.
    assert counts[:4] == [1, 2, 1, 2]
    assert sum(counts) == 600 // 20


def test_timestamp_step_is_in_rtp_clock_units() -> None:
    # G.722 encodes 320 samples per 20 ms on an 8000 Hz RTP clock (RFC 3551 §4.5.2).
    assert Transcoder(OPUS, G722).packetizer.timestamp_step == 160
    assert Transcoder(PCMU, OPUS).packetizer.timestamp_step == 960


def test_a_lost_opus_packet_still_yields_a_packet() -> None:
    transcoder = Transcoder(OPUS, PCMU)
    run(transcoder, packets(OPUS, 200))
    assert [len(p) for p in transcoder.transcode(b"")] == [160]
