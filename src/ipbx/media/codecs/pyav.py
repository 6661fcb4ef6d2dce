"""What the PyAV-backed codecs (G.722, Opus) and the transcoder share: int16 mono
PCM in and out of FFmpeg frames and packets.

PyAV is imported on first use, here and in the other media modules that need it: a
server that only relays (G.711 to G.711) never loads FFmpeg's libraries, a sixth of
its resident memory."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ipbx.media.codecs.base import Pcm

if TYPE_CHECKING:
    import av
    from av.audio.codeccontext import AudioCodecContext


def open_encoder(name: str, rate: int, options: dict[str, str]) -> AudioCodecContext:
    import av
    from av.audio.codeccontext import AudioCodecContext

    context = av.CodecContext.create(name, "w")
    assert isinstance(context, AudioCodecContext)
    context.sample_rate = rate
    context.layout = "mono"
    context.format = "s16"
    context.options = options
    context.open()
    return context


def open_decoder(name: str, rate: int) -> AudioCodecContext:
    import av
    from av.audio.codeccontext import AudioCodecContext

    context = av.CodecContext.create(name, "r")
    assert isinstance(context, AudioCodecContext)
    context.sample_rate = rate
    context.layout = "mono"
    return context


def audio_frame(pcm: Pcm, rate: int, pts: int | None = None) -> av.AudioFrame:
    import av

    frame = av.AudioFrame.from_ndarray(
        np.ascontiguousarray(pcm, dtype=np.int16).reshape(1, -1), format="s16", layout="mono"
    )
    frame.sample_rate = rate
    frame.pts = pts
    return frame


def frames_pcm(frames: list[av.AudioFrame]) -> Pcm:
    """The frames' samples as one mono int16 array (the contexts above output s16 mono)."""
    # Packed s16 mono is one plane of `samples` int16s; reading it directly skips the
    # general (planar-aware) to_ndarray, a third of a transcoded frame's Python time.
    arrays = [
        np.frombuffer(memoryview(f.planes[0]), dtype=np.int16, count=f.samples) for f in frames
    ]
    if len(arrays) == 1:
        return arrays[0].copy()
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int16)


def encode(context: AudioCodecContext, pcm: Pcm, pts: int) -> bytes:
    return b"".join(
        bytes(packet) for packet in context.encode(audio_frame(pcm, context.sample_rate, pts))
    )


def decode(context: AudioCodecContext, payload: bytes) -> Pcm:
    import av

    return frames_pcm(context.decode(av.Packet(payload)))
