"""The webrtc part: browsers' WebRTC calls bridged to G.711 phones by ipbx on one core.

  webrtc_calls   the most concurrent calls from browsers to a phone that ipbx carries
                 within loss < 0.1 % and jitter p99 < 5 ms (bench/media.py's limits),
                 in each direction: as the phone receives it (forward) and as the
                 browsers do (backward). One figure per scenario:
                   relay      browsers offering PCMU: ipbx decrypts their SRTP and relays
                              it as RTP to the phone, and encrypts the other way;
                   transcode  browsers offering Opus: ipbx decrypts and transcodes to
                              PCMU, and back.
                 With the server's CPU per call at that step (cpu_pct_per_call, % of
                 its core; cpu_ms_per_call_s, ms of CPU per second of call), or at the
                 first step when none held the limits (cpu_at_calls, cpu_step_failed);
                 and the same for plain RTP calls at that count through the same server
                 right after the ramp (REFERENCES): g711_cpu_pct_per_call and
                 ratio_to_g711 against PCMU RTP <-> RTP calls; for Opus browsers also
                 rtp_transcode_... against Opus RTP <-> PCMU RTP, which leaves WebRTC's
                 own share.

The browsers are bench/webrtcload.py, a lean load generator (one process pinned to the
generator's core: SIP over wss:// per tab, ICE and DTLS-SRTP per call through aioice's
STUN, pyOpenSSL and pylibsrtp, then rtpload.py's send loop with libsrtp per packet), not
aiortc, whose peer connections decode, buffer and encode every call's audio in Python:
work a load generator does not need, on the core it must keep on time. The phone is
bench/sipua.py's callee on UDP. The server is a fresh `ipbx serve` pinned to the other
core, with a wss:// listener and an extension per browser. Each step runs the calls for
--webrtc-seconds; the ramps climb until a step fails, as the relay part's do
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
# What a WebRTC call is held against, at the ramp's best count right after it, through
# the same server: a plain G.711 call (PCMU RTP both sides, rtpload.py's relay), and for
# Opus browsers also Opus <-> PCMU in plain RTP (rtpload.py's transcode): what is left is
# the cost of WebRTC itself (SRTP, the transport's demultiplexing).
REFERENCES = {"relay": ("g711",), "transcode": ("g711", "rtp_transcode")}
REFERENCE_MODES = {"g711": "relay", "rtp_transcode": "transcode"}
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
    """Both scenarios' ramps and their plain RTP references against one server."""
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
            references: dict[str, media.MediaStep] = {}
            cpu_step = measured(outcome)
            calls = [cpu_step.calls] if cpu_step is not None else []
            for name in REFERENCES[scenario] if calls else ():
                log(f"  {name} ({REFERENCE_MODES[name]}) at {calls[0]} calls")
                mode, directory = REFERENCE_MODES[name], workdir / name / scenario
                references[name] = ramp(mode, calls, phones, settings, directory).steps[-1]
            emit(figure(scenario, outcome, references))
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


def measured(outcome: media.MediaOutcome) -> media.MediaStep | None:
    """The step whose CPU per call the figure gives: the best passing one; else the
    first, when all its calls were set up and carried and only a loss or jitter limit
    failed (the line says which in cpu_step_failed): the CPU a call costs is worth
    knowing even where the limits do not hold yet."""
    if outcome.best is not None:
        return outcome.best
    first = outcome.steps[0] if outcome.steps else None
    if first is None or first.failure not in ("loss", "jitter"):
        return None
    return first


def figure(
    scenario: str, outcome: media.MediaOutcome, references: dict[str, media.MediaStep]
) -> dict[str, object]:
    """The scenario's JSON line: bench/media.py's figure, then each direction's loss and
    jitter, the CPU per call and its ratio to each reference call's (`<name>_...`), at
    the step measured() picks (cpu_at_calls)."""
    extra: dict[str, object] = {"scenario": scenario, "codecs": SCENARIOS[scenario]}
    best = measured(outcome)
    if best is not None:
        extra["cpu_at_calls"] = best.calls
        if best is not outcome.best:
            extra["cpu_step_failed"] = best.failure
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
        for name, reference in references.items():
            plain = reference.number("server_cpu_pct") / reference.calls
            extra[f"{name}_cpu_pct_per_call"] = round(plain, 4)
            extra[f"{name}_limited_by"] = reference.failure or "pass"
            if plain > 0:
                extra[f"ratio_to_{name}"] = round(per_call / plain, 2)
    return media.figure(FIGURE, "ipbx", outcome) | extra
