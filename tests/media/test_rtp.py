"""RFC 3550 §5.1 packet format and RFC 5761 demultiplexing."""

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ipbx.media.rtp import (
    RtpError,
    RtpPacket,
    fixed_header,
    is_rtcp,
    seq_add,
    seq_diff,
    seq_newer,
)

packets = st.builds(
    RtpPacket,
    payload_type=st.integers(0, 127),
    sequence_number=st.integers(0, 0xFFFF),
    timestamp=st.integers(0, 0xFFFFFFFF),
    ssrc=st.integers(0, 0xFFFFFFFF),
    payload=st.binary(max_size=200),
    marker=st.booleans(),
    csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15),
    extension_profile=st.one_of(st.none(), st.integers(0, 0xFFFF)),
    extension=st.integers(0, 4).map(lambda words: bytes(range(4 * words))),
    padding=st.integers(0, 255),
)


@given(packets)
def test_serialize_then_parse_round_trips(packet: RtpPacket) -> None:
    if packet.extension_profile is None:
        packet.extension = b""
    assert RtpPacket.parse(packet.serialize()) == packet


@given(packets)
def test_parse_then_serialize_is_byte_exact(packet: RtpPacket) -> None:
    data = packet.serialize()
    assert RtpPacket.parse(data).serialize() == data


def test_parses_a_pcmu_packet_by_hand() -> None:
    data = bytes.fromhex("80 80 1234 00000064 deadbeef") + b"\xff" * 160
    packet = RtpPacket.parse(data)
    assert (packet.payload_type, packet.marker) == (0, True)
    assert (packet.sequence_number, packet.timestamp, packet.ssrc) == (0x1234, 100, 0xDEADBEEF)
    assert packet.payload == b"\xff" * 160


def test_extension_header_is_skipped_before_the_payload() -> None:
    # §5.3.1: 16-bit profile, 16-bit length in 32-bit words, then the words.
    header = struct.pack("!BBHII", 0x91, 8, 1, 2, 3) + struct.pack("!I", 0xCAFE)
    extension = struct.pack("!HH", 0xBEDE, 2) + b"12345678"
    packet = RtpPacket.parse(header + extension + b"audio")
    assert packet.csrc == [0xCAFE]
    assert packet.extension_profile == 0xBEDE
    assert packet.extension == b"12345678"
    assert packet.payload == b"audio"


def test_padding_is_removed_from_the_payload() -> None:
    data = struct.pack("!BBHII", 0xA0, 0, 1, 2, 3) + b"abc" + b"\x00\x00\x03"
    assert RtpPacket.parse(data).payload == b"abc"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\x00\x00",
        struct.pack("!BBHII", 0x40, 0, 1, 2, 3),  # version 1
        struct.pack("!BBHII", 0x82, 0, 1, 2, 3) + b"\x00\x00\x00\x01",  # CSRC list cut short
        struct.pack("!BBHII", 0x90, 0, 1, 2, 3) + struct.pack("!HH", 1, 5),  # extension too long
        struct.pack("!BBHII", 0xA0, 0, 1, 2, 3) + b"\x00",  # padding count zero
        struct.pack("!BBHII", 0xA0, 0, 1, 2, 3) + b"\x40",  # padding longer than packet
    ],
)
def test_malformed_packets_raise_rtp_error(data: bytes) -> None:
    with pytest.raises(RtpError):
        RtpPacket.parse(data)


@pytest.mark.parametrize("packet_type", [200, 201, 202, 203, 204])
def test_rtcp_is_recognised_on_a_muxed_port(packet_type: int) -> None:
    assert is_rtcp(bytes([0x80, packet_type, 0, 1]))


@pytest.mark.parametrize("payload_type", [0, 8, 18, 96, 101, 127])
def test_rtp_is_not_mistaken_for_rtcp(payload_type: int) -> None:
    assert not is_rtcp(RtpPacket(payload_type, 1, 2, 3, marker=True).serialize())


def test_sequence_numbers_wrap_at_16_bits() -> None:
    assert seq_add(0xFFFF, 1) == 0
    assert seq_diff(0, 0xFFFF) == 1
    assert seq_diff(0xFFFF, 0) == -1
    assert seq_newer(2, 0xFFF0)
    assert not seq_newer(0xFFF0, 2)


@pytest.mark.parametrize("marker", [False, True])
def test_the_fixed_header_is_what_a_packet_without_options_serializes_to(marker: bool) -> None:
    packet = RtpPacket(111, 65535, 2**32 - 1, 0xDEADBEEF, b"\x01\x02", marker)
    assert fixed_header(111, 65535, 2**32 - 1, 0xDEADBEEF, marker) + b"\x01\x02" == (
        packet.serialize()
    )
