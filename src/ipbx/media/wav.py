"""WAV files: read any PCM WAV as mono int16 at our rate; write crash-safe 16-bit mono.

Prompts arrive from users in whatever format their editor saved; calls are
recorded at the codec rate. WavWriter rewrites the RIFF sizes on every flush
so a recording stays playable if the process dies mid-call.
"""

from __future__ import annotations

import struct
import wave
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

import numpy as np
import numpy.typing as npt

from ipbx.media.codecs.base import Pcm

_HEADER_SIZE = 44
# Half-width of the windowed-sinc anti-aliasing filter, in output samples.
_FILTER_ZEROS = 8


class WavError(ValueError):
    """A file that is not a PCM WAV we can read."""


def read_wav(path: str | Path, rate: int = 8000) -> Pcm:
    """Read an 8- or 16-bit PCM WAV, mono or stereo, as mono int16 at `rate`."""
    try:
        with wave.open(str(path), "rb") as wav:
            width = wav.getsampwidth()
            channels = wav.getnchannels()
            source_rate = wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise WavError(f"{path}: not a PCM WAV file ({exc})") from exc
    if width == 1:
        # 8-bit WAV samples are unsigned, centred on 128.
        samples = (np.frombuffer(frames, dtype=np.uint8).astype(np.float64) - 128) * 256
    elif width == 2:
        samples = np.frombuffer(frames, dtype="<i2").astype(np.float64)
    else:
        raise WavError(f"{path}: {8 * width}-bit samples are not supported (8 or 16 only)")
    mono = samples.reshape(-1, channels).mean(axis=1)
    resampled = resample(mono, source_rate, rate)
    return np.clip(np.rint(resampled), -32768, 32767).astype(np.int16)


def resample(
    samples: npt.NDArray[np.float64], source_rate: int, rate: int
) -> npt.NDArray[np.float64]:
    """Linear-interpolation resampling, low-pass filtered first when decimating."""
    if source_rate == rate or samples.size == 0:
        return samples
    if rate < source_rate:
        samples = np.convolve(samples, _lowpass(rate / source_rate), mode="same")
    count = int(samples.size * rate / source_rate)
    positions = np.arange(count) * (source_rate / rate)
    interpolated = np.interp(positions, np.arange(samples.size), samples)
    return np.asarray(interpolated, dtype=np.float64)


def _lowpass(cutoff: float) -> npt.NDArray[np.float64]:
    # Cut at 0.9 x the new Nyquist frequency; Hamming window keeps the ripple small.
    half = int(np.ceil(_FILTER_ZEROS / cutoff))
    n = np.arange(-half, half + 1)
    taps = 0.9 * cutoff * np.sinc(0.9 * cutoff * n) * np.hamming(n.size)
    return np.asarray(taps / taps.sum(), dtype=np.float64)


class WavWriter:
    """Write 16-bit PCM incrementally, keeping the header valid on disk: a file cut off
    by a crash holds everything up to the last flush, and says so in its header.

    With several channels, `write` takes an array of shape (samples, channels).
    """

    def __init__(
        self, path: str | Path, rate: int = 8000, flush_ms: int = 200, channels: int = 1
    ) -> None:
        self.path = Path(path)
        self.rate = rate
        self.channels = channels
        self._flush_samples = rate * flush_ms // 1000
        self._pending: list[bytes] = []
        self._pending_samples = 0
        self._data_bytes = 0
        self._file: BinaryIO | None = self.path.open("wb")
        self._file.write(self._header())
        self._file.flush()

    def write(self, pcm: Pcm) -> None:
        if self._file is None:
            raise ValueError(f"{self.path}: WavWriter is closed")
        self._pending.append(np.asarray(pcm, dtype="<i2").tobytes())
        self._pending_samples += len(pcm)
        if self._pending_samples >= self._flush_samples:
            self.flush()

    def flush(self) -> None:
        if self._file is None:
            return
        data = b"".join(self._pending)
        self._pending.clear()
        self._pending_samples = 0
        self._file.write(data)
        self._data_bytes += len(data)
        # RIFF sizes go first in the file, so they are rewritten after the data.
        self._file.seek(0)
        self._file.write(self._header())
        self._file.seek(0, 2)
        self._file.flush()

    def close(self) -> None:
        if self._file is not None:
            self.flush()
            self._file.close()
            self._file = None

    def __enter__(self) -> WavWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def _header(self) -> bytes:
        return struct.pack(
            "<4sI4s4sIHHIIHH4sI",
            b"RIFF",
            _HEADER_SIZE - 8 + self._data_bytes,
            b"WAVE",
            b"fmt ",
            16,
            1,  # WAVE_FORMAT_PCM
            self.channels,
            self.rate,
            self.rate * 2 * self.channels,
            2 * self.channels,
            16,
            b"data",
            self._data_bytes,
        )


def finish(writer: WavWriter | None) -> Path | None:
    """Close a recording, if there is one: its file."""
    if writer is None:
        return None
    writer.close()
    return writer.path
