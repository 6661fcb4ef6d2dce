"""The `webrtc` benchmark part at a tiny scale: two browser tabs (bench/webrtcload.py) sign
in over wss:// and call a G.711 phone through a real `ipbx serve`, first offering PCMU
(ipbx relays between DTLS-SRTP and RTP), then Opus (ipbx transcodes). Every call is set
up and keyed by ICE and DTLS-SRTP, audio arrives both ways with every browser packet
authentic, every call is hung up; and the part's figure puts the CPU per call against a
plain G.711 call's. No timing is asserted: figures come from bench/run.py on a quiet
machine."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bench import media
from bench.parts.webrtc import FIRST_BROWSER, WEBRTCLOAD, figure
from tests.support.ports import LOOPBACK, free_port
from tests.support.server import IpbxServer, extension_range, start_ipbx


@pytest.fixture(scope="module")
def pbx(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[IpbxServer, int]]:
    wss = free_port("tcp")
    server = start_ipbx(
        tmp_path_factory.mktemp("ipbx-webrtc-bench"),
        extension_range(FIRST_BROWSER - 1000 + 2),
        rtp_ports=40,
        listen=[f"wss://{LOOPBACK}:{wss}"],
    )
    yield server, wss
    alive = server.process.poll() is None
    server.stop()
    assert alive, f"the server died during the test:\n{server.log_tail()}"


def test_browsers_call_a_g711_phone_in_pcmu_and_in_opus(
    pbx: tuple[IpbxServer, int], tmp_path: Path
) -> None:
    server, wss = pbx
    target = ["--sip-port", str(server.port), "--wss-port", str(wss)]
    target += ["--server-pid", str(server.pid), "--first-browser", str(FIRST_BROWSER)]
    for mode in ("relay", "transcode"):
        step = media.run_load(target, 2, 1.0, mode, None, tmp_path, tool=WEBRTCLOAD)
        record = step.record
        assert "error" not in record, (mode, (tmp_path / f"{mode}-2.stderr.log").read_text())
        assert record["mode"] == f"webrtc-{mode}"
        assert (record["setup_failed"], record["teardown_failed"]) == (0, 0), mode
        # Both browsers and both phone legs heard something, and libsrtp authenticated
        # every packet that reached a browser.
        assert record["silent_streams"] == 0, mode
        assert step.number("received") > 0 and record["srtp_failures"] == 0, mode
    log = server.log_path.read_text()
    assert log.count("DTLS-SRTP (AES_CM_128_HMAC_SHA1_80) up") == 4


def step(calls: int, cpu_pct: float, **record: object) -> media.MediaStep:
    return media.MediaStep(calls, {"loss_pct": 0.0, "jitter_p99_ms": 1.0, **record} | {
        "server_cpu_pct": cpu_pct,
    })  # fmt: skip


def test_the_figure_is_cpu_per_call_against_plain_rtp_calls() -> None:
    """100 browser calls at 50 % of the core against 100 G.711 calls at 20 % and 100
    plain RTP transcoded calls at 40 %: 0.5 % of the core a call (5 ms of CPU per
    second of call), 2.5 times a G.711 call, 1.25 times a plain transcoded one."""
    best = step(100, 50.0, jitter_p99_ms_forward=1.2, jitter_p99_ms_backward=0.8)
    outcome = media.MediaOutcome([best, step(150, 80.0)], best, "jitter")
    line = figure("transcode", outcome, {"g711": step(100, 20.0), "rtp_transcode": step(100, 40.0)})
    assert line["figure"] == "webrtc_calls"
    assert (line["scenario"], line["value"]) == ("transcode", 100)
    assert (line["cpu_pct_per_call"], line["cpu_ms_per_call_s"]) == (0.5, 5.0)
    assert (line["g711_cpu_pct_per_call"], line["ratio_to_g711"]) == (0.2, 2.5)
    assert line["ratio_to_rtp_transcode"] == 1.25
    assert (line["jitter_p99_ms_forward"], line["jitter_p99_ms_backward"]) == (1.2, 0.8)
    assert (line["limited_by"], line["cpu_at_calls"]) == ("jitter", 100)
    assert "cpu_step_failed" not in line

    # Not even the first step within the limits: its CPU is given, and what it failed.
    first = step(5, 20.0, jitter_p99_ms=21.0)
    failed = figure("transcode", media.MediaOutcome([first], None, "jitter"), {})
    assert (failed["value"], failed["cpu_at_calls"], failed["cpu_pct_per_call"]) == (None, 5, 4.0)
    assert failed["cpu_step_failed"] == "jitter"

    nothing = figure("relay", media.MediaOutcome([], None, "loss"), {})
    assert (nothing["scenario"], nothing["value"], nothing["limited_by"]) == ("relay", None, "loss")
    assert "ratio_to_g711" not in nothing
