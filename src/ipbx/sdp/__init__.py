"""SDP (RFC 4566) and the offer/answer model (RFC 3264) for audio.

The only bridge between signalling and media: the SIP side hands SDP text
here and gets back what MediaEndpoint.set_remote() needs (address, port,
Codec, telephone-event payload type). The text itself is sdp/description.py.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from dataclasses import replace

from ipbx.media.codecs import NOT_AUDIO_CODECS, STATIC_FORMATS, TELEPHONE_EVENT, Codec
from ipbx.media.srtp import CryptoAttribute, CryptoError, choose_crypto
from ipbx.media.webrtc import WebRtcTransport
from ipbx.sdp.description import (
    AUDIO_PROTOS,
    AVP,
    DIRECTIONS,
    DTLS_PROTOS,
    DTMF_EVENTS,
    HOLD_ADDRESS,
    PTIME_MS,
    SAVP,
    SAVPF,
    Attribute,
    Connection,
    Media,
    Origin,
    RtpMap,
    SdpError,
    SessionDescription,
    _addr_type,
)
from ipbx.sdp.webrtc import TRANSPORT_ATTRIBUTES, as_webrtc

__all__ = [
    "AUDIO_PROTOS",
    "AVP",
    "DIRECTIONS",
    "DTLS_PROTOS",
    "DTMF_EVENTS",
    "HOLD_ADDRESS",
    "PTIME_MS",
    "SAVP",
    "SAVPF",
    "Attribute",
    "Connection",
    "Media",
    "Origin",
    "RtpMap",
    "SdpError",
    "SessionDescription",
    "anchor",
    "answer",
    "crypto_attributes",
    "direction",
    "first_codec",
    "limited_to",
    "make_offer",
    "negotiated",
    "offers",
    "remote_address",
    "srtp_keys",
    "telephone_event",
    "with_codecs",
]

# RFC 3264 §6.1: the answer's direction is the offer's seen from the other side.
_MIRRORED = {
    "sendrecv": "sendrecv",
    "sendonly": "recvonly",
    "recvonly": "sendonly",
    "inactive": "inactive",
}
# Transport addresses that only make sense for the original peer: an
# anchoring B2BUA must drop them (RFC 3605 a=rtcp, RFC 8839 ICE). So too the SSRCs the
# peer will send from (RFC 5576 a=ssrc, a=ssrc-group): the stream the other phone gets
# may be ipbx's own (transcoded, or played), from an SSRC of its own.
_PEER_ONLY_ATTRIBUTES = frozenset(
    {
        "rtcp",
        "ssrc",
        "ssrc-group",
        "candidate",
        "remote-candidates",
        "end-of-candidates",
        "ice-ufrag",
        "ice-pwd",
        "ice-options",
        "ice-lite",
    }
)


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
    # A WebRTC stream's address is ICE's business: 0.0.0.0 there is no hold (trickle ICE,
    # RFC 8840, writes it while no candidate is known).
    webrtc = media.proto in DTLS_PROTOS
    if connection is not None and connection.address == HOLD_ADDRESS and not webrtc:
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
    return payload_type(description, codec) is not None


def payload_type(description: SessionDescription, codec: Codec) -> int | None:
    """The payload type the audio stream gives `codec`, if it lists it."""
    return _find(_audio(description), codec)


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
        if not _auxiliary(pt, rtpmaps):
            return _format_of(pt, rtpmaps) or Codec(f"pt{pt}", pt, 8000)
    raise SdpError("the audio stream holds no audio codec", 488)


def _auxiliary(pt: int, rtpmaps: dict[int, RtpMap]) -> bool:
    """Whether `pt` is telephone-event, comfort noise, redundancy or FEC: no codec."""
    codec = _format_of(pt, rtpmaps)
    return codec is not None and codec.name.lower() in NOT_AUDIO_CODECS


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
    kept = [f for f in media.formats if f not in dropped]
    media.formats = sorted(kept, key=lambda f: f.isdigit() and _auxiliary(int(f), rtpmaps))
    described = ("rtpmap", "fmtp", "rtcp-fb")  # lines that start with a payload type
    media.attributes = [
        a
        for a in media.attributes
        if a.name not in described or (a.value or "").partition(" ")[0] not in dropped
    ]
    return result


def with_format_parameters(
    description: SessionDescription, pt: int, parameters: Mapping[str, str]
) -> SessionDescription:
    """A copy whose audio stream's a=fmtp for payload type `pt` also holds `parameters`
    (replacing any of the same names), in the `name=value;name=value` form of RFC 7587
    (a parameter without a value is written bare, as Media.format_parameters read it)."""
    result = description.copy()
    media = _audio(result)
    merged = {**media.format_parameters(pt), **parameters}
    written = ";".join(name if value == "" else f"{name}={value}" for name, value in merged.items())
    prefix = f"{pt} "
    kept = [
        a for a in media.attributes if a.name != "fmtp" or not (a.value or "").startswith(prefix)
    ]
    # After the format's rtpmap, where a phone writes it.
    rtpmaps = [a.name == "rtpmap" and (a.value or "").startswith(prefix) for a in kept]
    at = rtpmaps.index(True) + 1 if any(rtpmaps) else len(kept)
    media.attributes = [*kept[:at], Attribute("fmtp", prefix + written), *kept[at:]]
    return result


def _identities(media: Media) -> dict[int, tuple[str, int, int] | int]:
    """Each payload type of the stream as the format it names (encoding names are
    case-insensitive, RFC 4855 §3); one with no known meaning stands for itself."""
    rtpmaps = media.rtpmaps()
    found = ((pt, _format_of(pt, rtpmaps)) for pt in media.payload_types())
    return {pt: pt if c is None else (c.name.lower(), c.clock_rate, c.channels) for pt, c in found}


def _choose(
    media: Media, supported: Sequence[Codec], dtmf: bool, protos: Sequence[str] = AUDIO_PROTOS
) -> tuple[Codec, Codec | None] | None:
    if media.proto not in protos:
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
    webrtc: WebRtcTransport | None = None,
) -> tuple[SessionDescription, Codec, int | None]:
    """Answer an offer (RFC 3264 §6): accept the first audio stream, reject the rest.

    The codec is the first of OUR preferences the offer contains, with the
    offerer's payload type (§6.1: the answer uses the offer's numbers).
    An RTP/SAVP stream is answered with `key` when the offer still holds its tag
    and suite (a new offer in a session keeps the key), else with a new one.
    With `webrtc` (the leg's transport) a WebRTC stream is accepted too, and answered
    with ipbx's ICE-lite and DTLS side (sdp/webrtc.py).
    Returns the answer, that Codec and the telephone-event payload type.
    Raises SdpError(488) when no audio stream can be accepted.
    """
    chosen: tuple[Codec, Codec | None] | None = None
    answered: list[Media] = []
    for media in offer.media:
        acceptable = chosen is None and media.media == "audio" and media.port != 0
        protos = AUDIO_PROTOS if webrtc is None else (*AUDIO_PROTOS, *DTLS_PROTOS)
        match = _choose(media, supported_codecs, dtmf, protos) if acceptable else None
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
    if webrtc is not None and webrtc.remote is not None:
        result = as_webrtc(result, webrtc, address, port)
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
    dropped, and so are the SSRCs it declares (a=ssrc). An RFC 2543 hold
    (c=0.0.0.0) is restated as a direction attribute so the far side still
    sees the hold. With `crypto`, the audio stream's a=crypto lines become
    those (RTP/SAVP), or none at all (RTP/AVP) when it is empty: that is how a
    B2BUA ends SRTP on one leg (RFC 4568).
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
    # Ending a browser's DTLS-SRTP (a new proto below) ends its transport's attributes.
    dropped = _PEER_ONLY_ATTRIBUTES
    if crypto is not None and media.proto in DTLS_PROTOS:
        dropped = dropped | TRANSPORT_ATTRIBUTES
    for index, stream in enumerate(result.media):
        stream.attributes = [a for a in stream.attributes if a.name not in dropped]
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
    result.attributes = [a for a in result.attributes if a.name not in dropped]
    return result
