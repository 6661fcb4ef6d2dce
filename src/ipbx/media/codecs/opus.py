"""Opus (RFC 6716) in RTP (RFC 7587) through libopus itself, by ctypes.

RFC 7587 §4.1 and §7: the RTP clock is always 48000 Hz and the rtpmap always says two
channels ("opus/48000/2"), whatever the audio bandwidth or the number of channels
actually sent; stereo is only a receiver preference (fmtp stereo=1). We send mono, 20 ms
a packet, 960 timestamp units.

libopus encodes from and decodes to 8, 12, 16, 24 or 48 kHz PCM (opus.h), whatever the
bandwidth of the packets: a transcoder toward G.711 runs it at 8 kHz and toward G.722 at
16 kHz, so no resampling is needed on either side and the encoder analyses a sixth of
the samples (a 20 ms frame of speech-like audio took 82 µs to encode at 8 kHz and
204 µs at 48 kHz, complexity 10, here). Complexity 5 (libopus's scale is 0-10, default
10) took three quarters of that at each rate. At 8 kHz, audio that comes from or goes
to G.711, complexity 1 takes 24 µs a frame where 5 takes 55 µs, and loses next to
nothing: speech from espeak-ng through the encoder and decoder scored PESQ (ITU-T
P.862, narrowband) 4.44 at complexity 1, 4.48 at 5 and 4.51 at 10, where the same
speech through G.711 µ-law alone scored 3.95 (measured here, 2026-12-05, with PyPI's
`pesq`). A loss is concealed by libopus's own PLC (opus_decode with no data).

The library is the one PyAV's wheel bundles (av.libs), or the system's libopus.so.0.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import numpy as np

from ipbx.media.codecs.base import Codec, Pcm

# 111 is not assigned (RFC 7587 §7 makes Opus dynamic); it is what browsers
# offer, so a WebRTC peer and we agree on it without renumbering.
OPUS = Codec("opus", 111, 48000, 2)
PCM_RATE = 48000
RATES = (8000, 12000, 16000, 24000, 48000)
FRAME_MS = 20
FRAME_SAMPLES = PCM_RATE * FRAME_MS // 1000
# RFC 7587 §3.1.1: 16-20 kbit/s is wideband speech; the headroom pays for FEC.
BIT_RATE = 32000
COMPLEXITY = 5
# Narrowband (8 kHz: the other end is G.711 or G.729, which caps the quality anyway).
NARROWBAND_COMPLEXITY = 1
# libopus only spends bits on in-band FEC (LBRR) when told to expect loss.
FEC_EXPECTED_LOSS_PERCENT = 10
# RFC 6716 §3.2.5: a packet holds at most 120 ms; 1275 bytes per frame at most.
_MAX_MS = 120
_MAX_PACKET = 1275 * 3

# opus_defines.h
_APPLICATION_VOIP = 2048
_SET_BITRATE = 4002
_SET_MAX_BANDWIDTH = 4004
_SET_COMPLEXITY = 4010
_SET_INBAND_FEC = 4012
_SET_PACKET_LOSS_PERC = 4014
_SET_SIGNAL = 4024
_SIGNAL_VOICE = 3001
# OPUS_BANDWIDTH_*, each after the sample rate it needs (RFC 6716 §2, Table 1).
_BANDWIDTHS = ((8000, 1101), (12000, 1102), (16000, 1103), (24000, 1104))
_FULLBAND = 1105


class OpusError(RuntimeError):
    """libopus refused: the message is its own (opus_strerror)."""


def _load() -> ctypes.CDLL:
    import av

    bundled = sorted((Path(av.__file__).parent.parent / "av.libs").glob("libopus*.so*"))
    name = str(bundled[0]) if bundled else ctypes.util.find_library("opus") or "libopus.so.0"
    library = ctypes.CDLL(name)
    library.opus_encoder_create.restype = ctypes.c_void_p
    library.opus_encoder_create.argtypes = [
        ctypes.c_int32, ctypes.c_int, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
    ]  # fmt: skip
    library.opus_encode.restype = ctypes.c_int32
    library.opus_encode.argtypes = [
        ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_int32,
    ]  # fmt: skip
    library.opus_encoder_destroy.argtypes = [ctypes.c_void_p]
    library.opus_encoder_destroy.restype = None
    library.opus_decoder_create.restype = ctypes.c_void_p
    library.opus_decoder_create.argtypes = [
        ctypes.c_int32, ctypes.c_int, ctypes.POINTER(ctypes.c_int),
    ]  # fmt: skip
    library.opus_decode.restype = ctypes.c_int
    library.opus_decode.argtypes = [
        ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32, ctypes.c_void_p, ctypes.c_int,
        ctypes.c_int,
    ]  # fmt: skip
    library.opus_decoder_destroy.argtypes = [ctypes.c_void_p]
    library.opus_decoder_destroy.restype = None
    library.opus_strerror.restype = ctypes.c_char_p
    library.opus_strerror.argtypes = [ctypes.c_int]
    return library


_library: ctypes.CDLL | None = None


def _opus() -> ctypes.CDLL:
    global _library
    if _library is None:
        _library = _load()
    return _library


def _check(code: int) -> int:
    if code < 0:
        raise OpusError(_opus().opus_strerror(code).decode())
    return code


def pcm_rate_for(rate: int | None) -> int:
    """The rate libopus runs at for audio coming from or going to `rate` (None: 48 kHz):
    the lowest it supports that loses nothing."""
    if rate is None:
        return PCM_RATE
    return next((r for r in RATES if r >= rate), PCM_RATE)


def bandwidth_for(playback_rate: int) -> int:
    """The widest audio bandwidth (OPUS_BANDWIDTH_*) a receiver that plays back at
    `playback_rate` hears."""
    return next((bandwidth for rate, bandwidth in _BANDWIDTHS if playback_rate <= rate), _FULLBAND)


class OpusEncoder:
    """Mono 20 ms frames at `pcm_rate`. What the receiver asked for in its fmtp (RFC 7587
    §6.1): `fec` turns on in-band FEC (useinbandfec=1, it can use FEC in what it
    receives), and nothing wider than `playback_rate` is encoded (maxplaybackrate: an
    encoder SHOULD NOT encode frequencies it cannot play back)."""

    def __init__(
        self, fec: bool = False, rate: int | None = None, playback_rate: int = PCM_RATE
    ) -> None:
        self.fec = fec
        self.pcm_rate = pcm_rate_for(rate)
        self._frame = self.pcm_rate * FRAME_MS // 1000
        opus = _opus()
        error = ctypes.c_int()
        handle = opus.opus_encoder_create(self.pcm_rate, 1, _APPLICATION_VOIP, error)
        _check(error.value)
        self._handle = ctypes.c_void_p(handle)
        self._destroy = opus.opus_encoder_destroy
        self._encode = opus.opus_encode
        ctl = opus.opus_encoder_ctl
        for request, value in (
            (_SET_BITRATE, BIT_RATE),
            (_SET_COMPLEXITY, NARROWBAND_COMPLEXITY if self.pcm_rate == 8000 else COMPLEXITY),
            (_SET_SIGNAL, _SIGNAL_VOICE),
            (_SET_INBAND_FEC, int(fec)),
            (_SET_PACKET_LOSS_PERC, FEC_EXPECTED_LOSS_PERCENT if fec else 0),
            (_SET_MAX_BANDWIDTH, bandwidth_for(playback_rate)),
        ):
            _check(ctl(self._handle, ctypes.c_int(request), ctypes.c_int32(value)))
        self._out = ctypes.create_string_buffer(_MAX_PACKET)
        # Each frame is copied into one buffer whose address is read once: numpy's
        # `.ctypes.data` costs 1.5 µs a call, more than the copy.
        self._in = np.zeros(self._frame, dtype=np.int16)
        self._in_address = self._in.ctypes.data

    def encode(self, pcm: Pcm) -> bytes:
        """Encode exactly one 20 ms frame."""
        if len(pcm) != self._frame:
            raise ValueError(f"Opus at {self.pcm_rate} Hz takes {self._frame} samples a frame")
        self._in[:] = pcm
        size = _check(
            self._encode(self._handle, self._in_address, self._frame, self._out, _MAX_PACKET)
        )
        return self._out.raw[:size]

    def __del__(self) -> None:
        if getattr(self, "_handle", None):
            self._destroy(self._handle)


class OpusDecoder:
    """Decodes to mono at `pcm_rate`; an empty payload (a lost packet) is concealed by
    libopus, for the length of the last packet."""

    def __init__(self, rate: int | None = None) -> None:
        self.pcm_rate = pcm_rate_for(rate)
        opus = _opus()
        error = ctypes.c_int()
        handle = opus.opus_decoder_create(self.pcm_rate, 1, error)
        _check(error.value)
        self._handle = ctypes.c_void_p(handle)
        self._destroy = opus.opus_decoder_destroy
        self._decode = opus.opus_decode
        self._most = self.pcm_rate * _MAX_MS // 1000
        self._last = self.pcm_rate * FRAME_MS // 1000
        self._pcm = np.zeros(self._most, dtype=np.int16)
        self._address = self._pcm.ctypes.data  # read once, as the encoder's

    def decode(self, payload: bytes) -> Pcm:
        out = self._address
        if payload:
            count = self._decode(self._handle, payload, len(payload), out, self._most, 0)
            if count < 0:  # a corrupt packet: concealed as a lost one
                count = self._decode(self._handle, None, 0, out, self._last, 0)
            else:
                self._last = count
        else:
            count = self._decode(self._handle, None, 0, out, self._last, 0)
        return self._pcm[: max(count, 0)].copy()

    def recover(self, payload: bytes, samples: int) -> Pcm:
        """The `samples` before `payload`, whose packet was lost, from the in-band FEC
        (LBRR) `payload` carries (RFC 6716 §2.1.7); libopus conceals them where it
        carries none. `payload` itself is decoded next, as usual."""
        size = min(samples, self._most)
        count = self._decode(self._handle, payload, len(payload), self._address, size, 1)
        if count < 0:  # a corrupt packet: concealed as a lost one
            count = self._decode(self._handle, None, 0, self._address, size, 0)
        return self._pcm[: max(count, 0)].copy()

    def __del__(self) -> None:
        if getattr(self, "_handle", None):
            self._destroy(self._handle)
