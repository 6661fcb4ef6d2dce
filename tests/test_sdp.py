"""SDP parsing (RFC 4566) and offer/answer (RFC 3264) for audio."""

import pytest

from ipbx.media.codecs import PCMA, PCMU, TELEPHONE_EVENT
from ipbx.media.codecs.base import Codec
from ipbx.sdp import (
    SdpError,
    SessionDescription,
    anchor,
    answer,
    direction,
    first_codec,
    limited_to,
    make_offer,
    negotiated,
    remote_address,
    with_format_parameters,
)

OPUS = Codec("opus", 111, 48000, 2)

# A typical desk phone offer: G.722 first, then G.711, DTMF on 101, plus lines we don't model.
PHONE_OFFER = (
    "v=0\r\n"
    "o=yealink 1234 5678 IN IP4 192.168.1.20\r\n"
    "s=SDP data\r\n"
    "i=a call\r\n"
    "c=IN IP4 192.168.1.20\r\n"
    "b=AS:84\r\n"
    "t=0 0\r\n"
    "m=audio 11780 RTP/AVP 9 8 0 101\r\n"
    "a=rtpmap:9 G722/8000\r\n"
    "a=rtpmap:101 telephone-event/8000\r\n"
    "a=fmtp:101 0-15\r\n"
    "a=ptime:20\r\n"
    "a=x-custom:keep me\r\n"
    "a=sendrecv\r\n"
)


def offer_with(body: str, connection: str = "c=IN IP4 10.0.0.1\r\n") -> SessionDescription:
    return SessionDescription.parse(
        f"v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\n{connection}t=0 0\r\n{body}"
    )


def test_parse_then_serialize_preserves_every_line() -> None:
    assert SessionDescription.parse(PHONE_OFFER).serialize() == PHONE_OFFER


def test_parse_reads_the_fields_we_model() -> None:
    sdp = SessionDescription.parse(PHONE_OFFER.encode())
    assert sdp.origin.username == "yealink" and sdp.origin.version == 5678
    assert sdp.connection is not None and sdp.connection.address == "192.168.1.20"
    audio = sdp.audio
    assert audio is not None and audio.payload_types() == [9, 8, 0, 101]
    assert audio.rtpmaps()[101].name == "telephone-event"
    assert audio.fmtp(101) == "0-15"
    assert audio.attribute("x-custom") == "keep me"
    assert remote_address(sdp) == ("192.168.1.20", 11780)


def test_accepts_bare_lf_and_keeps_several_m_lines_in_order() -> None:
    text = (
        "v=0\no=- 1 1 IN IP4 1.2.3.4\ns=-\nt=0 0\n"
        "m=audio 4000 RTP/AVP 0\nc=IN IP4 1.2.3.4\n"
        "m=video 4002 RTP/AVP 96\na=rtpmap:96 H264/90000\n"
    )
    sdp = SessionDescription.parse(text)
    assert [m.media for m in sdp.media] == ["audio", "video"]
    assert sdp.serialize() == text.replace("\n", "\r\n")


def test_lines_are_written_in_rfc_4566_order() -> None:
    sdp = make_offer("10.0.0.5", 20000, [PCMU], session_id=7)
    sdp.lines.append(("b", "AS:64"))
    kinds = [line[0] for line in sdp.serialize().splitlines()]
    assert kinds[:6] == ["v", "o", "s", "c", "b", "t"]


@pytest.mark.parametrize(
    "text",
    [
        "",
        "o=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=1\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\ns=-\r\n",
        "v=0\r\nc=IN IP4 1.2.3.4\r\no=- 1 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- 1 IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- 1 x IN IP4 1.2.3.4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nthis is not sdp\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nc=IN IP4\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio 99999 RTP/AVP 0\r\n",
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\nm=audio port RTP/AVP 0\r\n",
    ],
)
def test_malformed_sdp_raises_sdp_error_400(text: str) -> None:
    with pytest.raises(SdpError) as error:
        SessionDescription.parse(text)
    assert error.value.status_code == 400


def test_non_utf8_is_malformed() -> None:
    with pytest.raises(SdpError):
        SessionDescription.parse(b"v=0\r\no=\xff\r\n")


