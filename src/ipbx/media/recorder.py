"""Call recording: what each side says, decoded at the playout clock, into one WAV file.

Each side is an RTP stream as it arrives at ipbx, played out through its own jitter
buffer and decoder with loss concealment (playout.py). The file's timeline is
the wall clock: every tick writes exactly the samples that elapsed, silence for a side
that has sent nothing, so the channels stay aligned and the length is the call's.

The WAV header is rewritten at every flush (wav.WavWriter), so a recording cut off by
a crash or a killed server is still a valid file of everything up to the last flush.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from ipbx.media.clock import media_clock
from ipbx.media.codecs import Codec, pcm_rate
from ipbx.media.playout import Playout
from ipbx.media.wav import WavWriter

# A side never holds more decoded audio than this ahead of the file.
_MAX_AHEAD_MS = 100


class CallRecorder:
    """Record streams side by side: one WAV channel each, or `mixed` into one."""

    def __init__(
        self,
        path: str | Path,
        codecs: Sequence[Codec],
        mixed: bool = False,
    ) -> None:
        self._clock = asyncio.get_running_loop().time
        # Narrowband calls are kept at 8 kHz; a wideband side lifts the file to 16 kHz.
        rates = [pcm_rate(codec) for codec in codecs]
        self.rate = 16000 if max(rates) > 8000 else 8000
        self.sides = [Playout(codec, self.rate, self._clock) for codec in codecs]
        self._mixed = mixed
        self._queued = [np.zeros(0, dtype=np.int16) for _ in self.sides]
        self._writer = WavWriter(path, self.rate, channels=1 if mixed else len(self.sides))
        self.path = self._writer.path
        self._start = self._clock()
        self._written = 0
        self._unsubscribe: Callable[[], None] | None = media_clock().subscribe(self.tick)

    def tick(self, now: float) -> None:
        """Write the audio due up to `now` (the media clock calls this every 20 ms)."""
        due = int((now - self._start) * self.rate) - self._written
        if due <= 0:
            return
        ahead = self.rate * _MAX_AHEAD_MS // 1000
        columns = []
        for index, side in enumerate(self.sides):
            queued = np.concatenate([self._queued[index], *side.pull(now)])
            column = queued[:due]
            rest = queued[due:]
            self._queued[index] = rest[max(0, len(rest) - ahead) :]
            columns.append(np.pad(column, (0, due - len(column))))
        if self._mixed:
            mixed = np.sum(columns, axis=0, dtype=np.int32)
            self._writer.write(np.clip(mixed, -32768, 32767).astype(np.int16))
        else:
            self._writer.write(np.stack(columns, axis=1))
        self._written += due

    def stop(self) -> Path:
        """Write what is due and close the file; safe to call twice."""
        unsubscribe, self._unsubscribe = self._unsubscribe, None
        if unsubscribe is not None:
            unsubscribe()
            self.tick(self._clock())
            self._writer.close()
        return self.path

    @property
    def recording(self) -> bool:
        """Whether the file is still being written (stop() not called yet)."""
        return self._unsubscribe is not None

    @property
    def seconds(self) -> float:
        return self._written / self.rate
