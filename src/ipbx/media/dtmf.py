"""DTMF as RTP telephone-events (RFC 4733 §2.3), sans-I/O.

The sender yields the packet sequence for one digit; the endpoint stamps
sequence numbers and SSRC and paces them. The receiver turns a stream of
event packets into one reported digit per key press.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# RFC 4733 §3.2, table 3: events 0-15 are the DTMF keys, 16 is hook flash.
EVENTS = "0123456789*#ABCD!"
_PAYLOAD = struct.Struct("!BBH")
_MAX_DURATION = 0xFFFF


class DtmfError(ValueError):
    """A malformed telephone-event payload or an unknown digit."""


@dataclass(frozen=True, slots=True)
class TelephoneEvent:
    event: int
    end: bool = False
    volume: int = 10  # -dBm0; §2.5.2.2 uses 10 as the typical level
    duration: int = 0  # timestamp units

    @classmethod
    def parse(cls, payload: bytes) -> TelephoneEvent:
        if len(payload) < _PAYLOAD.size:
            raise DtmfError(f"telephone-event payload too short: {len(payload)} bytes")
        event, flags, duration = _PAYLOAD.unpack_from(payload)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def serialize(self) -> bytes:
        flags = (0x80 if self.end else 0) | (self.volume & 0x3F)
        return _PAYLOAD.pack(self.event, flags, self.duration)

    @property
    def digit(self) -> str | None:
        return EVENTS[self.event] if self.event < len(EVENTS) else None


@dataclass(frozen=True, slots=True)
class DtmfPacket:
    """One RTP packet of an event; all packets of a digit share the timestamp."""

    marker: bool
    timestamp: int
    payload: bytes


def digit_event(digit: str) -> int:
    event = EVENTS.find(digit.upper())
    if len(digit) != 1 or event < 0:
        raise DtmfError(f"not a DTMF digit: {digit!r}")
    return event


def digit_packets(
    digit: str,
    timestamp: int,
    clock_rate: int = 8000,
    duration_ms: int = 100,
    interval_ms: int = 20,
    volume: int = 10,
) -> list[DtmfPacket]:
    """The packets for one key press (RFC 4733 §2.5.1).

    The first packet carries the marker bit (§2.5.1.2); each update grows the
    duration by one interval; the final packet is sent three times with the E
    bit (§2.5.1.4) because end packets are what receivers rely on.
    """
    event = digit_event(digit)
    step = clock_rate * interval_ms // 1000
    total = min(clock_rate * duration_ms // 1000, _MAX_DURATION)
    packets = [
        DtmfPacket(
            marker=elapsed == step,
            timestamp=timestamp,
            payload=TelephoneEvent(event, False, volume, elapsed).serialize(),
        )
        for elapsed in range(step, total, step)
    ]
    end = TelephoneEvent(event, True, volume, total).serialize()
    packets += [DtmfPacket(not packets and i == 0, timestamp, end) for i in range(3)]
    return packets


class DtmfReceiver:
    """Report each key press once.

    An event is identified by its RTP timestamp (§2.5.2.1): the three
    retransmitted end packets share it, so only the first is reported. If
    every end packet was lost, the digit is reported when the next event starts.
    """

    def __init__(self) -> None:
        self._current: int | None = None
        self._pending: TelephoneEvent | None = None

    def receive(self, timestamp: int, payload: bytes) -> list[str]:
        event = TelephoneEvent.parse(payload)
        digits: list[str] = []
        if timestamp != self._current:
            if self._pending is not None and self._pending.digit is not None:
                digits.append(self._pending.digit)
            self._current = timestamp
            self._pending = event
        if self._pending is None:
            return digits
        if event.end:
            if event.digit is not None:
                digits.append(event.digit)
            self._pending = None
        else:
            self._pending = event
        return digits


def info_digit(content_type: str, body: bytes) -> str | None:
    """The digit a SIP INFO carries: an application/dtmf-relay body (`Signal=5` and
    `Duration=160` lines, the format Cisco defined and most phones send), or an
    application/dtmf one, the key alone; None for any other body, or one holding no
    digit."""
    kind = content_type.split(";")[0].strip().lower()
    text = body.decode("utf-8", "replace")
    if kind == "application/dtmf":
        return _key(text)
    if kind == "application/dtmf-relay":
        return _signal(text)
    return None


def _signal(text: str) -> str | None:
    """The digit of an application/dtmf-relay body, from its Signal line."""
    for line in text.splitlines():
        name, _, value = line.partition("=")
        if name.strip().lower() == "signal":
            return _key(value)
    return None


def _key(value: str) -> str | None:
    """A key as SIP INFO names it. Some phones send the event number for * and #
    (10 and 11), as RFC 4733 numbers them."""
    value = value.strip().upper()
    if value.isdigit() and 10 <= int(value) < len(EVENTS):
        return EVENTS[int(value)]
    if len(value) == 1 and value in EVENTS[:16]:
        return value
    return None
