"""Playout: one received RTP stream turned into audio at the playout clock.

The stream goes through its own adaptive jitter buffer (jitter.py) and decoder, so
reordered and late packets land in their place and lost ones are concealed: by the
codec's own PLC where it has one (Opus), otherwise by repeating the last frame with a
falling gain (after ITU-T G.711 Appendix I, which also mutes after 60 ms: the buffer's
`plc_limit_ms`). The audio comes out resampled to the rate the consumer asks for.
Used wherever ipbx plays a stream out: recording, conferences.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from ipbx.media.codecs import Codec, Pcm, create_decoder
from ipbx.media.jitter import Frame, JitterBuffer, JitterConfig
from ipbx.media.rtp import RtpPacket, media_packet
from ipbx.media.transcode import Resampler

# RFC 3551 §4.5: the default packetisation.
PTIME_MS = 20
# At least 40 ms of buffering (the jitter buffer's own floor is one 20 ms frame): a
# server's playout also absorbs its own event-loop stalls (call set-up bursts), and a
# buffer that starts one frame short grows by a concealed frame and shrinks again a
# second later, shifting the stream by 20 ms twice (seen in bench/ transcoding runs).
PLAYOUT_JITTER = JitterConfig(min_delay_ms=40.0)
# Gain of each successive concealed frame (1.0, 0.75, 0.5): a repeated frame fades
# instead of buzzing.
_CONCEAL_FADE = 0.25


class Playout:
    """`receive` takes the stream's datagrams (a media sink), `pull` gives the audio
    whose playout time has come, at `rate`."""

    def __init__(self, codec: Codec, rate: int, clock: Callable[[], float]) -> None:
        self.codec = codec
        self._clock = clock
        self._decoder = create_decoder(codec, rate)
        self._buffer = JitterBuffer(codec.clock_rate, PLAYOUT_JITTER)
        self._resampler = Resampler(self._decoder.pcm_rate, rate)
        self._last = np.zeros(self._decoder.pcm_rate * PTIME_MS // 1000, dtype=np.int16)
        self._run = 0

    def receive(self, data: bytes) -> None:
        packet = media_packet(data)
        if packet is not None:
            self.receive_packet(packet)

    def receive_packet(self, packet: RtpPacket) -> None:
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
