"""The digits a phone sends on one leg, however it sends them: RFC 4733 telephone-events,
or DTMF tones in its audio (media/inband.py) until it shows it sends events, so that a
phone sending both is heard once."""

from __future__ import annotations

import logging

from ipbx.media.codecs import Pcm
from ipbx.media.dtmf import DtmfError, DtmfReceiver
from ipbx.media.inband import RATE as INBAND_RATE
from ipbx.media.inband import InbandDetector
from ipbx.media.rtp import RtpPacket
from ipbx.media.transcode import Resampler

log = logging.getLogger("ipbx.media")


class DigitListener:
    def __init__(self) -> None:
        self._events = DtmfReceiver()
        self._tones: InbandDetector | None = InbandDetector()
        self._resampler: Resampler | None = None

    @property
    def hears_tones(self) -> bool:
        """Whether the audio still needs decoding for tones."""
        return self._tones is not None

    def event(self, packet: RtpPacket) -> list[str]:
        """The digits a telephone-event packet completes; tones are not listened for
        from now on."""
        self._tones = self._resampler = None
        try:
            return self._events.receive(packet.timestamp, packet.payload)
        except DtmfError as exc:
            log.debug("dropping malformed telephone-event: %s", exc)
            return []

    def audio(self, pcm: Pcm, rate: int) -> list[str]:
        """The digits whose tones complete in this decoded audio at `rate` Hz."""
        if self._tones is None:
            return []
        if rate != INBAND_RATE:
            if self._resampler is None or self._resampler.src_rate != rate:
                self._resampler = Resampler(rate, INBAND_RATE)
            pcm = self._resampler.resample(pcm)
        return self._tones.feed(pcm)
