"""Calls that lose their BYE do not stay up: SIPp calls the echo test of a running ipbx
whose `media.timeout_seconds` is short. A caller that sends no RTP and never hangs up
gets ipbx's BYE; a caller whose RTP flows keeps its call until it hangs up itself."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.ports import LOOPBACK
from tests.support.server import IpbxServer, extension_range, start_ipbx
from tests.support.sipp import run_sipp, write_users_csv

SCENARIOS = Path(__file__).parent / "scenarios"
CALLER = extension_range(1)[0]
ECHO_TEST = "9196"


@pytest.fixture
def short_timeout(tmp_path: Path) -> Iterator[IpbxServer]:
    server = start_ipbx(tmp_path, [CALLER], rtp_ports=20, media=["timeout_seconds: 2"])
    yield server
    assert server.stop() == 0, server.log_tail(100)


def call_echo_test(server: IpbxServer, workdir: Path, scenario: Path | str) -> float:
    """Run one SIPp call to the echo test; the seconds it took, after checking it passed."""
    caller = write_users_csv(workdir / "caller.csv", [CALLER])
    started = time.monotonic()
    result = run_sipp(
        scenario, f"{LOOPBACK}:{server.port}", "-s", ECHO_TEST, "-inf", str(caller),
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
