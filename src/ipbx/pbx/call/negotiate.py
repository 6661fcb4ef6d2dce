"""Offer/answer on the legs of a call (RFC 3264), and the bridge it calls for.

ipbx anchors media: each phone sees ipbx's address and port in the SDP it gets, never
the other phone's, and SRTP (SDES, RFC 4568) ends on each leg that speaks it. One call
here is one exchange of SDP with a phone: it applies what the phone sent to its leg's
media endpoint (where its RTP goes, in which codec, under which keys) and returns the
SDP ipbx sends for it. Who answers an offer decides what that SDP is, hence one entry
point for each:

- `answer`: ipbx answers the phone's offer itself (a call flow, the echo test, music on
  hold), with codecs from that offer only, in our order of preference;
- `answered`: the phone answers an offer ipbx made itself (a phone a call flow, a
  transfer or click-to-call rings; a call flow answering a late offer);
- `forward`: the phone at the other end of the call answers, and the offer and its
  answer pass through ipbx (re-INVITEs, the ACK that answers a late offer);
- `join`: the callee's 2xx to the caller's INVITE (or its 183 before, early media), which
  also chooses the bridge: a relay when the caller offered the codec the callee chose
  (its first audio codec, wherever it lists telephone-event), with the callee's answer
  less the formats the caller did not offer; else ipbx's own answer to the caller and a
  transcoding bridge (`connect` in media/bridge.py tells them apart by codec).

The caller's INVITE is one offer for every phone and trunk it rings: `callee_offer`
takes it once, and `offer_for` gives it SDES keys for a callee that gets SRTP, or makes
it a WebRTC offer. `refusal` answers a late offer whose 2xx is hung up at once.

A leg is WebRTC when its phone's SDP says so (UDP/TLS/RTP/SAVPF with a=fingerprint and
a=ice-ufrag, sdp/webrtc.py): its endpoint then runs ICE-lite and DTLS-SRTP
(media/webrtc.py), and every SDP ipbx writes for it carries ipbx's side of them. The
other leg may be anything: the bridge sees two endpoints with codecs, as for SDES.
"""

from __future__ import annotations

import logging

from ipbx import sdp
from ipbx.media.bridge import connect, relay
from ipbx.media.codecs import AUDIO_CODECS, CODECS, OPUS, Codec, pcm_rate
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.srtp import (
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
    CryptoAttribute,
    SrtpContext,
    choose_crypto,
    new_crypto,
)
from ipbx.media.webrtc import WebRtcTransport
from ipbx.pbx.call.model import Leg
from ipbx.sdp import webrtc
from ipbx.sip.errors import SipError

log = logging.getLogger("ipbx.calls")

Keys = tuple[CryptoAttribute, CryptoAttribute]


# --- ipbx answers ------------------------------------------------------------------------


def answer(
    leg: Leg, offer: sdp.SessionDescription, address: str, codecs: tuple[Codec, ...]
) -> sdp.SessionDescription:
    """ipbx's own answer to the offer of `leg`'s phone: the first of `codecs` the offer
    holds, and the leg's SDES key again when the offer keeps its suite (SdpError when
    nothing in the offer is usable). What the leg then hears is up to its owner."""
    local = leg.srtp[0] if leg.srtp else None
    port = leg.media.local_address[1]
    transport = _webrtc(leg, offer)
    ours, codec, dtmf = sdp.answer(offer, address, port, codecs, key=local, webrtc=transport)
    keys = sdp.srtp_keys(ours, offer)
    _aim(leg, offer, codec, dtmf)
    _set_keys(leg, keys)
    return ours


def answered(leg: Leg, description: sdp.SessionDescription, codecs: tuple[Codec, ...]) -> None:
    """The phone answered an offer ipbx made itself (sdp.make_offer of `codecs`, in
    plain RTP, or as a browser's WebRTC offer: `offer_for`): the first of them the
    answer lists. SdpError when it lists none, or answers in RTP/SAVP, which was not
    offered; SipError(488) when a browser answers without WebRTC."""
    codec, dtmf = sdp.negotiated(description, codecs)
    media = description.audio
    if media is not None and media.proto == sdp.SAVP:
        raise sdp.SdpError("RTP/SAVP answer to an RTP/AVP offer (RFC 3264 §6)", 488)
    _aim(leg, description, codec, dtmf)
    _set_keys(leg, None)


