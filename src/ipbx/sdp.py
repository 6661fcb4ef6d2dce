"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for audio.

The only bridge between signalling and media: the SIP side hands SDP text
here and gets back what MediaEndpoint.set_remote() needs (address, port,
Codec, telephone-event payload type). Lines we do not model are kept and
written back in place, so a B2BUA rewriting SDP loses nothing.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from ipbx.media.codecs import NOT_AUDIO_CODECS, STATIC_FORMATS, TELEPHONE_EVENT, Codec
from ipbx.media.srtp import CryptoAttribute, CryptoError, choose_crypto

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
# RFC 3264 §6.1: the answer's direction is the offer's seen from the other side.
_MIRRORED = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
# RFC 3264 §8.4: RFC 2543 put a call on hold with c=0.0.0.0; we must understand it.
HOLD_ADDRESS = "0.0.0.0"
AUDIO_PROTOS = ("RTP/AVP", "RTP/SAVP")
AVP, SAVP = AUDIO_PROTOS
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

# Transport addresses that only make sense for the original peer: an
# anchoring B2BUA must drop them (RFC 3605 a=rtcp, RFC 8839 ICE).
_PEER_ONLY_ATTRIBUTES = frozenset(
    {
        "rtcp",
        "candidate",
        "remote-candidates",
        "end-of-candidates",
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "ice-lite",
    }
)


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


def _new_origin(address: str, session_id: int | None, version: int) -> Origin:
    # RFC 4566 §5.2 suggests an NTP timestamp; any unique number works.
    sid = random.getrandbits(62) if session_id is None else session_id
    return Origin("-", str(sid), version, "IN", _addr_type(address), address)


def _audio(sdp: SessionDescription) -> Media:
    media = sdp.audio
    if media is None:
        raise SdpError("SDP has no active audio stream", 488)
    return media


def direction(sdp: SessionDescription) -> str:
    """The effective direction of the audio stream, as its sender meant it.

    The RFC 2543 hold form c=0.0.0.0 means "send me nothing", so sendrecv
    reads as sendonly and recvonly as inactive (RFC 3264 §8.4).
    """
    return _effective_direction(sdp, _audio(sdp))


def _effective_direction(sdp: SessionDescription, media: Media) -> str:
    declared = _declared_direction(sdp, media)
    connection = sdp.connection_for(media)
    if connection is not None and connection.address == HOLD_ADDRESS:
        return {"sendrecv": "sendonly", "recvonly": "inactive"}.get(declared, declared)
    return declared


def _declared_direction(sdp: SessionDescription, media: Media) -> str:
    # RFC 3264 §5.1: a media-level attribute overrides the session-level one.
    session = next((a.name for a in sdp.attributes if a.name in DIRECTIONS), None)
    return media.own_direction() or session or "sendrecv"


def remote_address(sdp: SessionDescription) -> tuple[str, int]:
    """Where to send the audio stream's RTP."""
    media = _audio(sdp)
    connection = sdp.connection_for(media)
    if connection is None:
        raise SdpError("audio stream has no c= line (RFC 4566 §5.7)")
    return connection.address, media.port


def make_offer(
    address: str,
    port: int,
    codecs: Sequence[Codec],
    dtmf: bool = True,
    direction: str = "sendrecv",
    session_id: int | None = None,
    version: int = 0,
) -> SessionDescription:
    """An audio offer listing `codecs` in order of preference (RFC 3264 §5)."""
    if direction not in DIRECTIONS:
        raise ValueError(f"unknown SDP direction {direction!r}")
    if not codecs:
        raise ValueError("an offer needs at least one codec")
    offered = list(codecs)
    if dtmf:
        taken = {codec.payload_type for codec in codecs}
        free = next(pt for pt in [TELEPHONE_EVENT.payload_type, *range(96, 128)] if pt not in taken)
        offered.append(replace(TELEPHONE_EVENT, payload_type=free))
    media = _audio_media(port, offered, direction)
    return SessionDescription(
        origin=_new_origin(address, session_id, version),
        connection=Connection.for_address(address),
        media=[media],
        lines=[("t", "0 0")],
    )


