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
        return self.clock_rate * ptime_ms // 1000


class Encoder(Protocol):
    def encode(self, pcm: Pcm) -> bytes: ...


class Decoder(Protocol):
    def decode(self, payload: bytes) -> Pcm: ...
