"""SDP as text (RFC 4566): a session description parsed into what ipbx reads and
changes, and written back. Lines we do not model are kept and written back in place, so
a B2BUA rewriting SDP loses nothing. The offer/answer model on top of it is the
package's own module (`ipbx.sdp`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ipbx.media.codecs import Codec

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
# RFC 3264 §8.4: RFC 2543 put a call on hold with c=0.0.0.0; we must understand it.
HOLD_ADDRESS = "0.0.0.0"
AVP, SAVP = "RTP/AVP", "RTP/SAVP"
# WebRTC's RTP over DTLS-SRTP (RFC 5764 §8, RFC 5124 for the feedback profile).
SAVPF = "UDP/TLS/RTP/SAVPF"
DTLS_PROTOS = (SAVPF, "UDP/TLS/RTP/SAVP")
# What a SIP phone's audio stream may be; a WebRTC leg's is one of DTLS_PROTOS.
AUDIO_PROTOS = (AVP, SAVP)
PTIME_MS = 20
# RFC 4733 §3.2: events 0-15 are DTMF, 16 hook flash.
DTMF_EVENTS = "0-16"

# RFC 4566 §5: lines must appear in this order; t and r share a rank so
# repeated "t= r=" groups keep their pairing. Unknown types go just before a=.
_SESSION_ORDER = {k: i for i, k in enumerate(["v", "o", "s", "i", "u", "e", "p", "c", "b"])}
_SESSION_ORDER |= {"t": 9, "r": 9, "z": 10, "k": 11, "a": 13}
_MEDIA_ORDER = {"m": 0, "i": 1, "c": 2, "b": 3, "k": 4, "a": 6}
_UNKNOWN_SESSION_RANK = 12
_UNKNOWN_MEDIA_RANK = 5


class SdpError(ValueError):
    """Unusable SDP, with the SIP status a UA should answer with.

    400 for malformed SDP; 488 Not Acceptable Here (RFC 3261 §21.4.26) when it
    parses but there is nothing we can accept.
    """

    def __init__(self, message: str, status_code: int = 400) -> None:
        super().__init__(message)
        self.status_code = status_code


@dataclass(slots=True)
class Origin:
    username: str
    session_id: str
    version: int
    net_type: str
    addr_type: str
    address: str

    @classmethod
    def parse(cls, value: str) -> Origin:
        fields = value.split()
        if len(fields) != 6 or not fields[2].isdigit():
            raise SdpError(f"malformed o= line: {value!r}")
        return cls(fields[0], fields[1], int(fields[2]), fields[3], fields[4], fields[5])

    def __str__(self) -> str:
        return (
            f"{self.username} {self.session_id} {self.version} "
            f"{self.net_type} {self.addr_type} {self.address}"
        )


@dataclass(slots=True)
class Connection:
    address: str
    addr_type: str = "IP4"
    net_type: str = "IN"

    @classmethod
    def parse(cls, value: str) -> Connection:
        fields = value.split()
        if len(fields) != 3:
            raise SdpError(f"malformed c= line: {value!r}")
        return cls(fields[2], fields[1], fields[0])

    @classmethod
    def for_address(cls, address: str) -> Connection:
        return cls(address, _addr_type(address))

    def __str__(self) -> str:
        return f"{self.net_type} {self.addr_type} {self.address}"


@dataclass(slots=True)
class Attribute:
    name: str
    value: str | None = None

    @classmethod
    def parse(cls, text: str) -> Attribute:
        name, colon, value = text.partition(":")
        return cls(name, value if colon else None)

    def __str__(self) -> str:
        return self.name if self.value is None else f"{self.name}:{self.value}"


@dataclass(frozen=True, slots=True)
class RtpMap:
    """a=rtpmap:<pt> <encoding>/<clock rate>[/<channels>] (RFC 4566 §6)."""

    name: str
    clock_rate: int
    channels: int = 1

    def matches(self, codec: Codec) -> bool:
        return (self.name.lower(), self.clock_rate, self.channels) == (
            codec.name.lower(),
            codec.clock_rate,
            codec.channels,
        )


@dataclass(slots=True)
class Media:
    """One m= section."""

    media: str
    port: int
    proto: str
    formats: list[str]
    port_count: int | None = None
    connection: Connection | None = None
    attributes: list[Attribute] = field(default_factory=list)
    # i=, b=, k= and unknown line types, in their original order.
    lines: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def parse_m_line(cls, value: str) -> Media:
        fields = value.split()
        if len(fields) < 4:
            raise SdpError(f"malformed m= line: {value!r}")
        port_text, _, count_text = fields[1].partition("/")
        if not port_text.isdigit() or int(port_text) > 65535 or not (count_text or "1").isdigit():
            raise SdpError(f"bad port in m= line: {value!r}")
        count = int(count_text) if count_text else None
        return cls(fields[0], int(port_text), fields[2], fields[3:], count)

    def attribute(self, name: str) -> str | None:
        """The value of the first a=<name>, or None."""
        return next((a.value for a in self.attributes if a.name == name), None)

    def rtpmaps(self) -> dict[int, RtpMap]:
        maps: dict[int, RtpMap] = {}
        for attribute in self.attributes:
            if attribute.name == "rtpmap" and attribute.value:
                pt, _, encoding = attribute.value.partition(" ")
                parts = encoding.strip().split("/")
                if not pt.isdigit() or len(parts) < 2 or not parts[1].isdigit():
                    raise SdpError(f"malformed a=rtpmap:{attribute.value}")
                channels = int(parts[2]) if len(parts) > 2 and parts[2].isdigit() else 1
                maps[int(pt)] = RtpMap(parts[0], int(parts[1]), channels)
        return maps

    def payload_types(self) -> list[int]:
        return [int(f) for f in self.formats if f.isdigit()]

    def fmtp(self, payload_type: int) -> str | None:
        prefix = f"{payload_type} "
        for attribute in self.attributes:
            if attribute.name == "fmtp" and attribute.value and attribute.value.startswith(prefix):
                return attribute.value[len(prefix) :].strip()
        return None

    def format_parameters(self, payload_type: int) -> dict[str, str]:
        """The a=fmtp of a format as parameters (`useinbandfec=1; stereo=0` form, the
        one RFC 7587 and most codecs use); a parameter without `=` maps to ""."""
        text = self.fmtp(payload_type) or ""
        pairs = (item.partition("=") for item in text.split(";") if item.strip())
        return {name.strip().lower(): value.strip() for name, _, value in pairs}

    def set_direction(self, direction: str) -> None:
        self.attributes = [a for a in self.attributes if a.name not in DIRECTIONS]
        self.attributes.append(Attribute(direction))

    def copy(self) -> Media:
        """A copy whose lists can be changed without touching this one; the items
        themselves are replaced, never changed, by the code here."""
        return replace(
            self,
            formats=list(self.formats),
            attributes=list(self.attributes),
            lines=list(self.lines),
        )

    def own_direction(self) -> str | None:
        return next((a.name for a in self.attributes if a.name in DIRECTIONS), None)

    def serialize(self) -> list[str]:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        lines = [(0, "m", " ".join([self.media, port, self.proto, *self.formats]))]
        if self.connection is not None:
            lines.append((_MEDIA_ORDER["c"], "c", str(self.connection)))
        lines += [(_MEDIA_ORDER.get(k, _UNKNOWN_MEDIA_RANK), k, v) for k, v in self.lines]
        lines += [(_MEDIA_ORDER["a"], "a", str(a)) for a in self.attributes]
        return _ordered(lines)


@dataclass(slots=True)
class SessionDescription:
    origin: Origin
    name: str = "-"
    connection: Connection | None = None
    attributes: list[Attribute] = field(default_factory=list)
    media: list[Media] = field(default_factory=list)
    # t=, r=, i=, u=, e=, p=, b=, z=, k= and unknown types, in original order.
    lines: list[tuple[str, str]] = field(default_factory=list)

    def copy(self) -> SessionDescription:
        """A copy safe to rewrite (cheaper than deepcopy, which cost a B2BUA ~9% of its
        call-setup time)."""
        return replace(
            self,
            origin=replace(self.origin),
            attributes=list(self.attributes),
            media=[m.copy() for m in self.media],
            lines=list(self.lines),
        )

    @classmethod
    def parse(cls, data: str | bytes) -> SessionDescription:
        if isinstance(data, bytes):
            try:
                data = data.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise SdpError(f"SDP is not UTF-8: {exc}") from exc
        # RFC 4566 §5 mandates CRLF, but also asks parsers to accept a bare LF.
        lines = [line.rstrip("\r") for line in data.split("\n") if line.strip()]
        if not lines or lines[0] != "v=0":
            raise SdpError("SDP must start with v=0")
        session: SessionDescription | None = None
        name = "-"
        for number, line in enumerate(lines[1:], start=2):
            kind, equals, value = line.partition("=")
            if not equals or len(kind) != 1 or not kind.isalpha():
                raise SdpError(f"SDP line {number} is not <type>=<value>: {line!r}")
            if session is None:
                if kind == "s":
                    name = value
                elif kind == "o":
                    session = cls(Origin.parse(value), name)
                else:
                    raise SdpError(f"SDP line {number}: o= must come before {kind}=")
                continue
            session._add_line(kind, value)
        if session is None:
            raise SdpError("SDP has no o= line")
        return session

    def _add_line(self, kind: str, value: str) -> None:
        current = self.media[-1] if self.media else None
        if kind == "m":
            self.media.append(Media.parse_m_line(value))
        elif kind == "s" and current is None:
            self.name = value
        elif kind == "c":
            if current is None:
                self.connection = Connection.parse(value)
            else:
                current.connection = Connection.parse(value)
        elif kind == "a":
            (current.attributes if current else self.attributes).append(Attribute.parse(value))
        else:
            (current.lines if current else self.lines).append((kind, value))

    def serialize(self) -> str:
        lines = [(0, "v", "0"), (1, "o", str(self.origin)), (2, "s", self.name)]
        if self.connection is not None:
            lines.append((_SESSION_ORDER["c"], "c", str(self.connection)))
        lines += [(_SESSION_ORDER.get(k, _UNKNOWN_SESSION_RANK), k, v) for k, v in self.lines]
        lines += [(_SESSION_ORDER["a"], "a", str(a)) for a in self.attributes]
        text = _ordered(lines)
        for media in self.media:
            text += media.serialize()
        return "\r\n".join(text) + "\r\n"

    def __bytes__(self) -> bytes:
        return self.serialize().encode()

    @property
    def audio(self) -> Media | None:
        """The first audio stream that is not disabled (port 0)."""
        return next((m for m in self.media if m.media == "audio" and m.port != 0), None)

    def connection_for(self, media: Media) -> Connection | None:
        return media.connection or self.connection


def _ordered(lines: list[tuple[int, str, str]]) -> list[str]:
    return [f"{kind}={value}" for _, kind, value in sorted(lines, key=lambda line: line[0])]


def _addr_type(address: str) -> str:
    # Only an IPv6 literal holds a colon; an IPv4 literal or a host name (RFC 4566 §5.7
    # allows FQDNs) is IP4.
    return "IP6" if ":" in address else "IP4"