def _audio_media(
    port: int,
    codecs: Sequence[Codec],
    direction: str,
    crypto: Sequence[CryptoAttribute] = (),
) -> Media:
    media = Media("audio", port, SAVP if crypto else AVP, [str(c.payload_type) for c in codecs])
    for codec in codecs:
        # RFC 3264 §5.1 recommends rtpmap even for static payload types.
        channels = f"/{codec.channels}" if codec.channels != 1 else ""
        rtpmap = f"{codec.payload_type} {codec.name}/{codec.clock_rate}{channels}"
        media.attributes.append(Attribute("rtpmap", rtpmap))
        if codec.name == TELEPHONE_EVENT.name:
            media.attributes.append(Attribute("fmtp", f"{codec.payload_type} {DTMF_EVENTS}"))
    media.attributes += [Attribute("crypto", str(c)) for c in crypto]
    media.attributes += [Attribute("ptime", str(PTIME_MS)), Attribute(direction)]
    return media


def crypto_attributes(media: Media) -> list[CryptoAttribute]:
    """The a=crypto lines we can use; ones that fail to parse are skipped, as RFC 4568
    §5.1.2 lets an answerer ignore attributes it does not understand."""
    found = []
    for attribute in media.attributes:
        if attribute.name == "crypto" and attribute.value:
            try:
                found.append(CryptoAttribute.parse(attribute.value))
            except CryptoError:
                continue
    return found


def srtp_keys(
    ours: SessionDescription, theirs: SessionDescription
) -> tuple[CryptoAttribute, CryptoAttribute] | None:
    """(local, remote) SDES keys of the audio stream, or None for plain RTP: ours is our
    offer and theirs their answer, or ours our answer and theirs their offer (RFC 4568
    §7.1: both sides keep the tag and suite, each sends with its own key)."""
    media = _audio(theirs)
    if media.proto != SAVP:
        return None
    local = crypto_attributes(_audio(ours))
    for remote in crypto_attributes(media):
        match = next((c for c in local if (c.tag, c.suite) == (remote.tag, remote.suite)), None)
        if match is not None:
            return match, remote
    raise SdpError("RTP/SAVP without an a=crypto matching ours (RFC 4568 §7.1.3)", 488)


def offers(description: SessionDescription, codec: Codec) -> bool:
    """Whether the audio stream lists `codec` (by rtpmap, or by static number)."""
    return _find(_audio(description), codec) is not None


def with_codecs(description: SessionDescription, codecs: Sequence[Codec]) -> SessionDescription:
    """A copy whose audio stream also lists `codecs` it lacks, after its own (so a
    codec both sides share still wins): what a transcoding B2BUA offers the callee."""
    result = description.copy()
    media = _audio(result)
    used = {int(f) for f in media.formats if f.isdigit()}
    free = (pt for pt in range(96, 128) if pt not in used)
    added: list[Codec] = []
    for codec in codecs:
        if _find(media, codec) is not None:
            continue
        if codec.is_static and codec.payload_type not in used:
            added.append(codec)
        else:
            pt = next(free, None)
            if pt is None:
                break
            added.append(replace(codec, payload_type=pt))
    extra = _audio_media(0, added, "sendrecv")
    media.formats += extra.formats
    media.attributes = [
        *(a for a in media.attributes if a.name in ("rtpmap", "fmtp")),
        *(a for a in extra.attributes if a.name in ("rtpmap", "fmtp")),
        *(a for a in media.attributes if a.name not in ("rtpmap", "fmtp")),
    ]
    return result


def _find(media: Media, codec: Codec) -> int | None:
    """The payload type `media` uses for `codec`, if any."""
    rtpmaps = media.rtpmaps()
    return next((pt for pt in media.payload_types() if _is(pt, rtpmaps, codec)), None)


def _is(pt: int, rtpmaps: dict[int, RtpMap], codec: Codec) -> bool:
    # Dynamic types are identified by rtpmap; a static one (0 = PCMU, 8 = PCMA)
    # by its number when no rtpmap says otherwise (RFC 3551 §6).
    rtpmap = rtpmaps.get(pt)
    if rtpmap is not None:
        return rtpmap.matches(codec)
    return codec.is_static and pt == codec.payload_type


def _format_of(pt: int, rtpmaps: dict[int, RtpMap]) -> Codec | None:
    """What payload type `pt` is: its rtpmap, else the static format of that number."""
    rtpmap = rtpmaps.get(pt)
    if rtpmap is None:
        return STATIC_FORMATS.get(pt)
    return Codec(rtpmap.name, pt, rtpmap.clock_rate, rtpmap.channels)


