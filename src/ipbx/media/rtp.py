"""RTP packets (RFC 3550 §5.1) and 16-bit sequence-number arithmetic.

Only parse() and serialize() live here; statistics, jitter buffering and
codecs are separate modules, as in aiortc.
"""

from __future__ import annotations

import logging
import struct
from dataclasses import dataclass, field

log = logging.getLogger(__name__)

RTP_VERSION = 2
HEADER = struct.Struct("!BBHII")
SEQ_MOD = 1 << 16
TIMESTAMP_MOD = 1 << 32

# RFC 5761 §4: with RTP and RTCP multiplexed on one port, RTCP packet types
# 200-204 (SR, RR, SDES, BYE, APP) show up as "payload types" 72-76 once the
# marker bit is masked off; RTP must therefore never use those values.
_RTCP_MUX_RANGE = range(72, 77)


class RtpError(ValueError):
    """A datagram that is not a well-formed RTP packet."""


@dataclass(slots=True)
class RtpPacket:
    payload_type: int
    sequence_number: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: list[int] = field(default_factory=list)
    # RFC 3550 §5.3.1: the header extension is opaque to us; it is kept so a
    # parsed packet serializes back byte for byte.
    extension_profile: int | None = None
    extension: bytes = b""
    # Total padding octets including the trailing count octet (§5.1, P bit).
    padding: int = 0

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < HEADER.size:
            raise RtpError(f"RTP packet too short: {len(data)} bytes")
        first, second, seq, timestamp, ssrc = HEADER.unpack_from(data)
        if first == RTP_VERSION << 6:
            # No padding, extension or CSRC: nearly every packet, read in a third the time.
            payload = bytes(data[HEADER.size :])
            return cls(second & 0x7F, seq, timestamp, ssrc, payload, bool(second & 0x80))
        if first >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {first >> 6} is not 2")
        offset = HEADER.size
        csrc_count = first & 0x0F
        end = len(data)
        padding = 0
        if first & 0x20:
            padding = data[-1]
            if padding == 0:
                raise RtpError("RTP padding count is zero")
            end -= padding
        if offset + 4 * csrc_count > end:
            raise RtpError("RTP CSRC list runs past the packet")
        csrc = list(struct.unpack_from(f"!{csrc_count}I", data, offset))
        offset += 4 * csrc_count
        extension_profile = None
        extension = b""
        if first & 0x10:
            if offset + 4 > end:
                raise RtpError("RTP extension header runs past the packet")
            extension_profile, words = struct.unpack_from("!HH", data, offset)
            offset += 4
            if offset + 4 * words > end:
                raise RtpError("RTP extension runs past the packet")
            extension = bytes(data[offset : offset + 4 * words])
            offset += 4 * words
        if offset > end:
            raise RtpError("RTP padding is longer than the payload")
        return cls(
            payload_type=second & 0x7F,
            sequence_number=seq,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[offset:end]),
            marker=bool(second & 0x80),
            csrc=csrc,
            extension_profile=extension_profile,
            extension=extension,
            padding=padding,
        )

    def serialize(self) -> bytes:
        if len(self.extension) % 4:
            raise RtpError("RTP extension length must be a multiple of 4 octets")
        has_extension = self.extension_profile is not None
        first = (
            RTP_VERSION << 6
            | (0x20 if self.padding else 0)
            | (0x10 if has_extension else 0)
            | len(self.csrc)
        )
        second = (0x80 if self.marker else 0) | self.payload_type
        parts = [
            HEADER.pack(first, second, self.sequence_number, self.timestamp, self.ssrc),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.extension_profile is not None:
            parts.append(struct.pack("!HH", self.extension_profile, len(self.extension) // 4))
            parts.append(self.extension)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def fixed_header(
    payload_type: int, sequence_number: int, timestamp: int, ssrc: int, marker: bool
) -> bytes:
    """The header of a packet with no padding, extension or CSRC (RFC 3550 §5.1), packed
    straight: the packets ipbx sends of its own, with no RtpPacket made for each."""
    second = 0x80 | payload_type if marker else payload_type
    return HEADER.pack(RTP_VERSION << 6, second, sequence_number, timestamp, ssrc)


def is_rtcp(data: bytes) -> bool:
    """Tell RTCP from RTP on a muxed port (RFC 5761 §4)."""
    return len(data) >= 2 and (data[1] & 0x7F) in _RTCP_MUX_RANGE


def media_packet(data: bytes) -> RtpPacket | None:
    """The RTP packet in a datagram of a media socket; None for RTCP sent to the RTP
    port (rtcp-mux, RFC 5761) and for a malformed packet, which are dropped."""
    if is_rtcp(data):
        return None
    try:
        return RtpPacket.parse(data)
    except RtpError as exc:
        log.debug("dropping malformed RTP: %s", exc)
        return None


def seq_add(seq: int, delta: int) -> int:
    return (seq + delta) % SEQ_MOD


def seq_diff(a: int, b: int) -> int:
    """Signed distance a - b, taking the 16-bit wrap into account (RFC 3550 App. A.1)."""
    return (a - b + SEQ_MOD // 2) % SEQ_MOD - SEQ_MOD // 2


def seq_newer(a: int, b: int) -> bool:
    """True when a comes after b in sequence order, across the wrap."""
    return seq_diff(a, b) > 0
