"""SDES a=crypto (RFC 4568) and SRTP/SRTCP protection through libsrtp (RFC 3711)."""

import base64

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipbx.media.rtcp import ReceiverReport, ReportBlock
from ipbx.media.rtp import RtpPacket
from ipbx.media.srtp import (
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
    KEY_SALT_LENGTH,
    SUITES,
    CryptoAttribute,
    CryptoError,
    Mki,
    SrtpContext,
    SrtpError,
    choose_crypto,
    new_crypto,
    protecting,
    unprotecting,
)

# The key of RFC 4568's own examples.
RFC_KEY = "WVNfX19zZW1jdGwgKCkgewkyMjA7fQp9CnVubGVz"
PAYLOAD = bytes(range(160))


def rtp(seq: int = 1, payload: bytes = PAYLOAD) -> bytes:
    return RtpPacket(0, seq, 160 * seq, 0x1234ABCD, payload).serialize()


def rtcp() -> bytes:
    return ReceiverReport(0x1234ABCD, [ReportBlock(0x55, 0, 0, 7, 3, 0, 0)]).serialize()


def pair(suite: str = AES_CM_128_HMAC_SHA1_80) -> tuple[SrtpContext, SrtpContext]:
    """Two ends of one leg: each sends with its key and receives with the other's."""
    a, b = new_crypto(1, suite), new_crypto(1, suite)
    return SrtpContext(a, b), SrtpContext(b, a)


# --- a=crypto -----------------------------------------------------------------


def test_parses_the_rfc_example_with_lifetime_and_mki() -> None:
    crypto = CryptoAttribute.parse(f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:4")
    assert crypto.tag == 1
    assert crypto.suite == AES_CM_128_HMAC_SHA1_80
    assert crypto.key == base64.b64decode(RFC_KEY)
    assert crypto.lifetime == 1 << 20
    assert crypto.mki == Mki(1, 4)
    assert bytes(crypto.mki) == b"\x00\x00\x00\x01"
    assert crypto.session_params == ()


@pytest.mark.parametrize(
    "value",
    [
        f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}",
        f"2 AES_CM_128_HMAC_SHA1_32 inline:{RFC_KEY}|2^31",
        f"3 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1000",
        f"4 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|7:1",
        f"5 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:32",
        f"6 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} KDR=0 WSH=128",
        f"999999999 AES_CM_128_HMAC_SHA1_32 inline:{RFC_KEY}",
    ],
)
def test_format_gives_back_what_was_parsed(value: str) -> None:
    assert str(CryptoAttribute.parse(value)) == value


