"""The message layer against RFC 4475's torture messages and round-trip properties."""

import contextlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipbx.sip.errors import SipError
from ipbx.sip.message import (
    BadRequest,
    Headers,
    Request,
    Response,
    StreamFramer,
    canonical_name,
    parse_datagram,
)
from ipbx.sip.uri import (
    Uri,
    display_name,
    parse_name_addr,
    parse_uri,
    parse_via,
    quoted_string,
    unescape,
)

TORTURE = Path(__file__).parent.parent / "conformance" / "rfc4475"

# Messages whose syntax is valid (RFC 4475 §3.1.1, §3.2, §3.3, §3.4): they must parse.
VALID = [
    "wsinv", "intmeth", "esc01", "escnull", "esc02", "lwsdisp", "longreq", "dblreq",
    "semiuri", "transports", "mpart01", "unreason", "noreason", "badbranch", "unkscm",
    "novelsc", "unksm2", "bext01", "invut", "regaut01", "mcl01x", "bcast", "zeromf",
    "cparam01", "cparam02", "regescrt", "sdp01", "inv2543", "regbadct", "baddate",
    "badaspec",
]  # fmt: skip
# Syntax errors a parser itself must refuse, with the status a server answers.
INVALID = {
    "badinv01": 400, "clerr": 400, "ncl": 400, "scalar02": 400, "quotbal": 400,
    "ltgtruri": 400, "lwsruri": 400, "lwsstart": 400, "trws": 400, "escruri": 400,
    "badvers": 505, "mismatch01": 400, "mismatch02": 400, "insuf": 400, "multi01": 400,
    "mcl01": 400, "test": 400,
}  # fmt: skip
# Responses with out-of-range values: refused, so that they are dropped.
BAD_RESPONSES = ["scalarlg", "bigcode"]


def load(name: str) -> bytes:
    return (TORTURE / f"{name}.dat").read_bytes()


@pytest.mark.parametrize("name", [n for n in VALID if (TORTURE / f"{n}.dat").exists()])
def test_valid_messages_parse(name: str) -> None:
    msg = parse_datagram(load(name))
    assert msg.call_id
    assert parse_datagram(msg.serialize()) == msg


@pytest.mark.parametrize("name,status", sorted(INVALID.items()))
def test_invalid_requests_are_refused_with_the_rfc_status(name: str, status: int) -> None:
    with pytest.raises(SipError) as info:
        parse_datagram(load(name))
    assert info.value.status == status


@pytest.mark.parametrize("name", BAD_RESPONSES)
def test_overlarge_response_values_are_refused(name: str) -> None:
    with pytest.raises(SipError):
        parse_datagram(load(name))


def test_baddn_unquoted_display_name_with_comma_is_refused() -> None:
    # The tarball copy lacks the final empty line; the message with it is still refused.
    with pytest.raises(SipError):
        parse_datagram(load("baddn") + b"\r\n")


def test_a_header_block_that_never_ends_is_refused_with_its_request() -> None:
    # The tarball copy of baddn has no empty line after its headers (RFC 3261 §7): the
    # request is still read far enough to address the 400 to its Via.
    with pytest.raises(BadRequest) as info:
        parse_datagram(load("baddn"))
    assert (info.value.status, info.value.reason) == (400, "no empty line after the header fields")
    request = info.value.request
    assert request.call_id == "baddn.31415@c.example.com"
    assert request.vias[0].branch == "z9hG4bKkdjuw"


def test_a_datagram_cut_inside_a_header_line_is_refused_from_its_complete_lines() -> None:
    whole = load("baddn")
    cut = whole.index(b"Accept:") + 4  # the datagram ends in the middle of "Accept"
    with pytest.raises(BadRequest) as info:
        parse_datagram(whole[:cut])
    assert info.value.request.headers.get("Call-ID") == "baddn.31415@c.example.com"
    assert "Accept" not in info.value.request.headers


