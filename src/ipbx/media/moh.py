"""Music on hold: the audio files of a folder, in name order, round and round, played
once for every caller who listens (a holding bridge, as Asterisk's `bridge_holding`).

A folder's music runs on the media clock (clock.py), 20 ms a tick, while anybody
listens: each frame is taken once from the decoded file, encoded once per codec in use
(every PCMU listener gets the same payload bytes) and sent by each listener's endpoint
with its own SSRC, sequence number, timestamp and SRTP. A caller who starts listening
joins at the current frame, as a radio is joined; listening and leaving cost a
dictionary insert and a delete; with nobody left the music stops and the decoded
audio is let go. Hundreds of waiting callers cost one decode and one encoder per codec.

The folder is read again at every file change, so files added or removed while callers
listen are picked up without a restart. A file that cannot be decoded is skipped with a
warning; a folder with nothing playable leaves its listeners in silence rather than
spinning, and tries again a second later. The music is decoded at 16 kHz (the wideband
audio G.722 carries) and resampled per codec: 8 kHz for G.711, 48 kHz for Opus.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Hashable
from pathlib import Path

import numpy as np

from ipbx.media.audiofile import AudioFileError, read_audio
from ipbx.media.clock import media_clock
from ipbx.media.codecs import Pcm
from ipbx.media.endpoint import PTIME_MS, MediaEndpoint
from ipbx.media.fanout import Fanout, stream_key

log = logging.getLogger(__name__)

# What FFmpeg (PyAV) decodes that people put in a music-on-hold folder.
AUDIO_SUFFIXES = frozenset({".wav", ".mp3", ".ogg", ".opus", ".flac", ".m4a"})
MUSIC_RATE = 16000
_FRAME = MUSIC_RATE * PTIME_MS // 1000
_RETRY_SECONDS = 1.0


class MusicOnHold:
    """One folder's music, shared by everyone who listens (`listen`, `play`)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        # Listeners by codec: one encoder each, and its endpoints.
        self._codecs: dict[Hashable, Fanout] = {}
        self._stop_ticks: Callable[[], None] | None = None
        self._playing: tuple[Path, Pcm] | None = None
        self._offset = 0
        self._next: asyncio.Task[tuple[Path, Pcm]] | None = None

    def files(self) -> list[Path]:
        try:
            entries = sorted(self.folder.iterdir())
        except OSError:
            return []
        return [p for p in entries if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]

    @property
    def listeners(self) -> int:
        return sum(len(group.endpoints) for group in self._codecs.values())

    async def play(self, endpoint: MediaEndpoint) -> None:
        """Play on `endpoint` until cancelled (the hold ends) or the endpoint closes."""
        closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

        def ended() -> None:
            if not closed.done():
                closed.set_result(None)

        leave = self.listen(endpoint, ended)
        try:
            await closed
        finally:
            leave()

    def listen(
        self, endpoint: MediaEndpoint, on_close: Callable[[], object] | None = None
    ) -> Callable[[], None]:
        """`endpoint` sends the music from the current frame on, until the returned
        function is called or the endpoint closes (then `on_close` is called)."""
        key = stream_key(endpoint)
        group = self._codecs.get(key)
        if group is None:
            group = self._codecs[key] = Fanout.of(endpoint, MUSIC_RATE)
        group.add(endpoint, on_close)
        if self._stop_ticks is None:
            self._stop_ticks = media_clock().subscribe(self._tick)
        return lambda: self._leave(key, endpoint)

    def _leave(self, key: Hashable, endpoint: MediaEndpoint) -> None:
        group = self._codecs.get(key)
        if group is None or group.endpoints.pop(endpoint, None) is None:
            return
        if not group.endpoints:
            del self._codecs[key]
            if not self._codecs:
                self._stop()

    def _stop(self) -> None:
        """Nobody listens: no more ticks, and the decoded music is let go."""
        if self._stop_ticks is not None:
            self._stop_ticks()
            self._stop_ticks = None
        if self._next is not None:
            self._next.cancel()
            self._next = None
        self._playing = None
        self._offset = 0

    def _tick(self, now: float) -> None:
        frame = self._frame()
        if frame is None:
            return
        for key, group in list(self._codecs.items()):
            for endpoint, listener in group.send(frame):
                self._leave(key, endpoint)
                if listener.on_close is not None:
                    listener.on_close()

    def _frame(self) -> Pcm | None:
        """The next 20 ms of music at MUSIC_RATE, or None while the next file loads."""
        playing = self._playing
        if playing is None or self._offset >= len(playing[1]):
            loading = self._next
            if loading is None:
                self._next = asyncio.ensure_future(self._load(None if playing is None else playing))
                return None
            if not loading.done():
                return None
            if loading.exception() is not None:
                log.error("music on hold: %s", loading.exception())
                self._next = None  # tried again at the next tick
                return None
            self._playing = playing = loading.result()
            self._offset = 0
            # The file after this one decodes while this one plays.
            self._next = asyncio.ensure_future(self._load(playing))
        pcm = playing[1][self._offset : self._offset + _FRAME]
        self._offset += _FRAME
        if len(pcm) < _FRAME:
            pcm = np.concatenate([pcm, np.zeros(_FRAME - len(pcm), dtype=np.int16)])
        return pcm

    async def _load(self, after: tuple[Path, Pcm] | None) -> tuple[Path, Pcm]:
        """The first playable file after `after` in name order, round the folder."""
        while True:
            files = self.files()
            if after is not None:
                files = [p for p in files if p > after[0]] + [p for p in files if p <= after[0]]
            for path in files:
                if after is not None and path == after[0]:
                    return after  # the folder's only playable file, round again
                try:
                    pcm = await asyncio.to_thread(read_audio, path, MUSIC_RATE)
                except AudioFileError as exc:
                    log.warning("music on hold: skipping %s: %s", path, exc)
                    continue
                if len(pcm):
                    return path, pcm
            await asyncio.sleep(_RETRY_SECONDS)
