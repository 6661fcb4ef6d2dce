"""Offer/answer for the legs of a call (RFC 3264), and the bridge it calls for.

ipbx anchors media: each phone sees ipbx's address and port in the SDP it gets, never
the other phone's. What a leg's phone sends (an offer or an answer) is applied to the
leg's media endpoint here; what it gets is the other side's SDP anchored on the leg's
own endpoint, or ipbx's own answer when the two sides cannot share a codec, in which
case the bridge transcodes. SRTP (SDES, RFC 4568) ends on each leg that speaks it.
"""

from __future__ import annotations

import logging

from ipbx import sdp
from ipbx.media.bridge import connect, transcode
from ipbx.media.codecs import AUDIO_CODECS, CODECS, Codec
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.srtp import CryptoAttribute, SrtpContext, choose_crypto
from ipbx.pbx.call.model import Leg
from ipbx.sip.errors import SipError

log = logging.getLogger("ipbx.calls")


def relay_codec(description: sdp.SessionDescription) -> Codec:
    """A relay forwards bytes untouched; the endpoint only needs to know the stream's
    first payload type and clock rate, whatever the codec."""
    media = description.audio
    if media is None or not media.payload_types():
        raise SipError(488, "no audio stream")
    pt = media.payload_types()[0]
    rtpmap = media.rtpmaps().get(pt)
    if rtpmap is not None:
        return Codec(rtpmap.name, pt, rtpmap.clock_rate, rtpmap.channels)
    static = next((c for c in CODECS if c.payload_type == pt), None)
    return static or Codec(f"pt{pt}", pt, 8000)


def take_sdp(leg: Leg, description: sdp.SessionDescription) -> None:
    """Apply the SDP this leg's phone sent (an offer or an answer): where its media
    goes, and its SDES keys when it speaks SRTP. A hold that says c=0.0.0.0 keeps the
    old address; latching still follows the phone's packets."""
    host, port = sdp.remote_address(description)
    if host not in ("0.0.0.0", "::") and port != 0:
        codec = relay_codec(description)
        media = description.audio
        fmtp = media.format_parameters(codec.payload_type) if media else None
        # The telephone-event type too: DTMF ipbx sends this phone (a transcoded
        # bridge, the API) must carry the number the phone expects.
        dtmf = sdp.telephone_event(description, codec)
        leg.media.set_remote(host, port, codec, dtmf, fmtp=fmtp)
    media = description.audio
    assert media is not None  # remote_address() found it
    if media.proto != sdp.SAVP:
        leg.srtp = None
        leg.media.set_srtp(None)
        return
    offered = sdp.crypto_attributes(media)
    ours = (leg.srtp[0],) if leg.srtp else leg.offered_keys
    local, remote = next(
        ((k, c) for k in ours for c in offered if (c.tag, c.suite) == (k.tag, k.suite)),
        (None, None),
    )
    if local is None or remote is None:
        # A new offer: answer one of its keys with our own (RFC 4568 §7.1.1).
        local = choose_crypto(offered)
        if local is None:
            raise SipError(488, "no usable a=crypto in RTP/SAVP (RFC 4568)")
        remote = next(c for c in offered if (c.tag, c.suite) == (local.tag, local.suite))
    if leg.srtp != (local, remote):
        leg.srtp = (local, remote)
        leg.media.set_srtp(SrtpContext(local, remote))


def terminate(
    leg: Leg,
    remote: sdp.SessionDescription,
    ours: sdp.SessionDescription,
    codec: Codec,
    dtmf: int | None,
    echo: bool,
) -> None:
    """Media of a leg ipbx answers itself: to the phone's address, with the SRTP keys
    of our SDP and theirs; echoed back for the echo test."""
    host, port = sdp.remote_address(remote)
    if host not in ("0.0.0.0", "::") and port:
        leg.media.set_remote(host, port, codec, dtmf)
    keys = sdp.srtp_keys(ours, remote)
    leg.srtp = keys
    leg.media.set_srtp(SrtpContext(*keys) if keys else None)
    if echo:
        leg.media.echo()


def local_answer(
    leg: Leg, offer: sdp.SessionDescription, address: str, echo: bool
) -> sdp.SessionDescription:
    """ipbx's own answer to the phone's offer, applied to the leg's media (SdpError
    when nothing in it is usable)."""
    port = leg.media.local_address[1]
    answer, codec, dtmf = sdp.answer(offer, address, port, AUDIO_CODECS)
    terminate(leg, offer, answer, codec, dtmf, echo)
    return answer


def anchor(
    description: sdp.SessionDescription,
    address: str,
    media: MediaEndpoint,
    key: CryptoAttribute | None,
    offered: tuple[CryptoAttribute, ...] = (),
) -> bytes:
    """The other side's SDP as this endpoint's phone must see it: our address and port,
    our SDES key (or the keys we offer)."""
    crypto = [key] if key is not None else list(offered)
    return bytes(sdp.anchor(description, address, media.local_address[1], None, crypto))


def sdp_for(leg: Leg, description: sdp.SessionDescription, address: str) -> bytes:
    """SDP from the other side, anchored on `leg`'s media endpoint for its phone."""
    return anchor(description, address, leg.media, leg.srtp[0] if leg.srtp else None)


def join(
    a: Leg, b: Leg, answer: sdp.SessionDescription, address: str, codecs: tuple[Codec, ...]
) -> bytes:
    """Bridge the caller `a` to the callee `b` that answered and return the caller's 2xx
    body: the callee's answer anchored for the caller when the caller offered that codec;
    otherwise our own answer to the caller's offer (only from what it offered), with
    the legs transcoded."""
    offer = a.offer
    chosen = b.media.codec
    if offer is None or chosen is None or sdp.offers(offer, chosen):
        # A relay: both directions carry what the callee's answer chose.
        if chosen is not None:
            a.media.set_codec(chosen, b.media.dtmf_pt)
        connect(a.media, b.media)
        return sdp_for(a, answer, address)
    ours, codec, dtmf = sdp.answer(offer, address, a.media.local_address[1], codecs)
    keys = sdp.srtp_keys(ours, offer)
    a.srtp = keys
    a.media.set_srtp(SrtpContext(*keys) if keys else None)
    host, port = sdp.remote_address(offer)
    assert offer.audio is not None  # answer() accepted its audio stream
    a.media.set_remote(
        host, port, codec, dtmf, fmtp=offer.audio.format_parameters(codec.payload_type)
    )
    transcode(a.media, b.media)
    log.info("%s transcoding %s <-> %s", a.call.id, codec.name, chosen.name)
    return bytes(ours)


def answered_ours(leg: Leg, description: sdp.SessionDescription, codecs: tuple[Codec, ...]) -> None:
    """The phone answered ipbx's own offer (a call flow or transfer rang it)."""
    codec, dtmf = sdp.negotiated(description, codecs)
    host, port = sdp.remote_address(description)
    leg.media.set_remote(host, port, codec, dtmf)


def refusal(leg: Leg, offer: sdp.SessionDescription | None, address: str) -> bytes:
    """A valid answer for a late-offer 2xx we are about to hang up (RFC 3261 §13.2.2.4:
    the ACK must still complete the offer/answer)."""
    if offer is None:
        return b""
    try:
        answer, _, _ = sdp.answer(offer, address, leg.media.local_address[1], AUDIO_CODECS)
    except sdp.SdpError:
        return b""
    return bytes(answer)