def refusal(offer: sdp.SessionDescription | None, address: str, port: int) -> bytes:
    """A valid answer for a late-offer 2xx we are about to hang up (RFC 3261 §13.2.2.4:
    the ACK must still complete the offer/answer); it sets up no media."""
    if offer is None:
        return b""
    try:
        ours, _, _ = sdp.answer(offer, address, port, AUDIO_CODECS)
    except sdp.SdpError:
        return b""
    return bytes(ours)


# --- the offer passes through ipbx ---------------------------------------------------------


def forward(leg: Leg, description: sdp.SessionDescription, to: Leg, address: str) -> bytes:
    """SDP from `leg`'s phone, an offer or an answer, for the phone of `to`: applied to
    `leg` (SipError when it is unusable) and anchored on `to`'s media and SDES key."""
    _take(leg, description)
    return _anchored(description, address, to.media, _crypto(to))


def callee_offer(
    caller: Leg,
    offer: sdp.SessionDescription,
    media: MediaEndpoint,
    address: str,
    codecs: tuple[Codec, ...],
) -> bytes:
    """The caller's offer applied to its leg (SipError when it is unusable), and as the
    phones and trunks rung for it get it: on `media`, the far side's endpoint, with every
    codec of `codecs` we can transcode to after the caller's own, in plain RTP (a callee
    gets SRTP of its own: `secure_offer`)."""
    _take(caller, offer)
    return _anchored(_added_no_wider(offer, sdp.with_codecs(offer, codecs)), address, media, [])


def restated(leg: Leg, offer: sdp.SessionDescription) -> bytes | None:
    """Our answer to an offer from `leg`'s phone that changes nothing, the SDP it sent
    last again (RFC 3264 §8; a session refresh, RFC 4028, say): the SDP the phone has
    from us again, less the formats it does not offer. The other phone need hear
    nothing of it. None when the offer changes something."""
    if leg.remote_sdp is None or offer != leg.remote_sdp:
        return None
    ours = sdp.SessionDescription.parse(leg.local_sdp or leg.invite.body)
    return bytes(sdp.limited_to(ours, offer))


def new_keys() -> tuple[CryptoAttribute, ...]:
    """SDES keys of ours for an offer, one per suite we speak (the answer picks one)."""
    return (new_crypto(1, AES_CM_128_HMAC_SHA1_80), new_crypto(2, AES_CM_128_HMAC_SHA1_32))


def offer_for(
    body: bytes,
    media: MediaEndpoint,
    address: str,
    keys: tuple[CryptoAttribute, ...] = (),
    browser: bool = False,
) -> bytes:
    """An offer made by `callee_offer` as one callee gets it: with our `address` as that
    phone reaches us, and in RTP/SAVP with `keys` when given. For a `browser` (a phone
    that speaks only WebRTC), `media` becomes a WebRTC endpoint and the offer is
    UDP/TLS/RTP/SAVPF with ipbx's ICE-lite candidate, fingerprint and a=setup:actpass."""
    if browser:
        media.use_webrtc()
    return _anchored(sdp.SessionDescription.parse(body), address, media, list(keys))