def test_an_unterminated_request_line_alone_leaves_nothing_to_answer() -> None:
    with pytest.raises(BadRequest) as info:
        parse_datagram(b"OPTIONS sip:t.watson@example.org SIP/2.0")
    assert "Via" not in info.value.request.headers
    with pytest.raises(SipError) as broken:
        parse_datagram(b"SIP/2.0 20")  # a response cut in its status line
    assert not isinstance(broken.value, BadRequest)


def test_bad_version_keeps_the_request_for_the_505() -> None:
    with pytest.raises(BadRequest) as info:
        parse_datagram(load("badvers"))
    assert info.value.status == 505
    assert info.value.request.headers.get("Via")


def test_short_tortuous_invite_values() -> None:
    msg = parse_datagram(load("wsinv"))
    assert isinstance(msg, Request)
    assert msg.method == "INVITE"
    assert msg.uri.params == {"unknownparam": None}
    assert msg.max_forwards == 68
    assert (msg.cseq.number, msg.cseq.method) == (9, "INVITE")
    assert msg.to.tag == "1918181833n"
    assert msg.from_.tag == "98asjd8"
    assert msg.from_.display == '"J Rosenberg \\\\\\""'
    assert [v.branch for v in msg.vias] == ["390skdjuw", "z9hG4bK9ikj8", "z9hG4bK30239"]
    assert [v.transport for v in msg.vias] == ["UDP", "TCP", "UDP"]
    assert msg.headers.get("Subject") == ""
    assert msg.headers.get("NewFangledHeader") == "newfangled value continued newfangled value"
    assert msg.headers.get("UnknownHeaderWithUnusualValue") == ";;,,;;,;"
    contact = msg.contacts[0]
    assert contact.params == {"newparam": "newvalue", "secondparam": None, "q": "0.33"}
    assert len(msg.body) == 150


def test_wide_range_of_valid_characters() -> None:
    msg = parse_datagram(load("intmeth"))
    assert isinstance(msg, Request)
    assert msg.method == "!interesting-Method0123456789_*+`.%indeed'~"
    assert "\x00" in (msg.to.display or "")


def test_escapes_are_decoded_for_comparison() -> None:
    msg = parse_datagram(load("esc01"))
    assert isinstance(msg, Request)
    assert unescape(msg.uri.user or "") == "sips:user@example.com"
    assert unescape(msg.to.uri.user or "") == "user"
    assert unescape(msg.from_.uri.user or "") == "I have spaces"
    assert msg.to.uri.key() == parse_uri("sip:user@EXAMPLE.com").key()


def test_escaped_nulls_do_not_truncate() -> None:
    msg = parse_datagram(load("escnull"))
    assert unescape(msg.to.uri.user or "") == "null-\x00-null"
    assert len(msg.contacts) == 2


def test_percent_that_is_not_an_escape() -> None:
    msg = parse_datagram(load("esc02"))
    assert isinstance(msg, Request)
    assert msg.method == "RE%47IST%45R"
    assert len(msg.contacts) == 2


def test_trailing_octets_in_a_datagram_are_discarded() -> None:
    msg = parse_datagram(load("dblreq"))
    assert isinstance(msg, Request)
    assert msg.method == "REGISTER"
    assert msg.body == b""


def test_semicolon_in_user_part() -> None:
    msg = parse_datagram(load("semiuri"))
    assert isinstance(msg, Request)
    assert msg.uri.user == "user;par=u%40example.net"
    assert msg.uri.host == "example.com"
    assert msg.uri.params == {}


def test_binary_multipart_body_is_kept_by_length() -> None:
    data = load("mpart01")
    msg = parse_datagram(data)
    assert len(msg.body) == 553
    assert b"\x00" in msg.body or max(msg.body) > 0x7F
    assert msg.body == data[-553:]


