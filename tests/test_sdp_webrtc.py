"""The SDP of a WebRTC leg (sdp/webrtc.py): a browser's offer as Chrome writes it (mDNS
host candidate, c=0.0.0.0 and port 9, fingerprint at session level, BUNDLE), how ipbx
reads it, answers it as an ICE-lite DTLS-SRTP endpoint, and passes it to a plain phone."""

from __future__ import annotations

import pytest

from ipbx import sdp
from ipbx.media.channel import Channel
from ipbx.media.codecs import OPUS, PCMU
from ipbx.media.webrtc import WebRtcTransport, certificate
from ipbx.sdp import webrtc

DIGEST = ":".join(["AB"] * 32)
CHROME_OFFER = (
    "v=0\r\n"
    "o=- 4611731400430051336 2 IN IP4 127.0.0.1\r\n"
    "s=-\r\n"
    "t=0 0\r\n"
    f"a=fingerprint:sha-256 {DIGEST}\r\n"
    "a=group:BUNDLE 0\r\n"
    "a=extmap-allow-mixed\r\n"
    "a=msid-semantic: WMS stream\r\n"
    "m=audio 9 UDP/TLS/RTP/SAVPF 111 0 8 126\r\n"
    "c=IN IP4 0.0.0.0\r\n"
    "a=rtcp:9 IN IP4 0.0.0.0\r\n"
    "a=candidate:1 1 udp 2122260223 6a1c0f4e-1f1e-4c47-9b1d-2a0c0f3e9d11.local 50000 typ host"
    " generation 0\r\n"
    "a=ice-ufrag:Xy7k\r\n"
    "a=ice-pwd:abcdefghijklmnopqrstuvwx\r\n"
    "a=ice-options:trickle\r\n"
    "a=setup:actpass\r\n"
    "a=mid:0\r\n"
    "a=sendrecv\r\n"
    "a=msid:stream track\r\n"
    "a=rtcp-mux\r\n"
    "a=rtpmap:111 opus/48000/2\r\n"
    "a=rtcp-fb:111 transport-cc\r\n"
    "a=fmtp:111 minptime=10;useinbandfec=1\r\n"
    "a=rtpmap:0 PCMU/8000\r\n"
    "a=rtpmap:8 PCMA/8000\r\n"
    "a=rtpmap:126 telephone-event/8000\r\n"
    "a=ssrc:1001 cname:abc\r\n"
)


def _offer() -> sdp.SessionDescription:
    return sdp.SessionDescription.parse(CHROME_OFFER)


def test_a_browser_offer_gives_its_ice_and_dtls_parameters_and_is_no_hold() -> None:
    offer = _offer()
    remote = webrtc.parameters(offer)
    assert remote is not None
    assert (remote.ufrag, remote.pwd, remote.setup, remote.mid) == (
        "Xy7k",
        "abcdefghijklmnopqrstuvwx",
        "actpass",
        "0",
    )
    assert remote.fingerprints == (("sha-256", DIGEST),)
    assert remote.dtls_client  # RFC 5763 §5: the answerer to actpass is active
    # c=0.0.0.0 on a WebRTC stream is ICE's placeholder, not an RFC 2543 hold.
    assert sdp.direction(offer) == "sendrecv"
    assert webrtc.parameters(sdp.make_offer("127.0.0.1", 4000, (PCMU,))) is None


@pytest.mark.parametrize("missing", ["a=fingerprint", "a=ice-pwd"])
def test_dtls_srtp_without_a_fingerprint_or_ice_password_is_not_acceptable(missing: str) -> None:
    text = "".join(
        line + "\r\n"
        for line in CHROME_OFFER.split("\r\n")
        if line and not line.startswith(missing)
    )
    with pytest.raises(sdp.SdpError) as refused:
        webrtc.parameters(sdp.SessionDescription.parse(text))
    assert refused.value.status_code == 488


def test_ipbx_answers_a_browser_as_an_ice_lite_dtls_endpoint() -> None:
    transport = WebRtcTransport(Channel(8), Channel(4), lambda keys: None)
    offer = _offer()
    remote = webrtc.parameters(offer)
    assert remote is not None
    transport.start(remote)
    answer, codec, dtmf = sdp.answer(offer, "192.0.2.1", 30000, (OPUS, PCMU), webrtc=transport)
    assert (codec.name, codec.payload_type, dtmf) == ("opus", 111, 126)
    audio = answer.audio
    assert audio is not None and audio.proto == "UDP/TLS/RTP/SAVPF"
    session = {a.name: a.value for a in answer.attributes}
    assert "ice-lite" in session and session["group"] == "BUNDLE 0"
    assert audio.attribute("mid") == "0"
    assert audio.attribute("ice-ufrag") == transport.local.ufrag
    assert audio.attribute("ice-pwd") == transport.local.pwd
    assert audio.attribute("candidate") == "1 1 udp 2130706431 192.0.2.1 30000 typ host"
    assert audio.attribute("fingerprint") == certificate().fingerprint
    assert audio.attribute("setup") == "active"
    assert "rtcp-mux" in {a.name for a in audio.attributes}
    # Without the leg's transport, the same offer has nothing ipbx can accept.
    with pytest.raises(sdp.SdpError):
        sdp.answer(offer, "192.0.2.1", 30000, (OPUS, PCMU))


def test_a_browser_offer_reaches_a_plain_phone_without_the_browsers_transport() -> None:
    anchored = sdp.anchor(_offer(), "192.0.2.1", 30002, crypto=[])
    audio = anchored.audio
    assert audio is not None and audio.proto == "RTP/AVP"
    names = {a.name for a in (*audio.attributes, *anchored.attributes)}
    assert not names & {"fingerprint", "setup", "ice-ufrag", "candidate", "rtcp-mux", "mid",
                        "group", "ssrc", "msid", "rtcp-fb", "rtcp"}  # fmt: skip
    assert audio.formats == ["111", "0", "8", "126"]
    assert audio.fmtp(111) == "minptime=10;useinbandfec=1"