def first_codec(media: Media) -> Codec:
    """The stream's first audio codec, past DTMF events, comfort noise, redundancy and
    FEC: what an answer chose (RFC 3264 §6.1 lists it first), wherever a phone put
    telephone-event. A payload type without rtpmap nor static meaning is taken as it
    is. SdpError(488) when the stream holds no audio codec."""
    rtpmaps = media.rtpmaps()
    for pt in media.payload_types():
        codec = _format_of(pt, rtpmaps) or Codec(f"pt{pt}", pt, 8000)
        if codec.name.lower() not in NOT_AUDIO_CODECS:
            return codec
    raise SdpError("the audio stream holds no audio codec", 488)


def limited_to(answer: SessionDescription, offer: SessionDescription) -> SessionDescription:
    """A copy of `answer` whose audio stream lists only payload formats `offer` holds
    (RFC 3264 §6.1), telephone-event and comfort noise included: the answer to a wider
    offer (the caller's, plus the codecs ipbx transcodes) as the caller may get it. Its
    audio codecs come first, in the answer's order, so that a phone taking the first
    format takes a codec."""
    result = answer.copy()
    media, offered = _audio(result), _audio(offer)
    known = set(_identities(offered).values())
    dropped = {str(pt) for pt, identity in _identities(media).items() if identity not in known}
    rtpmaps = media.rtpmaps()

    def auxiliary(fmt: str) -> bool:
        codec = _format_of(int(fmt), rtpmaps) if fmt.isdigit() else None
        return codec is not None and codec.name.lower() in NOT_AUDIO_CODECS

    media.formats = sorted((f for f in media.formats if f not in dropped), key=auxiliary)
    described = ("rtpmap", "fmtp", "rtcp-fb")  # lines that start with a payload type
    media.attributes = [
        a
        for a in media.attributes
        if a.name not in described or (a.value or "").partition(" ")[0] not in dropped
    ]
    return result


def _identities(media: Media) -> dict[int, tuple[str, int, int] | int]:
    """Each payload type of the stream as the format it names (encoding names are
    case-insensitive, RFC 4855 §3); one with no known meaning stands for itself."""
    rtpmaps = media.rtpmaps()
    found = ((pt, _format_of(pt, rtpmaps)) for pt in media.payload_types())
    return {pt: pt if c is None else (c.name.lower(), c.clock_rate, c.channels) for pt, c in found}


def _choose(
    media: Media, supported: Sequence[Codec], dtmf: bool
) -> tuple[Codec, Codec | None] | None:
    if media.proto not in AUDIO_PROTOS:
        return None
    for codec in supported:
        pt = _find(media, codec)
        if pt is not None:
            return replace(codec, payload_type=pt), _event_for(media, codec) if dtmf else None
    return None


def _event_for(media: Media, codec: Codec) -> Codec | None:
    """The telephone-event to use beside `codec`: RFC 4733 §2.1 wants the audio codec's
    clock rate, but many phones offer only telephone-event/8000 next to Opus or G.722;
    digits are told apart by timestamp, not duration, so that one is taken too."""
    for rate in dict.fromkeys((codec.clock_rate, 8000)):
        event = replace(TELEPHONE_EVENT, clock_rate=rate)
        pt = _find(media, event)
        if pt is not None:
            return replace(event, payload_type=pt)
    return None


def telephone_event(sdp: SessionDescription, codec: Codec) -> int | None:
    """The payload type `sdp` gives telephone-event (RFC 4733) beside `codec`, if any."""
    media = _audio(sdp)
    event = _event_for(media, codec)
    return None if event is None else event.payload_type