def join(
    a: Leg,
    b: Leg,
    description: sdp.SessionDescription | None,
    address: str,
    codecs: tuple[Codec, ...],
) -> bytes:
    """The callee `b` answered the caller `a`'s call, in its 2xx or, with early media, in
    a 183 before: bridge the two and return the body of the caller's response. The
    callee's SDP answers the caller's offer: passed on when the caller offered the codec
    the callee chose (less any format the caller did not offer), else ipbx answers the
    caller from the caller's offer (only from what it offered; a 2xx after a 183 holds
    "that same exact answer", RFC 3261 §13.2.1) and the legs are transcoded. When the
    caller's INVITE had no offer, the callee's SDP is its offer, passed on (the caller's
    ACK answers it: `forward`). SipError(488) when the callee's SDP cannot be used."""
    offer = a.offer
    if description is None:
        if offer is None:
            raise SipError(488, "neither the INVITE nor the 2xx carried an offer")
        relay(a.media, b.media)  # nothing was answered: nothing to choose from
        return b""
    _take(b, description)
    if b.offered_keys and b.srtp is None:
        # RFC 3264 §6: an answer keeps the offer's transport; plain RTP to our RTP/SAVP
        # offer would put the media in the clear.
        raise SipError(488, "answered RTP/SAVP with plain RTP")
    chosen = b.media.codec
    if offer is None or chosen is None:
        body = _anchored(description, address, a.media, _crypto(a))
    elif sdp.offers(offer, chosen):
        # Both directions carry what the callee's answer chose; the caller gets only
        # formats it offered (RFC 3264 §6.1), not the ones ipbx added for the callee.
        limited = sdp.limited_to(description, offer)
        a.media.set_codec(chosen, sdp.telephone_event(limited, chosen))
        body = _anchored(limited, address, a.media, _crypto(a))
    else:
        if not a.answer:
            try:
                ours = answer(a, offer, address, codecs)
            except sdp.SdpError as exc:
                raise SipError(exc.status_code, str(exc)) from None
            a.answer = bytes(_no_wider(ours, a.media.codec, chosen))
        body = a.answer
        assert a.media.codec is not None  # answer() set it
        log.info("%s transcoding %s <-> %s", a.call.id, a.media.codec.name, chosen.name)
    connect(a.media, b.media)
    return body


def _no_wider(
    ours: sdp.SessionDescription, codec: Codec | None, other: Codec
) -> sdp.SessionDescription:
    """Our answer to an Opus phone whose call is transcoded to a narrower codec says so
    (RFC 7587 §6.1): maxplaybackrate, ipbx plays back nothing wider than the other phone
    hears, and sprop-maxcapturerate, it sends nothing wider. A phone that heeds it
    (libwebrtc's encoder takes its maximum bandwidth from maxplaybackrate) spends no bits
    on audio nobody hears, nor ipbx the decoding of it."""
    rate = pcm_rate(other)
    if codec is None or codec.name.lower() != OPUS.name or rate >= pcm_rate(codec):
        return ours
    return _capped(ours, codec.payload_type, rate)


def _added_no_wider(
    offer: sdp.SessionDescription, widened: sdp.SessionDescription
) -> sdp.SessionDescription:
    """The same for a callee: Opus that ipbx adds to a caller's offer without it can
    only be transcoded to the caller's codecs, so it says the widest of those."""
    added = None if sdp.offers(offer, OPUS) else sdp.payload_type(widened, OPUS)
    rates = [pcm_rate(codec) for codec in CODECS if sdp.offers(offer, codec)]
    if added is None or not rates or max(rates) >= pcm_rate(OPUS):
        return widened
    return _capped(widened, added, max(rates))


def _capped(description: sdp.SessionDescription, pt: int, rate: int) -> sdp.SessionDescription:
    limit = {"maxplaybackrate": str(rate), "sprop-maxcapturerate": str(rate)}
    return sdp.with_format_parameters(description, pt, limit)


# --- a phone's SDP on its leg --------------------------------------------------------------


def _take(leg: Leg, description: sdp.SessionDescription) -> None:
    """SDP that passes through ipbx, applied to the leg: its keys matched with ours (a
    new offer's answered with a new key)."""
    _set_keys(leg, _keys(leg, _aim(leg, description)))


