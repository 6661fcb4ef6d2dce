"""Opus specifics: in-band FEC on request (RFC 7587 §6.1) and loss concealment."""

import numpy as np

from ipbx.media.codecs import OPUS, create_decoder, create_encoder
from ipbx.media.codecs.opus import FRAME_SAMPLES, OpusDecoder, OpusEncoder
from tests.support.tones import TONE_HZ, dominant_frequency, rms, tone


def test_useinbandfec_turns_fec_on() -> None:
    with_fec = create_encoder(OPUS, {"useinbandfec": "1"})
    assert isinstance(with_fec, OpusEncoder) and with_fec.fec
    for fmtp in (None, {"useinbandfec": "0"}):
        encoder = create_encoder(OPUS, fmtp)
        assert isinstance(encoder, OpusEncoder) and not encoder.fec


def test_fec_stream_decodes() -> None:
    encoder, decoder = create_encoder(OPUS, {"useinbandfec": "1"}), create_decoder(OPUS)
    pcm = tone(48000, 400)
    frames = pcm.reshape(-1, FRAME_SAMPLES)
    decoded = np.concatenate([decoder.decode(encoder.encode(f)) for f in frames])
    assert abs(dominant_frequency(decoded[len(decoded) // 2 :], 48000) - TONE_HZ) <= 20


def test_a_lost_packet_is_concealed_with_one_frame_of_the_tone() -> None:
    encoder, decoder = create_encoder(OPUS), create_decoder(OPUS)
    for frame in tone(48000, 400).reshape(-1, FRAME_SAMPLES):
        decoder.decode(encoder.encode(frame))
    concealed = decoder.decode(b"")
    assert len(concealed) == FRAME_SAMPLES
    # libopus extrapolates the tone rather than going silent.
    assert rms(concealed) > 1000
    assert abs(dominant_frequency(concealed, 48000) - TONE_HZ) <= 50


def test_loss_before_any_packet_gives_a_frame_of_silence() -> None:
    concealed = create_decoder(OPUS).decode(b"")
    assert len(concealed) == FRAME_SAMPLES
    assert not concealed.any()


def _bandwidth(packet: bytes) -> str:
    """The audio bandwidth a packet's TOC byte says (RFC 6716 §3.1, Table 2)."""
    config = packet[0] >> 3
    if config < 12:
        return ("NB", "MB", "WB")[config // 4]
    if config < 16:
        return ("SWB", "FB")[(config - 12) // 2]
    return ("NB", "WB", "SWB", "FB")[(config - 16) // 4]


def test_maxplaybackrate_keeps_the_encoder_within_what_the_receiver_plays() -> None:
    """RFC 7587 §6.1: nothing wider than the receiver's maxplaybackrate is encoded, from
    48 kHz audio with content up to 10 kHz; a value out of 8000-48000 is no limit."""
    t = np.arange(48000) / 48000
    wide = (8000 * (np.sin(2 * np.pi * 300 * t) + np.sin(2 * np.pi * 10_000 * t)) / 2).astype(
        np.int16
    )
    for fmtp, expected in (
        ({"maxplaybackrate": "8000"}, {"NB"}),
        ({"maxplaybackrate": "16000"}, {"NB", "MB", "WB"}),
        ({}, {"SWB", "FB"}),
        ({"maxplaybackrate": "96000"}, {"SWB", "FB"}),
        ({"maxplaybackrate": "fast"}, {"SWB", "FB"}),
    ):
        encoder = create_encoder(OPUS, fmtp)
        packets = [encoder.encode(frame) for frame in wide.reshape(-1, FRAME_SAMPLES)]
        assert {_bandwidth(p) for p in packets[10:]} <= expected, fmtp


def test_a_lost_frame_is_rebuilt_from_the_next_packets_fec() -> None:
    """Each 20 ms frame a tone of its own, so concealment (which carries the last frame
    on) misses what the lost frame held, and the next packet's LBRR copy does not."""
    rate, samples = 8000, 160
    t = np.arange(samples) / rate
    frames = [
        (8000 * np.sin(2 * np.pi * (300 + 150 * (k % 7)) * t)).astype(np.int16) for k in range(30)
    ]
    lost = 20

    def error(fec: bool, recover: bool) -> float:
        encoder = OpusEncoder(fec=fec, rate=rate)
        packets = [encoder.encode(frame) for frame in frames]
        reference, decoder = OpusDecoder(rate), OpusDecoder(rate)
        for packet in packets[:lost]:
            reference.decode(packet)
            decoder.decode(packet)
        wanted = reference.decode(packets[lost]).astype(float)
        got = decoder.recover(packets[lost + 1], samples) if recover else decoder.decode(b"")
        assert len(got) == samples
        return float(np.sqrt(np.mean((got.astype(float) - wanted) ** 2)))

    concealed = error(fec=True, recover=False)
    assert error(fec=True, recover=True) < concealed / 3
    # Without FEC in the stream, recovering is concealing.
    assert error(fec=False, recover=True) > concealed / 3