def test_empty_and_unusual_reason_phrases() -> None:
    empty = parse_datagram(load("noreason"))
    assert isinstance(empty, Response)
    assert (empty.status, empty.reason) == (100, "")
    odd = parse_datagram(load("unreason"))
    assert isinstance(odd, Response)
    assert "простое" in odd.reason


def test_contact_parameters_with_and_without_brackets() -> None:
    bare = parse_datagram(load("cparam01")).contacts[0]
    assert str(bare.uri) == "sip:+19725552222@gw1.example.net"
    assert bare.params == {"unknownparam": None}
    bracketed = parse_datagram(load("cparam02")).contacts[0]
    assert bracketed.uri.params == {"unknownparam": None}


def test_unbracketed_contact_with_headers_is_refused() -> None:
    msg = parse_datagram(load("regbadct"))
    with pytest.raises(SipError):
        msg.contacts  # noqa: B018


def test_escaped_header_in_bracketed_contact_is_kept() -> None:
    contact = parse_datagram(load("regescrt")).contacts[0]
    assert contact.uri.headers == "Route=%3Csip:sip.example.com%3E"


def test_unknown_scheme_is_opaque() -> None:
    msg = parse_datagram(load("unkscm"))
    assert isinstance(msg, Request)
    assert not msg.uri.is_sip


def test_ipv6_references() -> None:
    uri = parse_uri("sip:[2001:db8::10]:5070;transport=tcp")
    assert uri.host_port() == ("2001:db8::10", 5070)
    assert uri.transport == "tcp"
    via = parse_via("SIP/2.0/UDP [2001:db8::9:1];branch=z9hG4bKas3-111;rport")
    assert via.host == "[2001:db8::9:1]"
    assert via.params == {"branch": "z9hG4bKas3-111", "rport": None}
    with pytest.raises(SipError):
        parse_uri("sip:[2001:db8::10:5070")


def test_name_addr_without_space_before_bracket() -> None:
    value = parse_name_addr("caller<sip:caller@example.com>;tag=323")
    assert value.display == "caller"
    assert value.tag == "323"


def test_a_display_name_reads_as_text_and_is_written_back_quoted_when_it_must_be() -> None:
    """RFC 3261 §25.1: a display-name is tokens or a quoted-string with quoted-pairs;
    what a person reads (`name`) has neither the quotes nor the escapes."""
    assert parse_name_addr('"PSTN caller" <sip:+12125550199@gw>').name == "PSTN caller"
    assert parse_name_addr(r'"J Rosenberg \\\"" <sip:j@example.com>').name == 'J Rosenberg \\"'
    assert parse_name_addr("Jane Roe <sip:jane@example.com>").name == "Jane Roe"
    assert parse_name_addr("<sip:jane@example.com>").name is None
    assert display_name("Acme Corp") == "Acme Corp"
    assert display_name("O'Brien, J.") == '"O\'Brien, J."'
    for text in ("PSTN caller", 'say "hi" \\ bye', "Müller, Jörg"):
        assert quoted_string(text) != text
        assert parse_name_addr(f"{quoted_string(text)} <sip:a@b>").name == text
        assert parse_name_addr(f"{display_name(text)} <sip:a@b>").name == text


def test_stream_framing_waits_for_the_body_and_answers_pings() -> None:
    data = load("esc01")
    framer = StreamFramer()
    assert list(framer.feed(b"\r\n\r\n" + data[:100])) == [StreamFramer.PING]
    assert list(framer.feed(data[100:-10])) == []
    messages = list(framer.feed(data[-10:] + data))
    assert len(messages) == 2
    assert messages[0] == messages[1] == parse_datagram(data)


def test_stream_framing_without_content_length_is_fatal() -> None:
    framer = StreamFramer()
    with pytest.raises(SipError):
        list(framer.feed(b"OPTIONS sip:a@b SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"
                    b"From: <sip:a@b>;tag=1\r\nTo: <sip:a@b>\r\nCall-ID: x\r\n"
                    b"CSeq: 1 OPTIONS\r\n\r\n"))  # fmt: skip


