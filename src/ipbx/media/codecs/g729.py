"""G.729 Annex A (CS-ACELP, 8 kbit/s) through Belledonne's libbcg729, by ctypes.

RFC 3551 §4.5.6: 8000 Hz clock, 10 ms frames of 80 samples coded in 10 bytes,
several frames per packet (20 ms: 20 bytes); a packet may end with one 2-byte
Annex B comfort-noise (SID) frame. We never send SID (VAD off) but accept it.

Available only where the shared library is installed (Debian: libbcg729-0);
`load()` returns None otherwise and the registry leaves G.729 out.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import numpy as np

from ipbx.media.codecs.base import Codec, NoRedundancy, Pcm

G729 = Codec("G729", 18, 8000)
PCM_RATE = 8000
FRAME_SAMPLES = 80
FRAME_BYTES = 10
SID_BYTES = 2
_SONAME = "libbcg729.so.0"
# The Debian package that provides it (`make serve` installs it).
BCG729_PACKAGE = "libbcg729-0"

_Samples = ctypes.c_int16 * FRAME_SAMPLES
_Bits = ctypes.c_uint8 * FRAME_BYTES


class Bcg729:
    """The five functions of bcg729 1.x (bcg729/encoder.h, bcg729/decoder.h) we call."""

    def __init__(self, library: ctypes.CDLL) -> None:
        self.init_encoder = library.initBcg729EncoderChannel
        self.init_encoder.argtypes = [ctypes.c_uint8]
        self.init_encoder.restype = ctypes.c_void_p
        self.close_encoder = library.closeBcg729EncoderChannel
        self.close_encoder.argtypes = [ctypes.c_void_p]
        self.close_encoder.restype = None
        self.encode = library.bcg729Encoder
        self.encode.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_int16),
            ctypes.POINTER(ctypes.c_uint8),
            ctypes.POINTER(ctypes.c_uint8),
        ]
        self.encode.restype = None
        self.init_decoder = library.initBcg729DecoderChannel
        self.init_decoder.argtypes = []
        self.init_decoder.restype = ctypes.c_void_p
        self.close_decoder = library.closeBcg729DecoderChannel
        self.close_decoder.argtypes = [ctypes.c_void_p]
        self.close_decoder.restype = None
        # (context, bitStream, bitStreamLength, frameErasureFlag, SIDFrameFlag,
        #  rfc3389PayloadFlag, signal)
        self.decode = library.bcg729Decoder
        self.decode.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_uint8),
            ctypes.c_uint8,
            ctypes.c_uint8,
            ctypes.c_uint8,
            ctypes.c_uint8,
            ctypes.POINTER(ctypes.c_int16),
        ]
        self.decode.restype = None


def load() -> Bcg729 | None:
    name = ctypes.util.find_library("bcg729") or _SONAME
    try:
        return Bcg729(ctypes.CDLL(name))
    except (OSError, AttributeError):
        return None


class G729Encoder:
    pcm_rate = PCM_RATE

    def __init__(self, library: Bcg729) -> None:
        self._library = library
        self._context = library.init_encoder(0)  # 0: no VAD, so never a SID frame

    def __del__(self) -> None:
        self._library.close_encoder(self._context)

    def encode(self, pcm: Pcm) -> bytes:
        """Encode a multiple of 10 ms (80 samples), 10 bytes per 10 ms."""
        frames = np.ascontiguousarray(pcm, dtype=np.int16).reshape(-1, FRAME_SAMPLES)
        payload = bytearray()
        bits = _Bits()
        length = ctypes.c_uint8()
        for frame in frames:
            samples = frame.ctypes.data_as(ctypes.POINTER(ctypes.c_int16))
            self._library.encode(self._context, samples, bits, ctypes.byref(length))
            payload += bytes(bits)[: length.value]
        return bytes(payload)


class G729Decoder(NoRedundancy):
    pcm_rate = PCM_RATE

    def __init__(self, library: Bcg729) -> None:
        self._library = library
        self._context = library.init_decoder()

    def __del__(self) -> None:
        self._library.close_decoder(self._context)

    def decode(self, payload: bytes) -> Pcm:
        frames = len(payload) // FRAME_BYTES
        sid = len(payload) % FRAME_BYTES == SID_BYTES
        pcm = np.empty((frames + sid, FRAME_SAMPLES), dtype=np.int16)
        for index in range(frames + sid):
            chunk = payload[index * FRAME_BYTES : (index + 1) * FRAME_BYTES]
            bits = (ctypes.c_uint8 * len(chunk)).from_buffer_copy(chunk)
            out = pcm[index].ctypes.data_as(ctypes.POINTER(ctypes.c_int16))
            is_sid = int(index == frames)
            self._library.decode(self._context, bits, len(chunk), 0, is_sid, 0, out)
        return pcm.reshape(-1)
