"""RFC 4733 telephone-events."""

import pytest

from ipbx.media.dtmf import (
    DtmfError,
    DtmfReceiver,
    TelephoneEvent,
    digit_event,
    digit_packets,
    info_digit,
)


def test_payload_layout_of_rfc_4733_section_2_3() -> None:
    event = TelephoneEvent(event=11, end=True, volume=10, duration=800)
    assert event.serialize() == bytes([11, 0x8A, 0x03, 0x20])
    assert TelephoneEvent.parse(event.serialize()) == event
    assert event.digit == "#"


@pytest.mark.parametrize(("digit", "event"), [("0", 0), ("9", 9), ("*", 10), ("#", 11), ("a", 12)])
def test_digits_map_to_events(digit: str, event: int) -> None:
    assert digit_event(digit) == event


@pytest.mark.parametrize("bad", ["x", "", "12"])
def test_unknown_digits_are_refused(bad: str) -> None:
    with pytest.raises(DtmfError):
        digit_event(bad)


def test_short_payload_is_refused() -> None:
    with pytest.raises(DtmfError):
        TelephoneEvent.parse(b"\x01\x02")


def test_packet_sequence_for_one_key_press() -> None:
    packets = digit_packets("5", timestamp=4242, duration_ms=100)
    events = [TelephoneEvent.parse(p.payload) for p in packets]
    assert [p.marker for p in packets] == [True] + [False] * (len(packets) - 1)
    assert {p.timestamp for p in packets} == {4242}
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {5}


def test_receiver_reports_each_press_once_despite_end_retransmissions() -> None:
    receiver = DtmfReceiver()
    heard: list[str] = []
    for timestamp, digit in [(1000, "1"), (3000, "#"), (5000, "1")]:
        for packet in digit_packets(digit, timestamp):
            heard += receiver.receive(packet.timestamp, packet.payload)
    assert heard == ["1", "#", "1"]


def test_digit_whose_end_packets_were_all_lost_is_reported_when_the_next_starts() -> None:
    receiver = DtmfReceiver()
    heard: list[str] = []
    for packet in digit_packets("7", 1000)[:4]:
        heard += receiver.receive(packet.timestamp, packet.payload)
    assert heard == []
    for packet in digit_packets("8", 2000):
        heard += receiver.receive(packet.timestamp, packet.payload)
    assert heard == ["7", "8"]


RELAY = "application/dtmf-relay"


@pytest.mark.parametrize(
    ("content_type", "body", "digit"),
    [
        (RELAY, b"Signal=5\r\nDuration=160\r\n", "5"),
        (RELAY, b"signal= *\nduration=100", "*"),
        (RELAY, b"Signal=11\r\nDuration=250\r\n", "#"),
        (RELAY, b"Signal=d\r\n", "D"),
        (RELAY, b"Duration=160\r\n", None),
        (RELAY, b"Signal=X\r\n", None),
        (RELAY, b"Signal=\r\n", None),
        (RELAY, b"\xff\xfe", None),
        ("application/dtmf", b"7", "7"),
        ("Application/DTMF; charset=utf-8", b"#\r\n", "#"),
        ("application/dtmf", b"11", "#"),
        ("application/dtmf", b"Signal=5", None),
        ("text/plain", b"Signal=5", None),
    ],
)
def test_digits_of_sip_info_bodies(content_type: str, body: bytes, digit: str | None) -> None:
    """application/dtmf-relay (Cisco's format) and application/dtmf (the key alone)."""
    assert info_digit(content_type, body) == digit