def test_offer_lists_codecs_in_preference_order_with_telephone_event() -> None:
    sdp = make_offer("10.0.0.5", 20000, [PCMA, PCMU], session_id=42, version=3)
    assert sdp.serialize() == (
        "v=0\r\n"
        "o=- 42 3 IN IP4 10.0.0.5\r\n"
        "s=-\r\n"
        "c=IN IP4 10.0.0.5\r\n"
        "t=0 0\r\n"
        "m=audio 20000 RTP/AVP 8 0 101\r\n"
        "a=rtpmap:8 PCMA/8000\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    )


def test_offer_on_ipv6_and_on_hold() -> None:
    sdp = make_offer("2001:db8::1", 20000, [PCMU], dtmf=False, direction="sendonly")
    assert "c=IN IP6 2001:db8::1" in sdp.serialize()
    assert "telephone-event" not in sdp.serialize()
    assert direction(sdp) == "sendonly"


def test_telephone_event_moves_off_a_taken_payload_type() -> None:
    sdp = make_offer("10.0.0.5", 20000, [Codec("L16", 101, 8000)])
    assert sdp.audio is not None and sdp.audio.payload_types() == [101, 96]


def test_answer_picks_our_first_preference_with_static_payload_types() -> None:
    offer = SessionDescription.parse(PHONE_OFFER)
    sdp, codec, dtmf_pt = answer(offer, "10.0.0.5", 30000, [PCMU, PCMA], session_id=9)
    assert codec == PCMU and dtmf_pt == 101
    assert sdp.serialize() == (
        "v=0\r\n"
        "o=- 9 0 IN IP4 10.0.0.5\r\n"
        "s=-\r\n"
        "c=IN IP4 10.0.0.5\r\n"
        "t=0 0\r\n"
        "m=audio 30000 RTP/AVP 0 101\r\n"
        "a=rtpmap:0 PCMU/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-16\r\n"
        "a=ptime:20\r\n"
        "a=sendrecv\r\n"
    )


def test_static_payload_type_without_rtpmap_matches_by_number() -> None:
    offer = offer_with("m=audio 4000 RTP/AVP 8\r\n")
    _, codec, dtmf_pt = answer(offer, "10.0.0.5", 30000, [PCMU, PCMA])
    assert codec == PCMA and dtmf_pt is None


def test_dynamic_payload_types_match_by_name_and_rate_and_keep_offer_numbers() -> None:
    offer = offer_with(
        "m=audio 4000 RTP/AVP 97 120 126\r\n"
        "a=rtpmap:97 opus/48000/2\r\n"
        "a=rtpmap:120 telephone-event/48000\r\n"
        "a=rtpmap:126 telephone-event/8000\r\n"
    )
    sdp, codec, dtmf_pt = answer(offer, "10.0.0.5", 30000, [OPUS, PCMU])
    assert codec == Codec("opus", 97, 48000, 2)
    assert dtmf_pt == 120  # the telephone-event at the codec's clock rate
    assert sdp.audio is not None and sdp.audio.formats == ["97", "120"]
    assert "a=rtpmap:97 opus/48000/2" in sdp.serialize()


def test_no_common_codec_is_488() -> None:
    offer = offer_with("m=audio 4000 RTP/AVP 9 18\r\n")
    with pytest.raises(SdpError) as error:
        answer(offer, "10.0.0.5", 30000, [PCMU, PCMA])
    assert error.value.status_code == 488


def test_srtp_only_offer_is_488() -> None:
    offer = offer_with("m=audio 4000 RTP/SAVP 0\r\n")
    with pytest.raises(SdpError, match="no common"):
        answer(offer, "10.0.0.5", 30000, [PCMU])


def test_unsupported_streams_are_rejected_in_place_with_port_0() -> None:
    offer = offer_with(
        "m=video 5000 RTP/AVP 96\r\na=rtpmap:96 VP8/90000\r\n"
        "m=audio 4000 RTP/AVP 0\r\n"
        "m=audio 4002 RTP/AVP 0\r\n"
    )
    sdp, _, _ = answer(offer, "10.0.0.5", 30000, [PCMU])
    assert [(m.media, m.port, m.formats) for m in sdp.media] == [
        ("video", 0, ["96"]),
        ("audio", 30000, ["0"]),
        ("audio", 0, ["0"]),
    ]


@pytest.mark.parametrize(
    ("offered", "answered"),
    [
        ("a=sendrecv\r\n", "sendrecv"),
        ("", "sendrecv"),
        ("a=sendonly\r\n", "recvonly"),
        ("a=recvonly\r\n", "sendonly"),
        ("a=inactive\r\n", "inactive"),
    ],
)
def test_answer_mirrors_the_direction(offered: str, answered: str) -> None:
    sdp, _, _ = answer(offer_with(f"m=audio 4000 RTP/AVP 0\r\n{offered}"), "10.0.0.5", 1, [PCMU])
    assert direction(sdp) == answered


def test_session_level_direction_applies_to_the_stream() -> None:
    offer = SessionDescription.parse(
        "v=0\r\no=- 1 1 IN IP4 1.2.3.4\r\ns=-\r\nc=IN IP4 1.2.3.4\r\nt=0 0\r\n"
        "a=sendonly\r\nm=audio 4000 RTP/AVP 0\r\n"
    )
    assert direction(offer) == "sendonly"


@pytest.mark.parametrize(("attribute", "held"), [("", "sendonly"), ("a=recvonly\r\n", "inactive")])
def test_rfc_2543_hold_with_zero_connection_address(attribute: str, held: str) -> None:
    offer = offer_with(f"m=audio 4000 RTP/AVP 0\r\n{attribute}", "c=IN IP4 0.0.0.0\r\n")
    assert direction(offer) == held
    sdp, _, _ = answer(offer, "10.0.0.5", 30000, [PCMU])
    assert direction(sdp) == {"sendonly": "recvonly", "inactive": "inactive"}[held]


def test_negotiated_reads_the_answerers_choice() -> None:
    offer = make_offer("10.0.0.5", 20000, [PCMU, PCMA], session_id=1)
    reply, _, _ = answer(offer, "10.0.0.9", 40000, [PCMA])
    assert negotiated(reply, [PCMU, PCMA]) == (PCMA, 101)
    assert remote_address(reply) == ("10.0.0.9", 40000)


def test_negotiated_refuses_an_answer_without_our_codecs() -> None:
    reply = offer_with("m=audio 4000 RTP/AVP 9\r\n")
    with pytest.raises(SdpError):
        negotiated(reply, [PCMU])


def test_rejected_audio_has_no_address() -> None:
    reply = offer_with("m=audio 0 RTP/AVP 0\r\n")
    with pytest.raises(SdpError) as error:
        remote_address(reply)
    assert error.value.status_code == 488


def test_anchor_puts_us_in_the_media_path_and_keeps_the_rest() -> None:
    original = SessionDescription.parse(
        PHONE_OFFER + "a=rtcp:11781\r\na=candidate:1 1 UDP 1 192.168.1.20 11780 typ host\r\n"
        "m=video 11790 RTP/AVP 96\r\nc=IN IP4 192.168.1.20\r\n"
    )
    rewritten = anchor(original, "203.0.113.7", 31000)
    text = rewritten.serialize()
    assert "192.168.1.20" not in text
    assert rewritten.origin.version == 5679 and rewritten.origin.session_id == "1234"
    assert remote_address(rewritten) == ("203.0.113.7", 31000)
    assert rewritten.media[1].port == 0  # we relay audio only
    assert "a=x-custom:keep me" in text and "b=AS:84" in text and "i=a call" in text
    assert "a=rtcp" not in text and "candidate" not in text
    assert original.serialize().startswith(PHONE_OFFER)  # the input is untouched


def test_anchor_drops_the_sources_the_phone_declares() -> None:
    """baresip declares its SSRC (RFC 5576); across a transcoded call the other phone
    gets ipbx's own stream, from another SSRC, so the line must not reach it."""
    original = offer_with(
        "m=audio 4000 RTP/AVP 0\r\na=ssrc:2777671608 cname:sip:1000@127.0.0.1\r\n"
        "a=ssrc-group:FID 2777671608 1\r\na=sendrecv\r\n"
    )
    text = anchor(original, "203.0.113.7", 31000).serialize()
    assert "a=ssrc" not in text
    assert "m=audio 31000 RTP/AVP 0\r\na=sendrecv\r\n" in text


def test_anchor_restates_a_2543_hold_as_an_attribute() -> None:
    held = offer_with("m=audio 4000 RTP/AVP 0\r\n", "c=IN IP4 0.0.0.0\r\n")
    rewritten = anchor(held, "203.0.113.7", 31000, version=1)
    assert rewritten.origin.version == 1
    assert direction(rewritten) == "sendonly"
    assert "a=sendonly" in rewritten.serialize()


def test_telephone_event_codec_entry_is_what_offers_use() -> None:
    sdp = make_offer("10.0.0.5", 20000, [PCMU])
    assert sdp.audio is not None
    assert sdp.audio.rtpmaps()[TELEPHONE_EVENT.payload_type].matches(TELEPHONE_EVENT)


def test_opus_beside_telephone_event_at_8000_still_gets_digits() -> None:
    """Many phones offer only telephone-event/8000 next to Opus (RFC 4733 wants 48000)."""
    offer = offer_with(
        "m=audio 4000 RTP/AVP 97 101\r\n"
        "a=rtpmap:97 opus/48000/2\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
    )
    sdp, codec, dtmf_pt = answer(offer, "10.0.0.5", 30000, [OPUS, PCMU])
    assert (codec.name, dtmf_pt) == ("opus", 101)
    assert "a=rtpmap:101 telephone-event/8000" in sdp.serialize()


def test_format_parameters_of_an_fmtp_line() -> None:
    offer = offer_with(
        "m=audio 4000 RTP/AVP 111 101\r\n"
        "a=rtpmap:111 opus/48000/2\r\n"
        "a=fmtp:111 minptime=10; useinbandfec=1;Stereo=0\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
        "a=fmtp:101 0-15\r\n"
    )
    audio = offer.audio
    assert audio is not None
    assert audio.format_parameters(111) == {"minptime": "10", "useinbandfec": "1", "stereo": "0"}
    assert audio.format_parameters(101) == {"0-15": ""}
    assert audio.format_parameters(0) == {}


@pytest.mark.parametrize(
    ("formats", "rtpmaps", "codec"),
    [
        ("101 0", ["101 telephone-event/8000"], ("PCMU", 0)),
        ("13 8", [], ("PCMA", 8)),
        ("100 101 96", ["100 RED/48000/2", "101 ulpfec/48000", "96 opus/48000/2"], ("opus", 96)),
        ("97 9", ["97 flexfec/8000"], ("G722", 9)),
    ],
    ids=["telephone-event", "static-cn", "red-ulpfec", "flexfec"],
)
def test_the_codec_of_an_answer_is_its_first_audio_codec(
    formats: str, rtpmaps: list[str], codec: tuple[str, int]
) -> None:
    """RFC 3264 §6.1: the answerer lists its choice first, but telephone-event, comfort
    noise, RED and FEC formats carry no audio of their own and are not that choice."""
    lines = "".join(f"a=rtpmap:{r}\r\n" for r in rtpmaps)
    media = offer_with(f"m=audio 4000 RTP/AVP {formats}\r\n{lines}").audio
    assert media is not None
    chosen = first_codec(media)
    assert (chosen.name, chosen.payload_type) == codec


def test_a_stream_of_telephone_events_alone_holds_no_codec() -> None:
    media = offer_with("m=audio 4000 RTP/AVP 101\r\na=rtpmap:101 telephone-event/8000\r\n").audio
    assert media is not None
    with pytest.raises(SdpError) as error:
        first_codec(media)
    assert error.value.status_code == 488


def test_an_answer_limited_to_its_offer_keeps_only_the_offered_formats() -> None:
    """The formats ipbx added for the callee (PCMA here) leave the answer the caller
    gets, with their rtpmap and fmtp; names match regardless of case (RFC 4855)."""
    offer = offer_with(
        "m=audio 4000 RTP/AVP 0 101\r\na=rtpmap:0 pcmu/8000\r\n"
        "a=rtpmap:101 telephone-event/8000\r\n"
    )
    wider = offer_with(
        "m=audio 5000 RTP/AVP 0 8 101 13\r\na=rtpmap:8 PCMA/8000\r\n"
        "a=fmtp:8 annexb=no\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\n"
    )
    audio = limited_to(wider, offer).audio
    assert audio is not None
    assert audio.formats == ["0", "101"]
    assert [str(a) for a in audio.attributes if a.name in ("rtpmap", "fmtp")] == [
        "rtpmap:101 telephone-event/8000",
        "fmtp:101 0-16",
    ]


def test_format_parameters_are_merged_into_the_formats_fmtp_after_its_rtpmap() -> None:
    offer = SessionDescription.parse(
        b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        b"m=audio 4000 RTP/AVP 111 0\r\na=rtpmap:111 opus/48000/2\r\n"
        b"a=fmtp:111 useinbandfec=1;maxplaybackrate=48000\r\na=rtpmap:0 PCMU/8000\r\n"
    )
    capped = with_format_parameters(offer, 111, {"maxplaybackrate": "8000"})
    audio = capped.audio
    assert audio is not None
    assert audio.format_parameters(111) == {"useinbandfec": "1", "maxplaybackrate": "8000"}
    assert [a.name for a in audio.attributes] == ["rtpmap", "fmtp", "rtpmap"]
    assert offer.audio is not None and offer.audio.format_parameters(111)["maxplaybackrate"] == (
        "48000"
    )  # the original is untouched
    plain = with_format_parameters(offer, 0, {"x": "1"}).audio
    assert plain is not None and plain.fmtp(0) == "x=1"
