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
from typing import Any

import pytest

from ipbx.media.nftables import Nftables
from tests.interop.test_conference import admin_api
from tests.interop.test_media_workers import RECEIVED, callers, scrape
from tests.interop.test_sipp import registered_callee
from tests.support.ports import LOOPBACK, free_port
from tests.support.server import (
    IpbxFactory,
    IpbxServer,
    extension_range,
    start_configured_ipbx,
    start_ipbx,
)
from tests.support.sipp import register_contact, run_sipp, start_sipp, write_users_csv
from tests.support.trunks import eventually

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


@pytest.mark.parametrize("timeout", [2, 0], ids=["timeout_2s", "timeout_off"])
def test_a_call_the_kernel_forwards_outlives_the_media_timeout(
    tmp_path: Path, timeout: int
) -> None:
    """media.relay: kernel: a second into a call between two phones the kernel forwards its
    RTP, and ipbx reads none of it. The time-out reads the kernel's counters at each sweep,
    so a call that talks for twice the time-out is not cut (a BYE from ipbx would fail the
    caller's scenario). /metrics reads them at each scrape: with the time-out off, sweeps
    (which still read them) come only every 5 s, so a count a sweep left would be short.
    The legs come back with what the kernel counted."""
    api_port = free_port("tcp")

    def edit(config: dict[str, Any]) -> None:
        config["media"].update(timeout_seconds=timeout, relay="kernel")
        config["api"] = {"listen": f"{LOOPBACK}:{api_port}"}

    server = start_configured_ipbx(tmp_path / "ipbx", edit, extensions=[CALLER, CALLEE])
    legs = f"list set ip ipbx_{server.pid} legs"
    try:
        api = admin_api(server.config_path, api_port)
        with registered_callee(server, tmp_path, "uas_rtp", 1, "-rtp_echo") as callee:
            with callers(server, tmp_path, "uac_rtp_hangs_up", 1, "-d", "4000") as (
                talking,
                returned,
            ):
                eventually(lambda: "elements" in Nftables().run(legs), 5, "kernel forwarding")
                time.sleep(1)
                echoed = returned.packets
                received = scrape(api)[RECEIVED]
                # Each packet echoed to the caller crossed ipbx twice, each time counted
                # (less a few: the meters' probation, packets queued at the move).
                assert received >= 2 * echoed - 10, (received, echoed)
                talked = talking.finish()
            assert talked.successful == 1, f"{talked.errors()}\n{server.log_tail()}"
            assert callee.finish(timeout=10).successful == 1
    finally:
        assert server.stop() == 0, server.log_tail(100)
    log = server.log_path.read_text()
    assert "no RTP from" not in log
    [line] = [line for line in log.splitlines() if "forwarded in the kernel" in line]
    # About 3 s of the caller's 33 packets a second and of their echo.
    counts = [int(word) for word in line.split("home, ")[1].split() if word.isdigit()]
    assert len(counts) == 2 and min(counts) > 50, line


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
