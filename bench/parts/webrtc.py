"""The webrtc part: browsers' WebRTC calls bridged to G.711 phones by ipbx on one core.

  webrtc_calls   the most concurrent calls from browsers to a phone that ipbx carries
                 within loss < 0.1 % and jitter p99 < 5 ms (bench/media.py's limits),
                 in each direction: as the phone receives it (forward) and as the
                 browsers do (backward). One figure per scenario:
                   relay      browsers offering PCMU: ipbx decrypts their SRTP and relays
                              it as RTP to the phone, and encrypts the other way;
                   transcode  browsers offering Opus: ipbx decrypts and transcodes to
                              PCMU, and back.
                 With the server's CPU per call at that step (cpu_pct_per_call, % of its
                 core; cpu_ms_per_call_s, ms of CPU per second of call) and, against a
                 plain G.711 call, the same count of PCMU RTP <-> RTP calls through the
                 same server right after the ramp (bench/rtpload.py's relay):
                 g711_cpu_pct_per_call and ratio_to_g711.

The browsers are bench/webrtcload.py, a lean load generator (one process pinned to the
generator's core: SIP over wss:// per tab, ICE and DTLS-SRTP per call through aioice's
STUN, pyOpenSSL and pylibsrtp, then rtpload.py's send loop with libsrtp per packet), not
aiortc, whose Python media path would cost the generator more than ipbx per call; the
phone is bench/sipua.py's callee on UDP. The server is a fresh `ipbx serve` pinned to the
other core, with a wss:// listener and an extension per browser. Each step runs the
calls for --webrtc-seconds; the ramps climb until a step fails, as the relay part's do
(bench/media.py: a step disturbed by other processes on the cores is run again).
Small: `--parts webrtc --servers ipbx --webrtc-calls 2 --webrtc-transcode-calls 2
--webrtc-seconds 2`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench import media
from bench.parts.rtp import prioritise, threads_of
from bench.parts.session import Settings, emit, log
from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import REPO_ROOT, ServerNotReady
from tests.support.server import IpbxServer, extension_range, start_ipbx

WEBRTCLOAD = REPO_ROOT / "bench" / "webrtcload.py"
FIGURE = "webrtc_calls"
SCENARIOS = {
    "relay": "PCMU browser (DTLS-SRTP) <-> PCMU phone (RTP), 20 ms",
    "transcode": "Opus browser (DTLS-SRTP) <-> PCMU phone (RTP), 20 ms",
}
# 1000 and 1001 are the plain G.711 caller and the phone; the browsers follow.
FIRST_BROWSER = 1002
# Each call anchors 4 ports (RTP and RTCP per side).
RTP_PORTS_PER_CALL = 4


def start_server(settings: Settings, workdir: Path, wss_port: int) -> IpbxServer:
    browsers = max([*settings.webrtc_calls, *settings.webrtc_transcode_calls, 1])
    return start_ipbx(
        workdir,
        extension_range(FIRST_BROWSER - 1000 + browsers),
        cpu=settings.server_cpu,
        rtp_ports=max(1000, RTP_PORTS_PER_CALL * browsers + 100),
        listen=[f"wss://{LOOPBACK}:{wss_port}"],
    )


def bench_webrtc(settings: Settings) -> bool:
    """Both scenarios' ramps and their plain G.711 comparison against one server."""
    workdir = settings.out / "webrtc"
    wss_port = free_port("tcp")
    try:
        server = start_server(settings, workdir / "server", wss_port)
    except (ServerNotReady, OSError) as error:
        reason = str(error).splitlines()[0]
        log(f"ipbx: not started: {reason}")
        for scenario in SCENARIOS:
            emit({"figure": FIGURE, "scenario": scenario, "value": None, "error": reason})
        return False
    log(f"ipbx: pid {server.pid}, wss://{LOOPBACK}:{wss_port}, webrtc ramps")
    # As the relay part: the server at the generator's priority.
    prioritise(threads_of(server.pid))
    pid = ["--server-pid", str(server.pid)]
    browsers = ["--sip-port", str(server.port), "--wss-port", str(wss_port), *pid]
    browsers += ["--first-browser", str(FIRST_BROWSER)]
    phones = ["--server", "ipbx", "--sip-port", str(server.port), *pid]
    passed = True
    try:
        for scenario, steps in (
            ("relay", settings.webrtc_calls),
            ("transcode", settings.webrtc_transcode_calls),
        ):
            log(f"  {scenario}: {SCENARIOS[scenario]}")
            outcome = ramp(scenario, steps, browsers, settings, workdir / scenario, tool=WEBRTCLOAD)
            g711 = None
            if outcome.best is not None:
                log(f"  plain G.711 at {outcome.best.calls} calls")
                plain = ramp(
                    "relay", [outcome.best.calls], phones, settings, workdir / "g711" / scenario
                )
                g711 = plain.steps[-1]
            emit(figure(scenario, outcome, g711))
            passed &= outcome.best is not None
    finally:
        code = server.stop()
        log(f"ipbx: stopped (exit {code}); log {server.log_path}")
    return passed


def ramp(
    mode: str,
    steps: Sequence[int],
    target: list[str],
    settings: Settings,
    workdir: Path,
    tool: Path = media.RTPLOAD,
) -> media.MediaOutcome:
    """`tool` (rtpload.py for plain calls, webrtcload.py for browsers) in `mode` for
    rising call counts, as bench/media.py runs a ramp."""

    def step(calls: int) -> media.MediaStep:
        return media.run_load(
            target, calls, settings.webrtc_seconds, mode, settings.sipp_cpu, workdir, tool
        )

    return media.ramp(steps, step, log, cores=(settings.sipp_cpu, settings.server_cpu))


def figure(
    scenario: str, outcome: media.MediaOutcome, g711: media.MediaStep | None
) -> dict[str, object]:
    """The scenario's JSON line: bench/media.py's figure, each direction's loss and
    jitter, the CPU per call and its ratio to a plain G.711 call's."""
    extra: dict[str, object] = {"scenario": scenario, "codecs": SCENARIOS[scenario]}
    best = outcome.best
    if best is not None:
        for key in (
            "loss_pct_forward",
            "loss_pct_backward",
            "jitter_p99_ms_forward",
            "jitter_p99_ms_backward",
            "srtp_failures",
            "setup_s",
        ):
            extra[key] = best.record.get(key)
        per_call = best.number("server_cpu_pct") / best.calls
        extra["cpu_pct_per_call"] = round(per_call, 4)
        # 1 % of a core is 10 ms of CPU a second.
        extra["cpu_ms_per_call_s"] = round(10 * per_call, 3)
    if best is not None and g711 is not None:
        plain = g711.number("server_cpu_pct") / g711.calls
        extra["g711_cpu_pct_per_call"] = round(plain, 4)
        extra["g711_limited_by"] = g711.failure or "pass"
        if plain > 0:
            extra["ratio_to_g711"] = round(per_call / plain, 2)
    return media.figure(FIGURE, "ipbx", outcome, **extra)
