"""Music on hold: the audio files of a folder, in name order, round and round.

The folder is read again on every round, so files added or removed while a caller
waits are picked up without a restart. A file that cannot be decoded is skipped with a
warning; a folder with nothing playable leaves the caller in silence rather than
spinning, and tries again a second later.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from ipbx.media.endpoint import MediaEndpoint, MediaError

log = logging.getLogger(__name__)

# What FFmpeg (PyAV) decodes that people put in a music-on-hold folder.
AUDIO_SUFFIXES = frozenset({".wav", ".mp3", ".ogg", ".opus", ".flac", ".m4a"})
_RETRY_SECONDS = 1.0


class MusicOnHold:
    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def files(self) -> list[Path]:
        try:
            entries = sorted(self.folder.iterdir())
        except OSError:
            return []
        return [p for p in entries if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]

    async def play(self, endpoint: MediaEndpoint) -> None:
        """Play on `endpoint` until cancelled (the hold ends) or the endpoint closes."""
        while True:
            played = False
            for path in self.files():
                try:
                    await endpoint.play(path)
                except MediaError as exc:
                    if endpoint.closed:
                        return
                    log.warning("music on hold: skipping %s: %s", path, exc)
                    continue
                played = True
            if endpoint.closed:
                return
            if not played:
                await asyncio.sleep(_RETRY_SECONDS)
