"""The SDP of a WebRTC leg (RFC 8829 JSEP, RFC 8839 ICE, RFC 8842 DTLS): how a
browser's audio stream is told apart, what its transport parameters are, and how ipbx
writes its own side.

A stream is WebRTC when its proto is UDP/TLS/RTP/SAVPF (or .../SAVP) and it carries
a=fingerprint and a=ice-ufrag (media or session level). ipbx's side of it: a=ice-lite,
its ufrag and password, one host candidate (its media address; rtcp-mux, so component 1
only), a=end-of-candidates, its certificate's a=fingerprint, a=setup, a=rtcp-mux, and the
browser's a=mid and BUNDLE group echoed (RFC 8843 §7.3) so that it keeps its transport.
"""

from __future__ import annotations

from ipbx.media.webrtc import WebRtcParameters, WebRtcTransport, certificate
from ipbx.sdp.description import DTLS_PROTOS, SAVPF, Attribute, SdpError, SessionDescription

# Attributes of the DTLS/ICE transport and of BUNDLE that describe the browser's side:
# a B2BUA ending that transport writes its own, or none toward a plain phone.
TRANSPORT_ATTRIBUTES = frozenset(
    {
        "fingerprint",
        "setup",
        "connection",
        "tls-id",
        "rtcp-mux",
        "rtcp-mux-only",
        "rtcp-rsize",
        "mid",
        "msid",
        "ssrc",
        "ssrc-group",
        "rtcp-fb",
        "extmap",
        "extmap-allow-mixed",
        "group",
        "msid-semantic",
        "ice-lite",
    }
)
# RFC 8445 §5.1.2.1: type preference 126 for host, local preference 65535, component 1.
_HOST_PRIORITY = (126 << 24) + (65535 << 8) + 255
_DEFAULT_MID = "0"


def parameters(description: SessionDescription) -> WebRtcParameters | None:
    """The browser's transport parameters of the audio stream; None when it is not a
    WebRTC stream. SdpError(488) when it claims DTLS-SRTP but lacks what that needs."""
    media = description.audio
    if media is None or media.proto not in DTLS_PROTOS:
        return None
    # RFC 8839 §5.4, RFC 8122 §5: each may sit at media or session level.
    attributes = [*media.attributes, *description.attributes]

    def value(name: str) -> str | None:
        return next((a.value for a in attributes if a.name == name), None)

    ufrag, pwd = value("ice-ufrag"), value("ice-pwd")
    if not ufrag or not pwd:
        raise SdpError(f"{media.proto} without a=ice-ufrag and a=ice-pwd (RFC 8839)", 488)
    fingerprints = []
    for attribute in attributes:
        algorithm, _, digest = (attribute.value or "").partition(" ")
        if attribute.name == "fingerprint" and digest.strip():
            fingerprints.append((algorithm, digest.strip()))
    if not fingerprints:
        raise SdpError(f"{media.proto} without a=fingerprint (RFC 8122)", 488)
    setup = (value("setup") or "actpass").lower()
    return WebRtcParameters(ufrag, pwd, tuple(fingerprints), setup, media.attribute("mid"))


def as_webrtc(
    description: SessionDescription, transport: WebRtcTransport, address: str, port: int
) -> SessionDescription:
    """A copy of ipbx's SDP for a phone whose audio stream is written for a WebRTC leg:
    the browser's transport attributes (if any passed through) replaced by ours."""
    result = description.copy()
    media = result.audio
    if media is None:
        raise SdpError("SDP has no active audio stream", 488)
    mid = transport.remote.mid if transport.remote is not None else _DEFAULT_MID
    media.proto = SAVPF
    media.attributes = [
        a for a in media.attributes if a.name not in TRANSPORT_ATTRIBUTES and a.name != "crypto"
    ]
    if mid is not None:
        media.attributes.append(Attribute("mid", mid))
    media.attributes += [
        Attribute("ice-ufrag", transport.local.ufrag),
        Attribute("ice-pwd", transport.local.pwd),
        Attribute("candidate", f"1 1 udp {_HOST_PRIORITY} {address} {port} typ host"),
        Attribute("end-of-candidates"),
        Attribute("fingerprint", certificate().fingerprint),
        Attribute("setup", transport.setup),
        Attribute("rtcp-mux"),
    ]
    result.attributes = [a for a in result.attributes if a.name not in TRANSPORT_ATTRIBUTES]
    result.attributes.insert(0, Attribute("ice-lite"))
    if mid is not None:
        result.attributes.append(Attribute("group", f"BUNDLE {mid}"))
    return result