def _aim(
    leg: Leg,
    description: sdp.SessionDescription,
    codec: Codec | None = None,
    dtmf: int | None = None,
) -> sdp.Media:
    """Send the leg's media where the phone's SDP says, in `codec` with the format
    parameters it asked for; its audio stream. A hold that says c=0.0.0.0 keeps the old
    address; latching still follows the phone's packets. Without `codec` (SDP passing
    through) the first audio codec the stream lists (telephone-event, comfort noise, RED
    or FEC never are): a relay forwards bytes untouched, so the endpoint only needs its
    payload type and clock rate, whatever the codec."""
    host, port = sdp.remote_address(description)
    media = description.audio
    assert media is not None  # remote_address() found it
    leg.remote_sdp = description
    try:
        browser = _webrtc(leg, description) is not None
    except sdp.SdpError as exc:
        raise SipError(exc.status_code, str(exc)) from None
    if browser or (host not in ("0.0.0.0", "::") and port != 0):
        if codec is None:
            try:
                codec = sdp.first_codec(media)
            except sdp.SdpError as exc:
                raise SipError(exc.status_code, str(exc)) from None
            # The telephone-event type too: DTMF ipbx sends this phone (a transcoded
            # bridge, the API) must carry the number the phone expects.
            dtmf = sdp.telephone_event(description, codec)
        fmtp = media.format_parameters(codec.payload_type)
        if browser:
            # ICE, not the SDP's address, finds a browser (0.0.0.0 there is no hold).
            leg.media.set_codec(codec, dtmf, fmtp)
        else:
            leg.media.set_remote(host, port, codec, dtmf, fmtp=fmtp)
    return media


def _webrtc(leg: Leg, description: sdp.SessionDescription) -> WebRtcTransport | None:
    """The leg's WebRTC transport, given the browser's parameters, when its phone's SDP
    is WebRTC; None for any other phone. SdpError(488) for WebRTC SDP lacking them, or
    for SDP that is not WebRTC on a WebRTC leg (RFC 3264 §6: an answer keeps the
    offer's transport, and a browser has no other)."""
    remote = webrtc.parameters(description)
    if remote is None:
        if leg.media.webrtc is not None:
            raise sdp.SdpError("a WebRTC leg's SDP must stay UDP/TLS/RTP/SAVPF", 488)
        return None
    transport = leg.media.use_webrtc()
    transport.start(remote)
    return transport


def _keys(leg: Leg, media: sdp.Media) -> Keys | None:
    """(ours, theirs) for an RTP/SAVP stream: the key we use or offered with theirs of
    the same tag and suite, or for a new offer a new key of ours (RFC 4568 §7.1.1)."""
    if media.proto != sdp.SAVP:
        return None
    offered = sdp.crypto_attributes(media)
    ours = (leg.srtp[0],) if leg.srtp else leg.offered_keys
    for key in ours:
        for crypto in offered:
            if (crypto.tag, crypto.suite) == (key.tag, key.suite):
                return key, crypto
    local = choose_crypto(offered)
    if local is None:
        raise SipError(488, "no usable a=crypto in RTP/SAVP (RFC 4568)")
    return local, next(c for c in offered if (c.tag, c.suite) == (local.tag, local.suite))


def _set_keys(leg: Leg, keys: Keys | None) -> None:
    if leg.srtp != keys:
        leg.srtp = keys
        leg.media.set_srtp(SrtpContext(*keys) if keys else None)


def _crypto(leg: Leg) -> list[CryptoAttribute]:
    """The a=crypto of SDP for the leg's phone: the key we use, none for plain RTP."""
    return [leg.srtp[0]] if leg.srtp else []


def _anchored(
    description: sdp.SessionDescription,
    address: str,
    media: MediaEndpoint,
    crypto: list[CryptoAttribute],
) -> bytes:
    """SDP as the phone on `media` must see it: our address and port, and `crypto` as
    its a=crypto lines (none: plain RTP), or ipbx's WebRTC side for a WebRTC leg."""
    port = media.local_address[1]
    anchored = sdp.anchor(description, address, port, None, crypto)
    if media.webrtc is not None:
        anchored = webrtc.as_webrtc(anchored, media.webrtc, address, port)
    return bytes(anchored)
