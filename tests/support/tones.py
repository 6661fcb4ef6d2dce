"""Test tones: a sine at a known level in PCM or encoded in a file, and its frequency
and level measured back."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from ipbx.media.codecs import Pcm

TONE_HZ = 1000
LEVEL = 8000  # about -12 dBFS


def tone(rate: int, ms: int, hz: int = TONE_HZ) -> Pcm:
    t = np.arange(rate * ms // 1000) / rate
    return np.rint(LEVEL * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def dominant_frequency(pcm: Pcm, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm * np.hanning(len(pcm))))
    return float(np.argmax(spectrum) * rate / len(pcm))


def rms(pcm: Pcm) -> float:
    return float(np.sqrt(np.mean(pcm.astype(np.float64) ** 2)))


def assert_tone(pcm: Pcm, rate: int) -> None:
    # Skip the codec's start-up (Opus lookahead, ADPCM/CELP adaptation).
    steady = pcm[len(pcm) // 5 :]
    assert abs(dominant_frequency(steady, rate) - TONE_HZ) <= 20
    # A sine of peak LEVEL has an RMS of LEVEL/sqrt(2); lossy codecs stay within 3 dB.
    assert rms(steady) == pytest.approx(LEVEL / np.sqrt(2), rel=0.3)


def encode_tone(
    path: Path, codec: str, fmt: str, rate: int, freq: float, layout: str = "mono"
) -> None:
    """One second of a sine at half scale, encoded with `codec` from `fmt` samples."""
    t = np.arange(rate) / rate
    mono = 0.5 * np.sin(2 * np.pi * freq * t)
    channels = 2 if layout == "stereo" else 1
    if fmt.endswith("p"):  # planar: one row per channel
        samples = np.tile(mono, (channels, 1))
    else:  # packed: channels interleaved in one row
        samples = np.repeat(mono, channels)[None, :]
    data = (samples * 32767).astype(np.int16) if fmt == "s16" else samples.astype(np.float32)
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=layout)
        frame.rate = rate
        frame.pts = 0
        for packet in stream.encode(frame):
            container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)


def peak_hz(pcm: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * rate / pcm.size)
