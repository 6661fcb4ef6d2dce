"""Test tones: a sine at a known level in PCM or encoded in a file, and its frequency
and level measured back; what a recording sounds like, slice by slice."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

import av
import numpy as np
import pytest

from ipbx.media.codecs import Pcm
from ipbx.media.wav import read_wav

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


def heard(
    pcm: Pcm, tones: Mapping[str, int], rate: int = 8000, window_ms: int = 100
) -> list[tuple[str, float]]:
    """What a recording sounds like, in order: each stretch named after the tone of
    `tones` it is (nearly all its energy within 50 Hz of that frequency) or "voice"
    (speech spreads it), with the second it starts at; silences are left out and
    repeats merged."""
    window = rate * window_ms // 1000
    freqs = np.fft.rfftfreq(window, 1 / rate)
    stretches: list[tuple[str, float]] = []
    for start in range(0, len(pcm) - window, window):
        piece = pcm[start : start + window]
        if rms(piece) < 200:
            continue
        power = np.abs(np.fft.rfft(piece.astype(np.float64))) ** 2
        kind = next(
            (name for name, hz in tones.items()
             if power[np.abs(freqs - hz) <= 50].sum() > 0.8 * power.sum()),
            "voice",
        )  # fmt: skip
        if not stretches or stretches[-1][0] != kind:
            stretches.append((kind, start / rate))
    return stretches


def seconds_heard(path: Path, tones: Iterable[int], rate: int = 8000) -> list[set[int]]:
    """Which of `tones` a recording (a WAV at any rate, mono or stereo) holds clearly,
    second by second: those with over a tenth of the second's energy within 40 Hz."""
    samples = read_wav(path, rate).astype(np.float64)
    frequencies = np.fft.rfftfreq(rate, 1 / rate)
    heard = []
    for start in range(0, samples.size - rate + 1, rate):
        power = np.abs(np.fft.rfft(samples[start : start + rate] * np.hanning(rate))) ** 2
        tenth = float(power.sum()) / 10
        heard.append({hz for hz in tones if power[abs(frequencies - hz) <= 40].sum() > tenth})
    return heard