def test_stream_framing_bounds_header_size() -> None:
    framer = StreamFramer(max_size=1000)
    with pytest.raises(SipError):
        list(framer.feed(b"INVITE sip:a@b SIP/2.0\r\nX: " + b"y" * 2000))


# --- round trip properties -------------------------------------------------------------

token = st.text(
    alphabet=st.sampled_from(
        "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-.!%*_+`'~"
    ),
    min_size=1,
    max_size=12,
)
host = st.one_of(
    st.from_regex(r"[a-z][a-z0-9]{0,8}(\.[a-z][a-z0-9]{0,8}){0,2}", fullmatch=True),
    st.from_regex(r"192\.0\.2\.[0-9]{1,3}", fullmatch=True),
    st.just("[2001:db8::1]"),
)
# Headers whose values the parser checks: free text in them is a different test.
VALIDATED = {
    "Via", "From", "To", "Call-ID", "CSeq", "Max-Forwards", "Content-Length", "Expires",
}  # fmt: skip
value_text = st.text(
    alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x2FF, exclude_characters="\x7f"),
    max_size=40,
).map(str.strip)


@st.composite
def uris(draw: st.DrawFn) -> Uri:
    params = draw(st.dictionaries(token.map(str.lower), st.none() | token, max_size=3))
    return Uri(
        draw(st.sampled_from(["sip", "sips"])),
        draw(st.none() | token),
        None,
        draw(host),
        draw(st.none() | st.integers(1, 65535)),
        params,
    )


@st.composite
def messages(draw: st.DrawFn) -> Request | Response:
    method = draw(st.sampled_from(["INVITE", "REGISTER", "BYE", "OPTIONS"]) | token)
    uri = draw(uris())
    headers = Headers()
    headers.add("Via", f"SIP/2.0/UDP {draw(host)};branch=z9hG4bK{draw(token)}")
    headers.add("From", f'"{draw(token)}" <{draw(uris())}>;tag={draw(token)}')
    headers.add("To", f"<{draw(uris())}>")
    headers.add("Call-ID", draw(token) + "@" + draw(host))
    headers.add("CSeq", f"{draw(st.integers(0, 2**31 - 1))} {method}")
    headers.add("Max-Forwards", str(draw(st.integers(0, 255))))
    for name in draw(st.lists(token, max_size=4)):
        if canonical_name(name) not in VALIDATED:
            headers.add(name, draw(value_text))
    body = draw(st.binary(max_size=200))
    if draw(st.booleans()):
        return Request(headers, body, method, uri)
    headers.set("CSeq", f"1 {method}")
    return Response(headers, body, draw(st.integers(100, 699)), draw(value_text))


@given(messages())
def test_parse_serialize_round_trip(msg: Request | Response) -> None:
    assert parse_datagram(msg.serialize()) == msg


@given(messages(), st.integers(1, 50))
def test_stream_framing_any_split(msg: Request | Response, chunk: int) -> None:
    data = msg.serialize() * 2
    framer = StreamFramer()
    out: list[object] = []
    for i in range(0, len(data), chunk):
        out += list(framer.feed(data[i : i + chunk]))
    assert out == [msg, msg]


@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_sip_errors(data: bytes) -> None:
    with contextlib.suppress(SipError):
        parse_datagram(data)


def test_changing_one_header_reparses_only_that_one() -> None:
    msg = parse_datagram(load("esc01"))
    from_before, cseq_before = msg.from_, msg.cseq
    assert msg.via.params.get("received") is None
    msg.headers.replace_first(
        "Via", "SIP/2.0/UDP host5.example.net;branch=z9hG4bKx;received=1.2.3.4"
    )
    assert msg.via.params["received"] == "1.2.3.4"
    assert msg.from_ is from_before and msg.cseq is cseq_before
    msg.headers.set("From", "<sip:other@example.net>;tag=9")
    assert msg.from_.uri.user == "other"
