"""GET /metrics counts SIP messages by method and status code and RTP packets received
and lost, as Prometheus counters (`_total`, HELP and TYPE lines): scraped in-process
after messages reach the SIP endpoint, and from a running `ipbx serve` after a phone
registered and talked to the echo test."""

from __future__ import annotations

from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from ipbx.media.quality import ReceptionTotals, StreamMeter
from ipbx.sip.transaction import Address
from tests.support.apiclient import Api
from tests.support.ports import LOOPBACK, free_port
from tests.support.server import extension_range, make_token, run_ipbx, write_config
from tests.support.sipclient import SipClient
from tests.support.softphone import ipbx_phone, write_tone

COUNTERS = (
    "ipbx_sip_requests_received", "ipbx_sip_requests_sent", "ipbx_sip_responses_received",
    "ipbx_sip_responses_sent", "ipbx_sip_retransmissions", "ipbx_sip_malformed_dropped",
    "ipbx_rtp_packets_received", "ipbx_rtp_packets_lost",
)  # fmt: skip


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape by (name, labels); the parser also checks the format."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def options(branch: str, method: str = "OPTIONS") -> bytes:
    return (
        f"{method} sip:{LOOPBACK} SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP {LOOPBACK}:5070;branch=z9hG4bK{branch}\r\n"
        f"From: <sip:probe@{LOOPBACK}>;tag=p1\r\nTo: <sip:{LOOPBACK}>\r\n"
        f"Call-ID: {branch}@probe\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()


def rtp(ssrc: int, seq: int) -> bytes:
    return (
        bytes([0x80, 0])
        + seq.to_bytes(2, "big")
        + (seq * 160).to_bytes(4, "big")
        + (ssrc.to_bytes(4, "big") + b"\xff" * 160)
    )


def test_sip_messages_are_counted_by_method_and_status(api: Api) -> None:
    source = Address("UDP", LOOPBACK, 5070)
    api.pbx.endpoint.datagram_received(options("a1"), source)
    api.pbx.endpoint.datagram_received(options("a1"), source)  # a retransmission
    api.pbx.endpoint.datagram_received(options("b2", "FROBNICATE"), source)
    api.pbx.endpoint.datagram_received(b"OPTIONS sip:x SIP/2.0\r\nVia: nonsense\r\n\r\n", source)
    api.pbx.endpoint.datagram_received(b"SIP/2.0 20", source)  # a response cut short
    api.pbx.endpoint.datagram_received(b"OPTIONS sip:x SIP/2.0\r\nCall-ID: c1\r\n", source)

    response = api.client.get("/metrics", headers=api.headers(api.reader))
    assert response.status_code == 200
    lines = response.text.splitlines()
    for name in COUNTERS:
        assert f"# TYPE {name}_total counter" in lines, name
        assert any(line.startswith(f"# HELP {name}_total ") for line in lines), name
    found = samples(response.text)
    received = "ipbx_sip_requests_received_total"
    assert found[(received, (("method", "OPTIONS"),))] == 4  # the malformed ones too
    assert found[(received, (("method", "OTHER"),))] == 1
    sent = "ipbx_sip_responses_sent_total"
    assert found[(sent, (("code", "200"),))] == 2  # the answer, and again for the repeat
    assert found[(sent, (("code", "501"),))] == 1
    assert found[(sent, (("code", "400"),))] == 1
    assert found[("ipbx_sip_retransmissions_total", ())] == 1
    # Neither the broken response nor the request without a Via could be answered.
    assert found[("ipbx_sip_malformed_dropped_total", ())] == 2
    assert found[("ipbx_rtp_packets_received_total", ())] == 0


def test_rtp_totals_add_closed_streams_and_never_go_back() -> None:
    totals = ReceptionTotals()
    first, second = StreamMeter(lambda: 0.0), StreamMeter(lambda: 0.0)
    totals.open(first)
    totals.open(second)
    for seq in (1, 2, 3, 5, 6):  # 4 is lost; 1 is the source's probation (RFC 3550 A.1)
        first(rtp(1, seq))
    for seq in range(100, 110):
        second(rtp(2, seq))
    assert totals.totals() == (4 + 9, 1)
    totals.close(first)
    totals.close(first)  # closing twice counts once
    assert totals.totals() == (13, 1)
    # The sender jumps far ahead: A.1 restarts the second meter's count at 1, and the
    # total, a counter, stays where it was until the packets catch up.
    second(rtp(2, 5000))
    second(rtp(2, 5001))
    assert second.reading().packets_received == 1
    assert totals.totals() == (13, 1)
    for seq in range(5002, 5012):
        second(rtp(2, seq))
    assert totals.totals() == (4 + 11, 1)


def test_a_running_server_counts_a_real_call(tmp_path: Path) -> None:
    caller, owner = extension_range(2)
    api_port = free_port("tcp")
    config, port = write_config(tmp_path, api_port, extensions=[caller, owner])
    token = make_token(config, "read")
    server = run_ipbx(tmp_path, config, port)
    tone = write_tone(tmp_path / "tone.wav", 700, 4)
    url = f"http://{LOOPBACK}:{api_port}/metrics"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        phone = SipClient(server.port)
        assert phone.register(owner.number, owner.password) is not None
        with ipbx_phone(
            tmp_path, server.port, caller,
            "--call", "9196", "--play", str(tone), "--duration", "3", "--timeout", "20",
        ) as call:  # fmt: skip
            code, _ = call.finish(timeout=30)
        assert code == 0, call.log
        first = samples(httpx.get(url, headers=headers).text)
        phone.register(owner.number, owner.password)
        phone.close()
        second = samples(httpx.get(url, headers=headers).text)
    finally:
        assert server.stop() == 0, server.log_tail(200)

    received = "ipbx_sip_requests_received_total"
    for method in ("REGISTER", "INVITE", "ACK", "BYE"):
        assert first[(received, (("method", method),))] >= 1, method
    sent = "ipbx_sip_responses_sent_total"
    assert first[(sent, (("code", "200"),))] >= 3  # REGISTER, INVITE, BYE
    assert first[(sent, (("code", "401"),))] + first.get((sent, (("code", "407"),)), 0) >= 1
    # Three seconds of 20 ms packets reached ipbx, none lost on loopback.
    assert first[("ipbx_rtp_packets_received_total", ())] >= 100
    assert first[("ipbx_rtp_packets_lost_total", ())] == 0
    assert first[("ipbx_registrations", ())] == 1
    assert first[("ipbx_active_calls", ())] == 0
    assert (
        second[(received, (("method", "REGISTER"),))] > first[(received, (("method", "REGISTER"),))]
    )
    for key, value in first.items():
        if key[0].endswith("_total"):
            assert second.get(key, 0) >= value, key
