"""Calls that lose their BYE do not stay up, and SIP extensions that keep calls healthy
work with a real peer: SIPp calls through a running ipbx. With a short
`media.timeout_seconds`, a caller that sends no RTP and never hangs up gets ipbx's BYE,
and a caller whose RTP flows keeps its call until it hangs up itself. With session
timers (RFC 4028), each leg negotiates its own and a session left unrefreshed ends.
With reliable provisional responses (RFC 3262), ipbx PRACKs the callee's and sends the
caller's reliably."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import LOOPBACK, free_port
from tests.support.server import IpbxFactory, IpbxServer, extension_range, start_ipbx
from tests.support.sipp import register_contact, run_sipp, start_sipp, write_users_csv

SCENARIOS = Path(__file__).parent / "scenarios"
CALLER, CALLEE = extension_range(2)
ECHO_TEST = "9196"


@pytest.fixture
def short_timeout(tmp_path: Path) -> Iterator[IpbxServer]:
    server = start_ipbx(tmp_path, [CALLER], rtp_ports=20, media=["timeout_seconds: 2"])
    yield server
    assert server.stop() == 0, server.log_tail(100)


def call_echo_test(
    server: IpbxServer, workdir: Path, scenario: Path | str, number: str = ECHO_TEST
) -> float:
    """Run one SIPp call to `number` (the echo test); the seconds it took, after checking
    it passed."""
    caller = write_users_csv(workdir / "caller.csv", [CALLER])
    started = time.monotonic()
    result = run_sipp(
        scenario, f"{LOOPBACK}:{server.port}", "-s", number, "-inf", str(caller),
        calls=1, workdir=workdir, timeout=40,
    )  # fmt: skip
    took = time.monotonic() - started
    assert result.successful == 1, f"{result.errors()}\n{server.log_tail()}"
    return took


def test_a_caller_that_sends_no_rtp_gets_a_bye_after_the_media_timeout(
    short_timeout: IpbxServer, tmp_path: Path
) -> None:
    took = call_echo_test(short_timeout, tmp_path, SCENARIOS / "uac_silent.xml")
    assert 2 <= took < 10
    assert "no RTP from" in short_timeout.log_path.read_text()


def test_a_call_whose_rtp_flows_outlives_the_media_timeout(
    short_timeout: IpbxServer, tmp_path: Path
) -> None:
    """uac_rtp sends 14 s of G.711 (the pcap twice) and then hangs up itself: a BYE from
    ipbx in between would fail the scenario."""
    took = call_echo_test(short_timeout, tmp_path, "uac_rtp")
    assert took >= 14
    assert "no RTP from" not in short_timeout.log_path.read_text()


@pytest.fixture
def short_session_timers(tmp_path: Path) -> Iterator[IpbxServer]:
    """An ipbx that takes session intervals down to 2 s (RFC 4028 says 90; tests wait
    less), asks for 30 s (no refresh of its own during a test), and whose media timeout
    does not end SIPp's silent calls first."""
    server = start_ipbx(
        tmp_path, [CALLER, CALLEE], rtp_ports=20, media=["timeout_seconds: 0"],
        sip=["min_se: 2", "session_expires: 30"],
    )  # fmt: skip
    yield server
    assert server.stop() == 0, server.log_tail(100)


def test_a_caller_with_session_timers_is_held_to_them(
    short_session_timers: IpbxServer, tmp_path: Path
) -> None:
    """SIPp asks for 1 s (422, Min-SE: 2), then 4 s with itself as refresher (granted,
    Require: timer), refreshes once with an UPDATE (granted again) and goes silent:
    ipbx's BYE comes 4 - 4/3 s after the refresh."""
    took = call_echo_test(short_session_timers, tmp_path, SCENARIOS / "uac_session_timer.xml")
    assert 1.5 + 2.5 <= took < 10
    assert "not refreshed in 4 s" in short_session_timers.log_path.read_text()


def test_a_callee_that_hands_back_the_refreshing_is_refreshed_by_update(
    short_session_timers: IpbxServer, tmp_path: Path
) -> None:
    """The callee leg negotiates its own timer: SIPp answers ipbx's INVITE with
    Session-Expires: 4;refresher=uac and Allow: UPDATE, gets ipbx's UPDATE at 2 s, then
    hangs up; the caller (who knows no timers) gets the BYE."""
    port = free_port("udp")
    assert register_contact(short_session_timers.port, CALLEE, port, tmp_path).successful == 1
    callee = start_sipp(
        SCENARIOS / "uas_session_refresh.xml", None, calls=1, workdir=tmp_path, local_port=port
    )
    try:
        took = call_echo_test(
            short_session_timers, tmp_path, SCENARIOS / "uac_silent.xml", CALLEE.number
        )
    finally:
        result = callee.finish(timeout=10)
    assert result.successful == 1, result.errors()
    assert 2 <= took < 8


def test_reliable_ringing_is_pracked_on_both_legs(ipbx_server: IpbxFactory, tmp_path: Path) -> None:
    """The caller requires 100rel (it used to get 420): ipbx PRACKs the callee's reliable
    180 and sends its own 180 to the caller reliably, which the caller PRACKs."""
    server = ipbx_server()
    port = free_port("udp")
    assert register_contact(server.port, CALLEE, port, tmp_path).successful == 1
    callee = start_sipp(
        SCENARIOS / "uas_100rel.xml", None, calls=1, workdir=tmp_path, local_port=port
    )
    try:
        call_echo_test(server, tmp_path, SCENARIOS / "uac_100rel.xml", CALLEE.number)
    finally:
        result = callee.finish(timeout=10)
    assert result.successful == 1, result.errors()
