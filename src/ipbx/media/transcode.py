"""Transcoding between two call legs that share no codec.

A Transcoder turns the RTP payloads of one codec into payloads of another:
decode, resample between the two PCM rates (FFmpeg's swresample), cut into
packets of the destination's ptime, encode. Packet boundaries do not line up
(a 30 ms packet in may make one or two 20 ms packets out), so each input gives
zero or more payloads. The endpoint writes the RTP headers; `timestamp_step`
is what each output payload adds to the RTP timestamp.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ipbx.media.codecs import Codec, Pcm, create_decoder, create_encoder, pcm_rate
from ipbx.media.codecs.pyav import audio_frame, frames_pcm

# RFC 3551 §4.5: 20 ms is the default packetisation.
PTIME_MS = 20


class Resampler:
    """Stateful mono int16 resampling between two PCM rates (FFmpeg's swresample), for
    audio cut in consecutive chunks. Every chunk comes out exactly as long as the rates
    say (cumulatively, n ms in, n ms out): the filter holds back and releases a sample
    or two at will, which would make a 20 ms packet now and then wait for the next one."""

    def __init__(self, src_rate: int, dst_rate: int) -> None:
        import av  # on first use (see codecs/pyav.py)

        self.src_rate = src_rate
        self.dst_rate = dst_rate
        self._resampler = (
            None
            if src_rate == dst_rate
            else av.AudioResampler(format="s16", layout="mono", rate=dst_rate)
        )
        self._taken = 0
        self._given = 0

    def resample(self, pcm: Pcm) -> Pcm:
        if self._resampler is None or not len(pcm):
            return pcm
        out = frames_pcm(self._resampler.resample(audio_frame(pcm, self.src_rate)))
        self._taken += len(pcm)
        want = self._taken * self.dst_rate // self.src_rate - self._given
        if len(out) < want:
            # Held back by the filter: stand in with the last sample (or silence at the
            # start); the real samples come out later and are trimmed below.
            fill = out[-1] if len(out) else 0
            out = np.concatenate([out, np.full(want - len(out), fill, dtype=np.int16)])
        elif len(out) > want:
            out = out[:want]
        self._given += want
        return out


class Packetizer:
    """PCM at the codec's rate in, encoded payloads of `ptime_ms` out; the remainder
    waits for the next call. `timestamp_step` is what each payload adds to the RTP
    timestamp (the RTP clock, not the PCM rate: they differ for G.722, RFC 3551 §4.5.2)."""

    def __init__(
        self,
        codec: Codec,
        fmtp: Mapping[str, str] | None = None,
        ptime_ms: int = PTIME_MS,
        rate: int | None = None,
    ) -> None:
        # `rate`: the audio's own rate, which a codec that can run at it takes.
        self._encoder = create_encoder(codec, fmtp, rate)
        self.pcm_rate = self._encoder.pcm_rate
        self.packet_samples = self.pcm_rate * ptime_ms // 1000
        self.timestamp_step = codec.samples_per_frame(ptime_ms)
        self._pending = np.zeros(0, dtype=np.int16)

    @property
    def pending(self) -> int:
        """Samples waiting for the rest of their packet."""
        return len(self._pending)

    def discard(self) -> None:
        """Forget the samples waiting: what comes next does not follow them."""
        self._pending = self._pending[:0]

    def packets(self, pcm: Pcm) -> list[bytes]:
        if not len(self._pending) and len(pcm) == self.packet_samples:
            # A frame in, a packet out: every packet of a transcoder at equal ptimes.
            return [self._encoder.encode(pcm)]
        pending = np.concatenate([self._pending, pcm])
        whole = len(pending) - len(pending) % self.packet_samples
        self._pending = pending[whole:]
        packets = pending[:whole].reshape(-1, self.packet_samples)
        return [self._encoder.encode(packet) for packet in packets]


class Transcoder:
    """Payloads of one codec in, payloads of another out, in arrival order (there is no
    jitter buffer here: see bridge.transcode). `decode` gives a payload's audio at the
    encoder's rate, `encode` cuts audio into the destination's packets."""

    def __init__(
        self,
        src: Codec,
        dst: Codec,
        ptime_ms: int = PTIME_MS,
        dst_fmtp: Mapping[str, str] | None = None,
    ) -> None:
        # Each side at the other's rate where it can run at it (Opus): no resampling.
        self.packetizer = Packetizer(dst, dst_fmtp, ptime_ms, pcm_rate(src))
        self._decoder = create_decoder(src, self.packetizer.pcm_rate)
        self.src_rate = self._decoder.pcm_rate
        self.dst_rate = self.packetizer.pcm_rate
        self._resampler = Resampler(self.src_rate, self.dst_rate)

    def decode(self, payload: bytes) -> Pcm:
        """A payload's audio at `dst_rate`; an empty payload is a lost packet (see Decoder)."""
        return self._resampler.resample(self._decoder.decode(payload))

    def recover(self, payload: bytes, samples: int) -> Pcm:
        """The audio (at `dst_rate`) of the `samples` (at `src_rate`) before `payload`,
        lost on the way, from the redundancy it carries (Decoder.recover)."""
        return self._resampler.resample(self._decoder.recover(payload, samples))

    def encode(self, pcm: Pcm) -> list[bytes]:
        return self.packetizer.packets(pcm)

    def transcode(self, payload: bytes) -> list[bytes]:
        """Payloads for one source payload."""
        return self.encode(self.decode(payload))