def answer(
    offer: SessionDescription,
    address: str,
    port: int,
    supported_codecs: Sequence[Codec],
    dtmf: bool = True,
    session_id: int | None = None,
    version: int = 0,
    key: CryptoAttribute | None = None,
) -> tuple[SessionDescription, Codec, int | None]:
    """Answer an offer (RFC 3264 §6): accept the first audio stream, reject the rest.

    The codec is the first of OUR preferences the offer contains, with the
    offerer's payload type (§6.1: the answer uses the offer's numbers).
    An RTP/SAVP stream is answered with `key` when the offer still holds its tag
    and suite (a new offer in a session keeps the key), else with a new one.
    Returns the answer, that Codec and the telephone-event payload type.
    Raises SdpError(488) when no audio stream can be accepted.
    """
    chosen: tuple[Codec, Codec | None] | None = None
    answered: list[Media] = []
    for media in offer.media:
        acceptable = chosen is None and media.media == "audio" and media.port != 0
        match = _choose(media, supported_codecs, dtmf) if acceptable else None
        if match is None:
            # §6: a rejected stream keeps its place with port 0 and the offered formats.
            answered.append(Media(media.media, 0, media.proto, list(media.formats)))
            continue
        crypto: list[CryptoAttribute] = []
        if media.proto == SAVP:
            # SDES (RFC 4568 §7.1.1): answer one offered crypto with our own key.
            offered = crypto_attributes(media)
            keys = key if _offered(key, offered) else choose_crypto(offered)
            if keys is None:
                answered.append(Media(media.media, 0, media.proto, list(media.formats)))
                continue
            crypto = [keys]
        chosen = match
        codec, event = match
        mirrored = _MIRRORED[_effective_direction(offer, media)]
        answered.append(_audio_media(port, [c for c in (codec, event) if c], mirrored, crypto))
    if chosen is None:
        raise SdpError("no common audio codec or transport in the offer", 488)
    codec, event = chosen
    # §6: the t= line of the answer must equal that of the offer.
    timing = [(k, v) for k, v in offer.lines if k in ("t", "r")] or [("t", "0 0")]
    result = SessionDescription(
        origin=_new_origin(address, session_id, version),
        connection=Connection.for_address(address),
        media=answered,
        lines=timing,
    )
    return result, codec, None if event is None else event.payload_type


def _offered(key: CryptoAttribute | None, offered: list[CryptoAttribute]) -> bool:
    return key is not None and any((c.tag, c.suite) == (key.tag, key.suite) for c in offered)


def negotiated(
    sdp: SessionDescription, supported_codecs: Sequence[Codec]
) -> tuple[Codec, int | None]:
    """Codec and telephone-event payload type of an answer to our offer.

    The answerer lists its choice first (RFC 3264 §6.1), so the first
    payload type of the answer that we support wins.
    """
    media = _audio(sdp)
    rtpmaps = media.rtpmaps()
    for pt in media.payload_types():
        codec = next((c for c in supported_codecs if _is(pt, rtpmaps, c)), None)
        if codec is not None:
            event = _event_for(media, codec)
            return replace(codec, payload_type=pt), None if event is None else event.payload_type
    raise SdpError("the answer holds no codec we support", 488)


def anchor(
    sdp: SessionDescription,
    address: str,
    port: int,
    version: int | None = None,
    crypto: Sequence[CryptoAttribute] | None = None,
) -> SessionDescription:
    """Rewrite SDP so media flows through us (a B2BUA anchoring media).

    Every connection address and the origin address become ours (topology
    hiding), the audio port becomes ours, o= version goes up by one (RFC 3264
    §8) unless given, and other active streams are disabled because we relay
    only audio. Addresses meant for the original peer (a=rtcp, ICE) are
    dropped. An RFC 2543 hold (c=0.0.0.0) is restated as a direction
    attribute so the far side still sees the hold. With `crypto`, the audio
    stream's a=crypto lines become those (RTP/SAVP), or none at all (RTP/AVP)
    when it is empty: that is how a B2BUA ends SRTP on one leg (RFC 4568).
    """
    media = _audio(sdp)
    result = sdp.copy()
    result.origin.address = address
    result.origin.addr_type = _addr_type(address)
    result.origin.version = sdp.origin.version + 1 if version is None else version
    result.connection = Connection.for_address(address)
    audio_index = sdp.media.index(media)
    hold = _effective_direction(sdp, media)
    restate_hold = hold != _declared_direction(sdp, media)
    for index, stream in enumerate(result.media):
        stream.attributes = [a for a in stream.attributes if a.name not in _PEER_ONLY_ATTRIBUTES]
        if stream.connection is not None:
            stream.connection = Connection.for_address(address)
        if index == audio_index:
            stream.port = port
            if restate_hold:
                stream.set_direction(hold)
            if crypto is not None:
                stream.attributes = [a for a in stream.attributes if a.name != "crypto"]
                stream.attributes += [Attribute("crypto", str(c)) for c in crypto]
                stream.proto = SAVP if crypto else AVP
        else:
            stream.port = 0
    result.attributes = [a for a in result.attributes if a.name not in _PEER_ONLY_ATTRIBUTES]
    return result
