"""Opus (RFC 6716) in RTP (RFC 7587) through FFmpeg's libopus wrapper.

RFC 7587 §4.1 and §7: the RTP clock is always 48000 Hz and the rtpmap always
says two channels ("opus/48000/2"), whatever the audio bandwidth or the number
of channels actually sent; stereo is only a receiver preference (fmtp stereo=1).
We send mono, so 20 ms is 960 samples of 48 kHz PCM and 960 timestamp units.
"""

from __future__ import annotations

from ipbx.media.codecs import pyav
from ipbx.media.codecs.base import Codec, Pcm

# 111 is not assigned (RFC 7587 §7 makes Opus dynamic); it is what browsers
# offer, so a WebRTC peer and we agree on it without renumbering.
OPUS = Codec("opus", 111, 48000, 2)
PCM_RATE = 48000
FRAME_MS = 20
FRAME_SAMPLES = PCM_RATE * FRAME_MS // 1000
# RFC 7587 §3.1.1: 16-20 kbit/s is wideband speech; the headroom pays for FEC.
BIT_RATE = 32000
# libopus only spends bits on in-band FEC (LBRR) when told to expect loss.
FEC_EXPECTED_LOSS_PERCENT = 10
# A TOC byte (RFC 6716 §3.1) for one 20 ms SILK wideband frame: configuration
# 9, mono, code 0. Used to conceal a loss before any packet arrived.
_DEFAULT_TOC = 9 << 3


class OpusEncoder:
    """Mono 20 ms frames; `fec` turns on in-band FEC, asked for with fmtp useinbandfec=1
    (RFC 7587 §6.1: the receiver says it can use FEC in what it receives)."""

    pcm_rate = PCM_RATE

    def __init__(self, fec: bool = False) -> None:
        self.fec = fec
        options = {"application": "voip", "frame_duration": str(FRAME_MS)}
        if fec:
            options |= {"fec": "1", "packet_loss": str(FEC_EXPECTED_LOSS_PERCENT)}
        self._context = pyav.open_encoder("libopus", PCM_RATE, options)
        self._context.bit_rate = BIT_RATE
        self._pts = 0

    def encode(self, pcm: Pcm) -> bytes:
        """Encode exactly one 20 ms frame (960 samples)."""
        payload = pyav.encode(self._context, pcm, self._pts)
        self._pts += FRAME_SAMPLES
        return payload


class OpusDecoder:
    """Decodes to mono 48 kHz; an empty payload (a lost packet) is concealed by libopus."""

    pcm_rate = PCM_RATE

    def __init__(self) -> None:
        self._context = pyav.open_decoder("libopus", PCM_RATE)
        self._concealment = bytes([_DEFAULT_TOC])

    def decode(self, payload: bytes) -> Pcm:
        if payload:
            self._concealment = _concealment_for(payload)
        # FFmpeg takes an empty packet as end of stream, so a loss cannot reach
        # libopus's PLC as "no data". A packet whose frames are all empty does:
        # libopus conceals a frame shorter than 2 bytes (opus_decode_frame).
        return pyav.decode(self._context, payload or self._concealment)


def _concealment_for(packet: bytes) -> bytes:
    """A packet of the same mode, bandwidth and duration as `packet`, with empty frames.

    RFC 6716 §3.2.5: code 3 with a frame count byte (no VBR, no padding) and
    no data means `count` frames of zero bytes each.
    """
    code = packet[0] & 0x03
    if code == 0:
        count = 1
    elif code in (1, 2):
        count = 2
    elif len(packet) > 1:
        count = packet[1] & 0x3F
    else:
        return bytes([_DEFAULT_TOC])
    return bytes([packet[0] | 0x03, count])
