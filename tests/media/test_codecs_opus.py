"""Opus specifics: in-band FEC on request (RFC 7587 §6.1) and loss concealment."""

import numpy as np

from ipbx.media.codecs import OPUS, create_decoder, create_encoder
from ipbx.media.codecs.opus import FRAME_SAMPLES, OpusEncoder
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
