"""RFC 3550 §6.4 reports and §6.6 BYE."""

import pytest

from ipbx.media.rtcp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpError,
    SenderReport,
    parse_compound,
)

BLOCK = ReportBlock(0x1234, 25, -3, 70000, 42, 0xAABBCCDD, 65536)


def test_compound_sr_rr_bye_round_trip() -> None:
    sr = SenderReport(1, 0x0102030405060708, 160, 10, 1600, [BLOCK])
    rr = ReceiverReport(2, [BLOCK, BLOCK])
    bye = Bye([1, 2], "call ended")
    assert parse_compound(sr.serialize() + rr.serialize() + bye.serialize()) == [sr, rr, bye]


def test_sdes_is_skipped_by_its_length() -> None:
    sdes = bytes.fromhex("81ca0003 00000001 0105616c69 636500")
    rr = ReceiverReport(7)
    assert parse_compound(rr.serialize() + sdes) == [rr]


def test_lengths_are_in_32_bit_words_minus_one() -> None:
    data = Bye([5], "x").serialize()
    assert len(data) % 4 == 0
    assert int.from_bytes(data[2:4], "big") == len(data) // 4 - 1


@pytest.mark.parametrize(
    "data",
    [b"\x80\xc8", bytes.fromhex("40c90001 00000001"), bytes.fromhex("80c90005 00000001")],
)
def test_malformed_rtcp_raises(data: bytes) -> None:
    with pytest.raises(RtcpError):
        parse_compound(data)
