"""One audio stream sent to many endpoints: encoded once per codec, sent as each one's own RTP.

Music on hold (moh.py) and a conference's shared mix (mixer.py) send the same audio to
many listeners. Listeners who share a codec (name, clock rate and the format parameters
they asked for) share one `Fanout`: each 20 ms frame is resampled and encoded once, and
every endpoint sends the payload with its own SSRC, sequence number, timestamp and
SRTP. A listener joins at the current frame, as a radio is joined.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Hashable, Mapping

from ipbx.media.codecs import Codec, CodecError, Encoder, Pcm, create_encoder
from ipbx.media.endpoint import PTIME_MS, MediaEndpoint, MediaError
from ipbx.media.rtp import TIMESTAMP_MOD
from ipbx.media.transcode import Resampler


def stream_key(endpoint: MediaEndpoint) -> tuple[Hashable, ...]:
    """What listeners must have in common to share one encoded stream."""
    codec = endpoint.codec
    if codec is None or endpoint.closed:
        raise MediaError("a shared stream needs an open endpoint with a codec")
    return codec.name.lower(), codec.clock_rate, tuple(sorted(endpoint.fmtp.items()))


class Listener:
    """One endpoint's place in its own RTP stream: the timestamp of its next packet."""

    __slots__ = ("marker", "on_close", "timestamp")

    def __init__(self, timestamp: int, on_close: Callable[[], object] | None) -> None:
        self.timestamp = timestamp
        self.on_close = on_close
        # RFC 3551 §4.1: the marker bit flags the first packet of a talkspurt.
        self.marker = True


class Fanout:
    """The listeners who share one codec, its encoder, and the resampling to its rate from
    the `rate` the audio comes at."""

    def __init__(self, codec: Codec, fmtp: Mapping[str, str], rate: int) -> None:
        try:
            self._encoder: Encoder = create_encoder(codec, fmtp, rate)
        except CodecError as exc:
            raise MediaError(f"cannot send {codec.name}: {exc}") from exc
        self.codec = codec
        self.fmtp = fmtp
        self._resampler = Resampler(rate, self._encoder.pcm_rate)
        self._step = codec.samples_per_frame(PTIME_MS)
        self.endpoints: dict[MediaEndpoint, Listener] = {}

    @classmethod
    def of(cls, endpoint: MediaEndpoint, rate: int) -> Fanout:
        """The shared stream of `endpoint`'s codec, for audio coming at `rate`."""
        return cls(endpoint._require_codec(), endpoint.fmtp, rate)

    def add(self, endpoint: MediaEndpoint, on_close: Callable[[], object] | None = None) -> None:
        now = asyncio.get_running_loop().time()
        self.endpoints[endpoint] = Listener(endpoint.timestamp_at(now), on_close)
        # What the phone sends meanwhile is only listened to for digits: on the clock.
        endpoint.read_on_clock()

    def send(
        self, frame: Pcm, own: Mapping[MediaEndpoint, bytes] | None = None
    ) -> list[tuple[MediaEndpoint, Listener]]:
        """Encode `frame` once and send it on every endpoint but those given a payload of
        their `own`; the closed endpoints (no longer sent to; the caller removes them)."""
        own = own or {}
        payload = None
        if len(own) < len(self.endpoints):
            payload = self._encoder.encode(self._resampler.resample(frame))
        closed = []
        step = self._step
        for endpoint, listener in self.endpoints.items():
            if endpoint.closed:
                closed.append((endpoint, listener))
                continue
            data = own.get(endpoint, payload)
            if data is not None:
                endpoint.send_audio(data, listener.timestamp, listener.marker)
            listener.timestamp = (listener.timestamp + step) % TIMESTAMP_MOD
            listener.marker = False
        return closed
