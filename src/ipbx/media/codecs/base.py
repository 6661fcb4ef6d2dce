"""The one interface every codec implements, and the Codec description SDP reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

Pcm = npt.NDArray[np.int16]


@dataclass(frozen=True, slots=True)
class Codec:
    """An RTP payload format as negotiated in SDP (RFC 4566 §6 a=rtpmap)."""

    name: str
    payload_type: int
    clock_rate: int
    channels: int = 1

    @property
    def is_static(self) -> bool:
        # RFC 3551 §6: 0-95 are statically assigned; 96-127 are dynamic.
        return self.payload_type < 96

    def samples_per_frame(self, ptime_ms: int) -> int:
        """RTP timestamp units per packet of `ptime_ms` (not PCM samples: see pcm_rate)."""
        return self.clock_rate * ptime_ms // 1000


class Encoder(Protocol):
    """Mono int16 PCM at `pcm_rate` in, one RTP payload out.

    `pcm_rate` is the codec's audio sample rate, which is not always the RTP
    clock rate: G.722 samples at 16 kHz on an 8000 Hz RTP clock (RFC 3551
    §4.5.2). Callers size packets as pcm_rate x ptime.
    """

    @property
    def pcm_rate(self) -> int: ...

    def encode(self, pcm: Pcm) -> bytes: ...


class Decoder(Protocol):
    """One RTP payload in, mono int16 PCM at `pcm_rate` out.

    An empty payload stands for a lost packet: a codec with packet loss
    concealment (Opus) returns a frame of concealment, the others return no
    samples. `recover` gives the `samples` before `payload` when their packet was
    lost, from the redundancy `payload` carries (Opus in-band FEC), or none.
    """

    @property
    def pcm_rate(self) -> int: ...

    def decode(self, payload: bytes) -> Pcm: ...

    def recover(self, payload: bytes, samples: int) -> Pcm: ...


class NoRedundancy:
    """Decoder.recover of a codec whose packets carry nothing of the ones before."""

    def recover(self, payload: bytes, samples: int) -> Pcm:
        return np.zeros(0, dtype=np.int16)
