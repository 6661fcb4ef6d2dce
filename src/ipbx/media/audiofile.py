"""Read any audio file FFmpeg decodes (WAV, MP3, OGG, FLAC ...) as mono int16.

This is the general path for prompts and music on hold in whatever format users
upload; PyAV decodes, and its AudioResampler (libswresample) downmixes to mono and
converts to the requested rate. wav.read_wav stays the dependency-light reader for
the PCM WAVs we write ourselves.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ipbx.media.codecs.base import Pcm


class AudioFileError(ValueError):
    """A file that cannot be opened or holds no decodable audio."""


def read_audio(path: str | Path, rate: int = 8000) -> Pcm:
    """Decode the first audio stream of `path` to mono int16 samples at `rate`."""
    import av  # on first use (see codecs/pyav.py)

    try:
        with av.open(str(path)) as container:
            if not container.streams.audio:
                raise AudioFileError(f"{path}: no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=rate)
            chunks = [
                out.to_ndarray().reshape(-1)
                for frame in container.decode(stream)
                for out in resampler.resample(frame)
            ]
            # A None frame flushes the samples the resampler's filter still holds.
            chunks += [out.to_ndarray().reshape(-1) for out in resampler.resample(None)]
    except (av.FFmpegError, OSError) as exc:
        raise AudioFileError(f"{path}: cannot decode audio ({exc})") from exc
    if not chunks:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(chunks).astype(np.int16, copy=False)
