"""bench/sipua.py: the little SIP parsing and the digest the media benchmark's user agents
rely on."""

from __future__ import annotations

from bench.sipua import (
    digest_authorization,
    media_port,
    parse_message,
    playback_rate,
    sdp_body,
    tag_of,
    uri_of,
)


def test_digest_matches_the_rfc_2617_example() -> None:
    # RFC 2617 §3.5 (the qop=auth example RFC 7616 keeps for MD5).
    challenge = (
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    header = digest_authorization(
        challenge, "GET", "/dir/index.html", "Mufasa", "Circle Of Life", cnonce="0a4f113b"
    )
    assert 'response="6629fae49393a05397450978507c4ef1"' in header
    assert "qop=auth, nc=00000001" in header
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in header


def test_response_parsing_with_compact_and_folded_headers() -> None:
    body = sdp_body(40000, 0, "PCMU/8000")
    data = (
        b"SIP/2.0 200 OK\r\n"
        b"v: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n"
        b"f: <sip:1000@127.0.0.1>;tag=a\r\n"
        b"t: <sip:1001@127.0.0.1>;tag=b\r\n"
        b"i: call-1\r\n"
        b"CSeq: 2\r\n INVITE\r\n"
        b"m: <sip:ipbx@127.0.0.1:5060;transport=udp>\r\n"
        b"\r\n" + body
    )
    message = parse_message(data)
    assert message.status == 200
    assert message.method == "INVITE"
    assert message.key == ("call-1", 2, "INVITE")
    assert tag_of(message.header("to")) == "b"
    assert uri_of(message.header("contact")) == "sip:ipbx@127.0.0.1:5060;transport=udp"
    assert media_port(message.body) == 40000


def test_an_answers_maxplaybackrate_is_read_and_the_opus_caller_heeds_it() -> None:
    """RFC 7587 §6.1: the load tool's Opus caller encodes no wider than the rate the
    relay's answer gives it (narrowband at 8000: TOC configurations 0-3 or 16-19, RFC
    6716 §3.1), and a G.711 caller sends as it is."""
    from bench.rtpload import CallPorts, heeding, opus, pcmu

    capped = sdp_body(40000, 111, "opus/48000/2") + b"a=fmtp:111 maxplaybackrate=8000\r\n"
    assert playback_rate(capped) == 8000
    assert playback_rate(sdp_body(40000, 111, "opus/48000/2")) == 48000
    calls = [CallPorts(1, 2, 8000), CallPorts(3, 4)]
    sent = heeding(calls, opus())
    assert {p[0] >> 3 for p in sent[8000].payloads} <= {0, 1, 2, 3, 16, 17, 18, 19}
    assert {p[0] >> 3 for p in sent[48000].payloads} - {0, 1, 2, 3, 16, 17, 18, 19}
    g711 = pcmu()
    assert heeding(calls, g711) == {8000: g711, 48000: g711}
