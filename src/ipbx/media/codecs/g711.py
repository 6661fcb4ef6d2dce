"""G.711 mu-law (PCMU) and A-law (PCMA), ITU-T G.711 / RFC 3551 §4.5.14.

Both directions are single numpy table lookups: a 65536-entry table from
every int16 sample to its code, and a 256-entry table back. The tables are
built once, vectorised, from the segment arithmetic of the classic Sun
reference implementation (g711.c), which every PBX agrees with bit for bit.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from ipbx.media.codecs.base import Codec, NoRedundancy, Pcm

PCMU = Codec("PCMU", 0, 8000)
PCMA = Codec("PCMA", 8, 8000)

_ALL_SAMPLES = np.arange(-32768, 32768, dtype=np.int32)
_ULAW_SEGMENT_ENDS = np.array([0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF])
_ALAW_SEGMENT_ENDS = np.array([0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF])


def _ulaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = _ALL_SAMPLES >> 2  # mu-law works on 14-bit magnitudes
    mask = np.where(pcm < 0, 0x7F, 0xFF)
    magnitude = np.minimum(np.abs(pcm), 8159) + 0x21  # clip, then add the bias
    segment = np.searchsorted(_ULAW_SEGMENT_ENDS, magnitude)
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((magnitude >> (segment + 1)) & 0x0F))
    return _indexed_by_uint16((code ^ mask).astype(np.uint8))


def _alaw_encode_table() -> npt.NDArray[np.uint8]:
    pcm = _ALL_SAMPLES >> 3  # A-law works on 13-bit magnitudes
    mask = np.where(pcm >= 0, 0xD5, 0x55)
    magnitude = np.where(pcm >= 0, pcm, -pcm - 1)
    segment = np.searchsorted(_ALAW_SEGMENT_ENDS, magnitude)
    shift = np.maximum(segment, 1)
    code = np.where(segment >= 8, 0x7F, (segment << 4) | ((magnitude >> shift) & 0x0F))
    return _indexed_by_uint16((code ^ mask).astype(np.uint8))


def _indexed_by_uint16(table: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
    # Rotate so the table is indexed by the sample's bits viewed as uint16.
    return np.roll(table, -32768)


def _ulaw_decode_table() -> Pcm:
    code = ~np.arange(256, dtype=np.int32) & 0xFF
    magnitude = (((code & 0x0F) << 3) + 0x84) << ((code & 0x70) >> 4)
    return np.where(code & 0x80, 0x84 - magnitude, magnitude - 0x84).astype(np.int16)


def _alaw_decode_table() -> Pcm:
    code = np.arange(256, dtype=np.int32) ^ 0x55
    segment = (code & 0x70) >> 4
    base = (code & 0x0F) << 4
    magnitude = np.where(segment == 0, base + 8, (base + 0x108) << np.maximum(segment - 1, 0))
    return np.where(code & 0x80, magnitude, -magnitude).astype(np.int16)


class _Encoder:
    pcm_rate = 8000

    def __init__(self, table: npt.NDArray[np.uint8]) -> None:
        self._table = table

    def encode(self, pcm: Pcm) -> bytes:
        # take: the same lookup as indexing with the array, without numpy's fancy-indexing
        # set-up (0.7 µs a 20 ms frame instead of 1.1).
        return self._table.take(np.asarray(pcm, dtype=np.int16).view(np.uint16)).tobytes()


class _Decoder(NoRedundancy):
    pcm_rate = 8000

    def __init__(self, table: Pcm) -> None:
        self._table = table

    def decode(self, payload: bytes) -> Pcm:
        return self._table.take(np.frombuffer(payload, dtype=np.uint8))


ULAW_ENCODE = _ulaw_encode_table()
ULAW_DECODE = _ulaw_decode_table()
ALAW_ENCODE = _alaw_encode_table()
ALAW_DECODE = _alaw_decode_table()


def pcmu_encoder() -> _Encoder:
    return _Encoder(ULAW_ENCODE)


def pcmu_decoder() -> _Decoder:
    return _Decoder(ULAW_DECODE)


def pcma_encoder() -> _Encoder:
    return _Encoder(ALAW_ENCODE)


def pcma_decoder() -> _Decoder:
    return _Decoder(ALAW_DECODE)
