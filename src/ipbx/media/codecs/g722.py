"""G.722 wideband ADPCM (ITU-T G.722, 64 kbit/s) through FFmpeg's g722 codec.

RFC 3551 §4.5.2: G.722 samples audio at 16 kHz, but its RTP clock rate is
8000 Hz, an error in RFC 1890 kept for compatibility. So the Codec (what SDP
and RTP timestamps see) says 8000 while the encoder and decoder work on 16 kHz
PCM: 20 ms is 320 samples, 160 bytes and 160 timestamp units.
"""

from __future__ import annotations

import numpy as np

from ipbx.media.codecs import pyav
from ipbx.media.codecs.base import Codec, NoRedundancy, Pcm

G722 = Codec("G722", 9, 8000)
PCM_RATE = 16000
# FFmpeg encodes fixed-size frames; 10 ms lets any ptime that is a multiple of 10 ms through.
_FRAME_SAMPLES = PCM_RATE // 100


class G722Encoder:
    pcm_rate = PCM_RATE

    def __init__(self) -> None:
        self._context = pyav.open_encoder("g722", PCM_RATE, {"frame_size": str(_FRAME_SAMPLES)})
        self._pts = 0

    def encode(self, pcm: Pcm) -> bytes:
        """Encode a multiple of 10 ms (160 samples); 2 samples become 1 byte."""
        frames = np.asarray(pcm, dtype=np.int16).reshape(-1, _FRAME_SAMPLES)
        payload = bytearray()
        for frame in frames:
            payload += pyav.encode(self._context, frame, self._pts)
            self._pts += _FRAME_SAMPLES
        return bytes(payload)


class G722Decoder(NoRedundancy):
    pcm_rate = PCM_RATE

    def __init__(self) -> None:
        self._context = pyav.open_decoder("g722", PCM_RATE)

    def decode(self, payload: bytes) -> Pcm:
        # FFmpeg would take an empty packet as end of stream; G.722 has no concealment.
        if not payload:
            return np.zeros(0, dtype=np.int16)
        return pyav.decode(self._context, payload)
