"""Calls whose RTP has stopped: a phone that lost power or its network, or a BYE lost on
the way, would otherwise leave the call (and the trunk channel it holds) up for ever.

Every few seconds the watch reads how many RTP packets each leg of each answered call
has received (the stream meter every path feeds, relay included; the legs carried
elsewhere are asked for theirs just before: the kernel's counts come at once, media
workers' with their answer, for the next sweep); a leg whose count has
not moved for `media.timeout_seconds` ends its call with a BYE to both phones, and the
call record says `media_timeout`. A call on hold is left alone, whichever phone holds:
a held phone may rightly send nothing (RFC 3264 §8.4). A timeout of 0 turns this off.

`RtpSilence` is the sans-I/O part (counts and times in, silent legs out); `MediaTimeout`
drives it from the event loop with an `Alarm` at its `next_deadline()`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

from ipbx.media.endpoint import MediaEndpoint
from ipbx.pbx.call.model import Call, CallState, Leg
from ipbx.pbx.call.registry import CallRegistry
from ipbx.sip.transport.alarm import Alarm

log = logging.getLogger("ipbx.calls")

K = TypeVar("K")
# Directions in which a phone sends its audio (RFC 3264 §6.1): a leg whose phone said
# anything else holds or is held.
_TALKING = "sendrecv"
MEDIA_TIMEOUT = "media_timeout"
# The media worker carrying the call died (media/workers.py).
MEDIA_FAILED = "media_failed"


class RtpSilence(Generic[K]):
    """Which streams have received nothing for `timeout` seconds.

    `sweep(now, counts)` takes each stream's packet count at `now`: a count that moved
    since the last sweep restarts its stream's silence; a stream missing from `counts`
    is forgotten (it starts afresh if it comes back, as a call does after its hold).
    Sweeps come every `interval`, a quarter of the timeout (at most 5 s, at least
    0.25 s), so a dead stream is found between `timeout` and `timeout + interval`; with
    a timeout of 0 no stream is ever silent, and sweeps come every 5 s all the same, so
    that a timeout set later takes effect.
    """

    def __init__(self, timeout: float, now: float) -> None:
        self.timeout = timeout
        self._heard: dict[K, tuple[int, float]] = {}
        self._next = now + self.interval

    @property
    def interval(self) -> float:
        return max(0.25, min(5.0, self.timeout / 4)) if self.timeout > 0 else 5.0

    def next_deadline(self) -> float:
        return self._next

    def sweep(self, now: float, counts: Iterable[tuple[K, int]]) -> list[K]:
        self._next = now + self.interval
        heard: dict[K, tuple[int, float]] = {}
        silent: list[K] = []
        for key, packets in counts:
            last = self._heard.get(key)
            if last is None or last[0] != packets:
                last = (packets, now)
            elif self.timeout > 0 and now - last[1] >= self.timeout:
                silent.append(key)
            heard[key] = last
        self._heard = heard
        return silent


def on_hold(call: Call) -> bool:
    """Whether either phone holds the call: music plays to one, or the SDP a leg's phone
    last sent was not sendrecv."""
    if call.music is not None:
        return True
    return any(leg is not None and leg.direction != _TALKING for leg in (call.caller, call.callee))


def _talking(calls: Iterable[Call]) -> dict[tuple[str, str, str], Leg]:
    """The legs of answered calls not on hold, by dialog: the watch keeps these keys
    between sweeps, not the legs, so an ended call is freed at once."""
    legs: dict[tuple[str, str, str], Leg] = {}
    for call in calls:
        if call.state is not CallState.ANSWERED or on_hold(call):
            continue
        for leg in (call.caller, call.callee):
            if leg is not None and leg.dialog is not None and not leg.media.closed:
                legs[leg.dialog.key] = leg
    return legs


class MediaTimeout:
    """Ends the calls whose RTP has stopped; `timeout` is read at each sweep, so a
    reloaded configuration applies to the calls in progress."""

    def __init__(
        self,
        registry: CallRegistry,
        timeout: Callable[[], float],
        refresh: Callable[[], None],
    ) -> None:
        self.registry = registry
        self._timeout = timeout
        # What brings up the meters of legs carried elsewhere (Calls.refresh_meters).
        self._refresh = refresh
        loop = registry.endpoint.loop
        self._silence: RtpSilence[tuple[str, str, str]] = RtpSilence(timeout(), loop.time())
        self._alarm = Alarm(loop, self._ring)
        self._alarm.set(self._silence.next_deadline())

    def _ring(self, now: float) -> None:
        silence = self._silence
        silence.timeout = self._timeout()
        self._refresh()
        legs = _talking(list(self.registry.calls.values())) if silence.timeout > 0 else {}
        counts = ((key, leg.media.meter.reading().packets_received) for key, leg in legs.items())
        for key in silence.sweep(now, counts):
            leg = legs[key]
            call = leg.call
            if call.ended:
                continue
            log.warning(
                "%s: no RTP from %s for %g s; hanging up (media.timeout_seconds)",
                call.id, leg.peer, silence.timeout,
            )  # fmt: skip
            self.registry.end_from_here(leg, MEDIA_TIMEOUT)
        self._alarm.set(silence.next_deadline())

    def lost(self, endpoints: list[MediaEndpoint]) -> None:
        """End the calls whose media a lost media worker carried, with a BYE to both
        phones; the records say `media_failed`."""
        gone = set(endpoints)
        for call in list(self.registry.calls.values()):
            leg = next((g for g in (call.caller, call.callee) if g and g.media in gone), None)
            if leg is not None and not call.ended:
                log.error("%s: its media worker was lost; hanging up", call.id)
                self.registry.end_from_here(leg, MEDIA_FAILED)

    def close(self) -> None:
        self._alarm.cancel()
