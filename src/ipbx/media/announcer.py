"""Recorded prompts played to many callers from frames encoded once per codec.

An announcement that a queue makes to every waiting caller ("Thank you for waiting."),
or to every caller at the same position, is decoded and encoded once per codec and kept
(the last CACHE_SIZE prompts and codecs, a file that changes is encoded again); each
caller who hears it gets the same payloads from the first frame, sent on the media
clock (clock.py) by the caller's endpoint under its own SSRC, sequence, timestamp and
SRTP, as music on hold is (moh.py). Playing costs a caller one send a frame: no decode,
no encoder and no timer of its own.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path

from ipbx.media.clock import media_clock
from ipbx.media.codecs import Codec, CodecError, create_encoder
from ipbx.media.endpoint import PTIME_MS, MediaEndpoint, MediaError, whole_frames
from ipbx.media.rtp import TIMESTAMP_MOD

CACHE_SIZE = 256

_Key = tuple[object, ...]


class Announcer:
    """`play(endpoint, path)` plays a prompt from the shared encoded frames."""

    def __init__(self) -> None:
        self._encoded: OrderedDict[_Key, asyncio.Future[list[bytes]]] = OrderedDict()
        self._playing: dict[MediaEndpoint, _Playback] = {}
        self._stop_ticks: Callable[[], None] | None = None

    async def play(self, endpoint: MediaEndpoint, path: str | Path) -> None:
        """Play `path` on `endpoint`, returning when it has all been sent (or the
        endpoint closed); cancelling stops it at once."""
        codec = endpoint.codec
        if codec is None or endpoint.closed:
            raise MediaError("an announcement needs an open endpoint with a codec")
        frames = await self._frames(Path(path), codec, endpoint.fmtp)
        if endpoint.closed:
            return
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        now = asyncio.get_running_loop().time()
        self._playing[endpoint] = _Playback(
            frames, endpoint.timestamp_at(now), codec.samples_per_frame(PTIME_MS), done
        )
        if self._stop_ticks is None:
            self._stop_ticks = media_clock().subscribe(self._tick)
        try:
            await done
        finally:
            self._end(endpoint)

    def _end(self, endpoint: MediaEndpoint) -> None:
        self._playing.pop(endpoint, None)
        if not self._playing and self._stop_ticks is not None:
            self._stop_ticks()
            self._stop_ticks = None

    def _tick(self, now: float) -> None:
        for endpoint, playback in list(self._playing.items()):
            index = playback.index
            if index >= len(playback.frames) or endpoint.closed:
                self._end(endpoint)
                if not playback.done.done():
                    playback.done.set_result(None)
                continue
            # RFC 3551 §4.1: the marker bit flags the first packet of a talkspurt.
            endpoint.send_audio(playback.frames[index], playback.timestamp, index == 0)
            playback.timestamp = (playback.timestamp + playback.step) % TIMESTAMP_MOD
            playback.index = index + 1

    async def _frames(self, path: Path, codec: Codec, fmtp: Mapping[str, str]) -> list[bytes]:
        try:
            stat = path.stat()
        except OSError as exc:
            raise MediaError(f"{path}: {exc.strerror}") from exc
        key = (path, stat.st_mtime_ns, stat.st_size, codec.name.lower(), codec.clock_rate,
               tuple(sorted(fmtp.items())))  # fmt: skip
        encoded = self._encoded.get(key)
        if encoded is None or (encoded.done() and encoded.exception() is not None):
            encoded = self._encoded[key] = asyncio.ensure_future(
                asyncio.to_thread(_encode, path, codec, fmtp)
            )
            while len(self._encoded) > CACHE_SIZE:
                self._encoded.popitem(last=False)
        else:
            self._encoded.move_to_end(key)
        # Shielded: a caller who stops waiting leaves the encoding to the others.
        return await asyncio.shield(encoded)


class _Playback:
    """One endpoint's place in a prompt."""

    __slots__ = ("done", "frames", "index", "step", "timestamp")

    def __init__(
        self, frames: list[bytes], timestamp: int, step: int, done: asyncio.Future[None]
    ) -> None:
        self.frames = frames
        self.index = 0
        self.timestamp = timestamp
        self.step = step
        self.done = done


def _encode(path: Path, codec: Codec, fmtp: Mapping[str, str]) -> list[bytes]:
    """The payloads of `path` in `codec`, 20 ms each."""
    try:
        encoder = create_encoder(codec, fmtp)
    except CodecError as exc:
        raise MediaError(f"cannot play: {exc}") from exc
    pcm = whole_frames(path, encoder.pcm_rate)
    frame = encoder.pcm_rate * PTIME_MS // 1000
    return [encoder.encode(pcm[offset : offset + frame]) for offset in range(0, len(pcm), frame)]
