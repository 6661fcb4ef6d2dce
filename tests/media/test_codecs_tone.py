"""Every codec carries a 1 kHz tone through encode and decode, in payloads of the size
its RTP payload format specifies."""

import numpy as np
import pytest

from ipbx.media.codecs import (
    AUDIO_CODECS,
    CODECS,
    G722,
    G729,
    OPUS,
    PCMA,
    PCMU,
    create_decoder,
    create_encoder,
)
from ipbx.media.codecs.base import Codec
from tests.support.tones import assert_tone, tone

# (codec, bytes per 20 ms packet): RFC 3551 §4.5.14 G.711 one byte a sample;
# §4.5.2 G.722 64 kbit/s; §4.5.6 G.729 two 10-byte frames. Opus is variable.
PAYLOAD_SIZES = [(PCMU, 160), (PCMA, 160), (G722, 160), (G729, 20)]


@pytest.mark.parametrize("codec", [OPUS, G722, PCMU, PCMA, G729])
def test_a_tone_survives_encode_and_decode(codec: Codec) -> None:
    encoder, decoder = create_encoder(codec), create_decoder(codec)
    rate = encoder.pcm_rate
    assert decoder.pcm_rate == rate
    pcm = tone(rate, 1000)
    packet = rate * 20 // 1000
    decoded = np.concatenate(
        [decoder.decode(encoder.encode(pcm[i : i + packet])) for i in range(0, len(pcm), packet)]
    )
    assert len(decoded) == len(pcm)
    assert_tone(decoded, rate)


@pytest.mark.parametrize(("codec", "size"), PAYLOAD_SIZES)
def test_payload_size_of_20_ms(codec: Codec, size: int) -> None:
    encoder = create_encoder(codec)
    assert len(encoder.encode(tone(encoder.pcm_rate, 20))) == size


def test_g722_rtp_clock_is_8000_though_it_samples_at_16000() -> None:
    # RFC 3551 §4.5.2
    assert G722.clock_rate == 8000
    assert create_encoder(G722).pcm_rate == create_decoder(G722).pcm_rate == 16000
    assert G722.samples_per_frame(20) == 160


def test_opus_rtpmap_is_48000_with_two_channels() -> None:
    # RFC 7587 §7: "opus/48000/2" even when mono is sent.
    assert (OPUS.clock_rate, OPUS.channels) == (48000, 2)
    assert create_encoder(OPUS).pcm_rate == 48000


def test_registry_lists_wideband_first_and_g729_from_libbcg729() -> None:
    # make test installs Debian's libbcg729 (scripts/install-peers), so G.729 is there.
    assert CODECS == (OPUS, G722, PCMU, PCMA, G729)
    assert AUDIO_CODECS == (PCMU, PCMA)
