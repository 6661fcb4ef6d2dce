"""G.711 against the ITU/Sun reference values and its quantisation error bounds."""

import numpy as np
import pytest

from ipbx.media.codecs import (
    PCMA,
    PCMU,
    TELEPHONE_EVENT,
    CodecError,
    create_decoder,
    create_encoder,
)
from ipbx.media.codecs.base import Codec

ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int16)


@pytest.mark.parametrize(
    ("codec", "code", "sample"),
    [
        (PCMU, 0xFF, 0),
        (PCMU, 0x7F, 0),
        (PCMU, 0x00, -32124),
        (PCMU, 0x80, 32124),
        (PCMU, 0xF0, 120),
        (PCMA, 0xD5, 8),
        (PCMA, 0x55, -8),
        (PCMA, 0xAA, 32256),
        (PCMA, 0x2A, -32256),
    ],
)
def test_decodes_reference_values(codec: Codec, code: int, sample: int) -> None:
    assert create_decoder(codec).decode(bytes([code]))[0] == sample


@pytest.mark.parametrize(
    ("codec", "sample", "code"),
    [(PCMU, 0, 0xFF), (PCMU, 32767, 0x80), (PCMU, -32768, 0x00), (PCMA, 0, 0xD5), (PCMA, -1, 0x55)],
)
def test_encodes_reference_values(codec: Codec, sample: int, code: int) -> None:
    assert create_encoder(codec).encode(np.array([sample], dtype=np.int16)) == bytes([code])


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_every_code_survives_decode_then_encode(codec: Codec) -> None:
    codes = bytes(range(256))
    decoded = create_decoder(codec).decode(codes)
    again = create_encoder(codec).encode(decoded)
    # mu-law has two codes for zero (0x7F and 0xFF); everything else is exact.
    assert np.array_equal(create_decoder(codec).decode(again), decoded)


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_round_trip_error_is_within_half_a_segment_step(codec: Codec) -> None:
    decoded = create_decoder(codec).decode(create_encoder(codec).encode(ALL_SAMPLES))
    error = np.abs(decoded.astype(np.int32) - ALL_SAMPLES)
    magnitude = np.abs(ALL_SAMPLES.astype(np.int32))
    # Companding: the step doubles per segment, so error stays under ~1/16 of the level
    # (plus a small absolute floor near zero, and clipping at the very top).
    unclipped = magnitude < 32000
    assert np.all(error[unclipped] <= magnitude[unclipped] / 16 + 16)
    assert error.max() <= 1024


@pytest.mark.parametrize("codec", [PCMU, PCMA])
def test_a_tone_keeps_telephone_quality_snr(codec: Codec) -> None:
    t = np.arange(8000) / 8000
    tone = (10000 * np.sin(2 * np.pi * 1000 * t)).astype(np.int16)
    decoded = create_decoder(codec).decode(create_encoder(codec).encode(tone))
    noise = decoded.astype(np.float64) - tone
    snr = 10 * np.log10(np.sum(tone.astype(np.float64) ** 2) / np.sum(noise**2))
    assert snr > 35


def test_one_byte_per_sample() -> None:
    assert len(create_encoder(PCMU).encode(np.zeros(160, dtype=np.int16))) == 160


def test_telephone_event_is_a_codec_without_audio() -> None:
    assert (TELEPHONE_EVENT.payload_type, TELEPHONE_EVENT.clock_rate) == (101, 8000)
    with pytest.raises(CodecError):
        create_encoder(TELEPHONE_EVENT)
