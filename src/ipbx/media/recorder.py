"""Call recording: what each side says, decoded at the playout clock, into one WAV file.

Each side is an RTP stream as it arrives at ipbx. It goes through its own adaptive
jitter buffer (jitter.py) and decoder, so reordered and late packets land in their
place and lost ones are concealed: by the codec's own PLC where it has one (Opus), by
repeating the last frame with a falling gain otherwise (after ITU-T G.711 Appendix I,
which also mutes after 60 ms: the buffer's `plc_limit_ms`). The file's timeline is
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

from ipbx.media.codecs import Codec, Pcm, create_decoder
from ipbx.media.jitter import Frame, JitterBuffer
from ipbx.media.rtp import RtpError, RtpPacket, is_rtcp
from ipbx.media.transcode import Resampler
from ipbx.media.wav import WavWriter

# RFC 3551 §4.5: the default packetisation; the tick that writes the file.
PTIME_MS = 20
# Gain of each successive concealed frame (1.0, 0.75, 0.5): a repeated frame fades
# instead of buzzing.
_CONCEAL_FADE = 0.25
# A side never holds more decoded audio than this ahead of the file.
_MAX_AHEAD_MS = 100


class PlayoutSide:
    """One received stream: `receive` takes its datagrams (a media sink), `pull` gives
    the audio whose playout time has come, at the recording's rate."""

    def __init__(self, codec: Codec, rate: int, clock: Callable[[], float]) -> None:
        self.codec = codec
        self._clock = clock
        self._decoder = create_decoder(codec)
        self._buffer = JitterBuffer(codec.clock_rate)
        self._resampler = Resampler(self._decoder.pcm_rate, rate)
        self._last = np.zeros(self._decoder.pcm_rate * PTIME_MS // 1000, dtype=np.int16)
        self._run = 0

    def receive(self, data: bytes) -> None:
        if is_rtcp(data):
            return
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            return
        if packet.payload_type == self.codec.payload_type:
            self._buffer.push(packet, self._clock())

    def pull(self, now: float) -> list[Pcm]:
        out: list[Pcm] = []
        while (item := self._buffer.pop(now)) is not None:
            if isinstance(item, Frame):
                pcm = self._decoder.decode(item.packet.payload)
                self._last, self._run = pcm, 0
            else:
                self._run += 1
                pcm = self._conceal() if item.conceal else np.zeros_like(self._last)
            out.append(self._resampler.resample(pcm))
        return out

    def _conceal(self) -> Pcm:
        pcm = self._decoder.decode(b"")
        if len(pcm):
            return pcm
        gain = max(0.0, 1 - _CONCEAL_FADE * (self._run - 1))
        return (self._last * gain).astype(np.int16)


class CallRecorder:
    """Record streams side by side: one WAV channel each, or `mixed` into one."""

    def __init__(
        self,
        path: str | Path,
        codecs: Sequence[Codec],
        mixed: bool = False,
        clock: Callable[[], float] | None = None,
    ) -> None:
        loop = asyncio.get_running_loop()
        self._clock = clock or loop.time
        # Narrowband calls are kept at 8 kHz; a wideband side lifts the file to 16 kHz.
        rates = [create_decoder(codec).pcm_rate for codec in codecs]
        self.rate = 16000 if max(rates) > 8000 else 8000
        self.sides = [PlayoutSide(codec, self.rate, self._clock) for codec in codecs]
        self._mixed = mixed
        self._queued = [np.zeros(0, dtype=np.int16) for _ in self.sides]
        self._writer = WavWriter(path, self.rate, channels=1 if mixed else len(self.sides))
        self.path = self._writer.path
        self._start = self._clock()
        self._written = 0
        self._task: asyncio.Task[None] | None = loop.create_task(self._run())

    def tick(self, now: float) -> None:
        """Write the audio due up to `now` (the task calls this every 20 ms)."""
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
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            self.tick(self._clock())
            self._writer.close()
        return self.path

    @property
    def seconds(self) -> float:
        return self._written / self.rate

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time()
        while True:
            due += PTIME_MS / 1000
            await asyncio.sleep(max(0.0, due - loop.time()))
            self.tick(self._clock())