def test_lifetime_in_decimal_that_is_a_power_of_two_is_written_as_one() -> None:
    crypto = CryptoAttribute.parse(f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1024")
    assert crypto.lifetime == 1024
    assert str(crypto).endswith("|2^10")


def test_parse_tolerates_extra_whitespace_and_key_method_case() -> None:
    crypto = CryptoAttribute.parse(f" 1\tAES_CM_128_HMAC_SHA1_80   INLINE:{RFC_KEY} ")
    assert crypto.key == base64.b64decode(RFC_KEY)


@given(
    tag=st.integers(0, 999_999_999),
    suite=st.sampled_from(SUITES),
    key=st.binary(min_size=KEY_SALT_LENGTH, max_size=KEY_SALT_LENGTH),
    lifetime=st.one_of(st.none(), st.integers(1, 1 << 48)),
    mki=st.one_of(
        st.none(),
        st.integers(1, 128).flatmap(
            lambda n: st.builds(Mki, st.integers(0, (1 << (8 * n)) - 1), st.just(n))
        ),
    ),
)
def test_any_attribute_round_trips(
    tag: int, suite: str, key: bytes, lifetime: int | None, mki: Mki | None
) -> None:
    crypto = CryptoAttribute(tag, suite, key, lifetime, mki)
    assert CryptoAttribute.parse(str(crypto)) == crypto


@pytest.mark.parametrize(
    ("value", "complaint"),
    [
        ("", "needs a tag"),
        ("1 AES_CM_128_HMAC_SHA1_80", "needs a tag"),
        (f"x AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}", "tag"),
        (f"1234567890 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}", "tag"),
        (f"-1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}", "tag"),
        (f"1 AES_256_CM_HMAC_SHA1_80 inline:{RFC_KEY}", "unsupported crypto suite"),
        (f"1 F8_128_HMAC_SHA1_80 inline:{RFC_KEY}", "unsupported crypto suite"),
        (f"1 AES_CM_128_HMAC_SHA1_80 {RFC_KEY}", "inline"),
        (f"1 AES_CM_128_HMAC_SHA1_80 uri:{RFC_KEY}", "inline"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:", "30 octets"),
        ("1 AES_CM_128_HMAC_SHA1_80 inline:AAAA", "30 octets"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}AAAA", "30 octets"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY[:-1]}!", "base64"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^", "lifetime"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^99", "lifetime"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|0", "lifetime"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|forever", "lifetime"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1:", "MKI"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1:0", "MKI length"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1:129", "MKI length"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|256:1", "does not fit"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1:4|2^20", "unexpected"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:4|x", "unexpected"),
        (f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|1:4;inline:{RFC_KEY}|2:4", "more than one"),
    ],
)
def test_malformed_attributes_are_rejected_with_a_reason(value: str, complaint: str) -> None:
    with pytest.raises(CryptoError, match=complaint):
        CryptoAttribute.parse(value)


def test_new_crypto_draws_fresh_key_material() -> None:
    first, second = new_crypto(1), new_crypto(1, AES_CM_128_HMAC_SHA1_32)
    assert len(first.key) == len(second.key) == KEY_SALT_LENGTH
    assert first.key != second.key
    assert (first.lifetime, first.mki, first.session_params) == (None, None, ())
    assert CryptoAttribute.parse(str(second)) == second


# --- choose_crypto --------------------------------------------------------------


def test_answer_prefers_80_and_keeps_the_offered_tag_with_our_own_key() -> None:
    offered = [new_crypto(1, AES_CM_128_HMAC_SHA1_32), new_crypto(2, AES_CM_128_HMAC_SHA1_80)]
    answer = choose_crypto(offered)
    assert answer is not None
    assert (answer.tag, answer.suite) == (2, AES_CM_128_HMAC_SHA1_80)
    assert answer.key not in {crypto.key for crypto in offered}
    assert len(answer.key) == KEY_SALT_LENGTH


def test_answer_falls_back_to_32() -> None:
    answer = choose_crypto([new_crypto(7, AES_CM_128_HMAC_SHA1_32)])
    assert answer is not None
    assert (answer.tag, answer.suite) == (7, AES_CM_128_HMAC_SHA1_32)


def test_answer_drops_the_offerers_lifetime_and_mki() -> None:
    offered = CryptoAttribute.parse(f"3 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY}|2^20|1:4")
    answer = choose_crypto([offered])
    assert answer is not None
    assert (answer.tag, answer.lifetime, answer.mki) == (3, None, None)


def test_nothing_acceptable_gives_none() -> None:
    with_params = CryptoAttribute.parse(f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} KDR=1")
    assert choose_crypto([]) is None
    assert choose_crypto([with_params]) is None


# --- SrtpContext ------------------------------------------------------------------


@pytest.mark.parametrize(("suite", "tag_length"), [(SUITES[0], 10), (SUITES[1], 4)])
def test_rtp_round_trips_encrypted_and_authenticated(suite: str, tag_length: int) -> None:
    ours, theirs = pair(suite)
    for seq in (1, 2, 3):
        plain = rtp(seq)
        protected = ours.protect(plain)
        assert len(protected) == len(plain) + tag_length
        assert protected[:12] == plain[:12]  # RFC 3711 §3.1: the header stays in clear
        assert PAYLOAD[:16] not in protected
        assert theirs.unprotect(protected) == plain
    assert ours.unprotect(theirs.protect(rtp(5))) == rtp(5)


@pytest.mark.parametrize("suite", SUITES)
def test_rtcp_round_trips_with_an_80_bit_tag(suite: str) -> None:
    ours, theirs = pair(suite)
    plain = rtcp()
    protected = ours.protect_rtcp(plain)
    # RFC 3711 §3.4: E flag and SRTCP index (4 octets), then the tag, 80 bits for both suites.
    assert len(protected) == len(plain) + 4 + 10
    assert protected[:8] == plain[:8]
    assert plain[8:] not in protected
    assert theirs.unprotect_rtcp(protected) == plain
    assert ours.unprotect_rtcp(theirs.protect_rtcp(plain)) == plain


def test_tampering_is_rejected() -> None:
    ours, theirs = pair()
    protected = bytearray(ours.protect(rtp()))
    protected[20] ^= 1
    with pytest.raises(SrtpError, match="authentication"):
        theirs.unprotect(bytes(protected))
    srtcp = bytearray(ours.protect_rtcp(rtcp()))
    srtcp[10] ^= 1
    with pytest.raises(SrtpError, match="authentication"):
        theirs.unprotect_rtcp(bytes(srtcp))


def test_a_packet_under_another_key_is_rejected() -> None:
    ours, _ = pair()
    _, stranger = pair()
    with pytest.raises(SrtpError):
        stranger.unprotect(ours.protect(rtp()))


def test_replay_is_rejected() -> None:
    ours, theirs = pair()
    first, second = ours.protect(rtp(1)), ours.protect(rtp(2))
    assert theirs.unprotect(second) == rtp(2)
    assert theirs.unprotect(first) == rtp(1)  # late but inside the window: fine
    with pytest.raises(SrtpError, match="replay"):
        theirs.unprotect(second)
    srtcp = ours.protect_rtcp(rtcp())
    theirs.unprotect_rtcp(srtcp)
    with pytest.raises(SrtpError, match="replay"):
        theirs.unprotect_rtcp(srtcp)


def test_garbage_raises_srtp_error_not_a_crash() -> None:
    _, theirs = pair()
    for junk in (b"", b"\x80", b"\x80\x00" + bytes(30), bytes(3000)):
        with pytest.raises(SrtpError):
            theirs.unprotect(junk)
        with pytest.raises(SrtpError):
            theirs.unprotect_rtcp(junk)


def test_mki_is_sent_and_checked() -> None:
    ours_key = CryptoAttribute(1, AES_CM_128_HMAC_SHA1_32, new_crypto(1).key, mki=Mki(5, 2))
    theirs_key = new_crypto(1, AES_CM_128_HMAC_SHA1_32)
    ours, theirs = SrtpContext(ours_key, theirs_key), SrtpContext(theirs_key, ours_key)
    plain = rtp()
    protected = ours.protect(plain)
    # RFC 3711 §3.1: the MKI comes right before the authentication tag.
    assert len(protected) == len(plain) + 2 + 4
    assert protected[-6:-4] == b"\x00\x05"
    assert theirs.unprotect(protected) == plain
    srtcp = ours.protect_rtcp(rtcp())
    assert srtcp[-12:-10] == b"\x00\x05"
    assert theirs.unprotect_rtcp(srtcp) == rtcp()
    wrong = protected[:-6] + b"\x00\x06" + protected[-4:]
    with pytest.raises(SrtpError, match="MKI"):
        theirs.unprotect(wrong)
    with pytest.raises(SrtpError, match="MKI"):
        theirs.unprotect(b"\x00")


def test_session_parameters_are_refused() -> None:
    with_params = CryptoAttribute.parse(f"1 AES_CM_128_HMAC_SHA1_80 inline:{RFC_KEY} WSH=64")
    with pytest.raises(CryptoError, match="session parameters"):
        SrtpContext(new_crypto(1), with_params)


# --- sink adapters ------------------------------------------------------------------


def test_plain_to_protecting_to_unprotecting_gives_back_the_original() -> None:
    ours, theirs = pair()
    received: list[bytes] = []
    wire: list[bytes] = []

    def on_wire(data: bytes) -> None:
        wire.append(data)
        into_theirs(data)

    into_theirs = unprotecting(theirs, received.append)
    send = protecting(ours, on_wire)
    packets = [rtp(1), rtcp(), rtp(2)]  # RTCP muxed on the RTP port (RFC 5761) too
    for packet in packets:
        send(packet)
    assert received == packets
    assert all(w != p for w, p in zip(wire, packets, strict=True))
    assert ours.dropped == theirs.dropped == 0


def test_unprotecting_drops_and_counts_bad_packets() -> None:
    ours, theirs = pair()
    received: list[bytes] = []
    receive = unprotecting(theirs, received.append)
    good = ours.protect(rtp())
    receive(good)
    receive(good)  # replayed
    receive(rtp(2))  # plain RTP on an SRTP leg
    receive(ours.protect_rtcp(rtcp())[:-1])  # truncated tag
    assert received == [rtp()]
    assert theirs.dropped == 3


def test_protecting_drops_and_counts_what_cannot_be_protected() -> None:
    ours, _ = pair()
    sent: list[bytes] = []
    send = protecting(ours, sent.append)
    send(rtp(1))
    send(rtp(1))  # RFC 3711 §9.1: never the same index twice under one key
    send(bytes(3000))
    assert len(sent) == 1
    assert ours.dropped == 2
