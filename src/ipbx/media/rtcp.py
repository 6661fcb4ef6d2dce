"""RTCP sender/receiver reports and BYE (RFC 3550 §6.4, §6.6).

Enough for call statistics; SDES and APP packets in a compound datagram are
skipped by length rather than rejected (§6.1 lets receivers ignore them).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
# RFC 3550 §6.5.1: the CNAME item of an SDES chunk.
SDES_CNAME = 1

_COMMON = struct.Struct("!BBH")
_SR_INFO = struct.Struct("!IQIII")
_REPORT = struct.Struct("!IIIIII")


class RtcpError(ValueError):
    """A datagram that is not a well-formed RTCP compound packet."""


@dataclass(slots=True)
class ReportBlock:
    """One reception report block (RFC 3550 §6.4.1)."""

    ssrc: int
    fraction_lost: int
    packets_lost: int
    highest_sequence: int
    jitter: int
    last_sr: int
    delay_since_last_sr: int

    @classmethod
    def parse(cls, data: bytes, offset: int) -> ReportBlock:
        ssrc, lost, highest, jitter, lsr, dlsr = _REPORT.unpack_from(data, offset)
        cumulative = lost & 0xFFFFFF
        # The cumulative count is a signed 24-bit number: duplicates can make it negative.
        if cumulative & 0x800000:
            cumulative -= 1 << 24
        return cls(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr)

    def serialize(self) -> bytes:
        lost = (self.fraction_lost & 0xFF) << 24 | (self.packets_lost & 0xFFFFFF)
        return _REPORT.pack(
            self.ssrc,
            lost,
            self.highest_sequence,
            self.jitter,
            self.last_sr,
            self.delay_since_last_sr,
        )


@dataclass(slots=True)
class SenderReport:
    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: list[ReportBlock] = field(default_factory=list)

    def serialize(self) -> bytes:
        body = _SR_INFO.pack(
            self.ssrc, self.ntp_timestamp, self.rtp_timestamp, self.packet_count, self.octet_count
        )
        return _packet(RTCP_SR, len(self.reports), body + _blocks(self.reports))


@dataclass(slots=True)
class ReceiverReport:
    ssrc: int
    reports: list[ReportBlock] = field(default_factory=list)

    def serialize(self) -> bytes:
        body = struct.pack("!I", self.ssrc) + _blocks(self.reports)
        return _packet(RTCP_RR, len(self.reports), body)


@dataclass(slots=True)
class Bye:
    sources: list[int]
    reason: str = ""

    def serialize(self) -> bytes:
        body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason:
            text = self.reason.encode()[:255]
            body += bytes([len(text)]) + text
        return _packet(RTCP_BYE, len(self.sources), body)


def sdes_cname(ssrc: int, cname: str) -> bytes:
    """An SDES packet with one CNAME chunk, which every compound RTCP packet must carry
    after its report (RFC 3550 §6.1, §6.5.1)."""
    text = cname.encode()[:255]
    chunk = struct.pack("!IBB", ssrc, SDES_CNAME, len(text)) + text
    # The item list ends with a null octet, and the chunk is padded to 32 bits with more.
    chunk += bytes(4 - len(chunk) % 4)
    return _COMMON.pack(0x80 | 1, RTCP_SDES, len(chunk) // 4) + chunk


RtcpPacket = SenderReport | ReceiverReport | Bye


def parse_compound(data: bytes) -> list[RtcpPacket]:
    """Parse every SR, RR and BYE in a compound RTCP datagram (RFC 3550 §6.1)."""
    packets: list[RtcpPacket] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < _COMMON.size:
            raise RtcpError("truncated RTCP header")
        first, packet_type, words = _COMMON.unpack_from(data, offset)
        if first >> 6 != 2:
            raise RtcpError(f"RTCP version {first >> 6} is not 2")
        end = offset + 4 * (words + 1)
        if end > len(data):
            raise RtcpError("RTCP length runs past the datagram")
        count = first & 0x1F
        # §6.4.1: only the last packet of a compound may carry padding.
        body_end = end - data[end - 1] if first & 0x20 else end
        body = data[offset + 4 : body_end]
        parsed = _parse_one(packet_type, count, body)
        if parsed is not None:
            packets.append(parsed)
        offset = end
    return packets


def _parse_one(packet_type: int, count: int, body: bytes) -> RtcpPacket | None:
    try:
        if packet_type == RTCP_SR:
            ssrc, ntp, rtp_ts, packets, octets = _SR_INFO.unpack_from(body)
            return SenderReport(ssrc, ntp, rtp_ts, packets, octets, _parse_blocks(body, 24, count))
        if packet_type == RTCP_RR:
            (ssrc,) = struct.unpack_from("!I", body)
            return ReceiverReport(ssrc, _parse_blocks(body, 4, count))
        if packet_type == RTCP_BYE:
            sources = list(struct.unpack_from(f"!{count}I", body))
            reason = b""
            if len(body) > 4 * count:
                length = body[4 * count]
                reason = body[4 * count + 1 : 4 * count + 1 + length]
            return Bye(sources, reason.decode("utf-8", "replace"))
    except struct.error as exc:
        raise RtcpError(f"truncated RTCP packet type {packet_type}") from exc
    return None


def _parse_blocks(body: bytes, offset: int, count: int) -> list[ReportBlock]:
    return [ReportBlock.parse(body, offset + i * _REPORT.size) for i in range(count)]


def _blocks(reports: list[ReportBlock]) -> bytes:
    return b"".join(block.serialize() for block in reports)


def _packet(packet_type: int, count: int, body: bytes) -> bytes:
    body += bytes(-len(body) % 4)
    return _COMMON.pack(0x80 | count, packet_type, len(body) // 4) + body
