"""The loaded part: call setups while the media plane carries calls.

  calls_under_media   the calls part's ramp (SIPp, uac_auth.xml 1000 -> ipbx -> a UAS
                      registered as 1001) against one ipbx twice: idle, then while
                      bench/rtpload.py keeps --loaded-media-calls relayed G.711 calls up
                      through the same server (1002 -> 1003, 50 packets/s each way). The
                      best rate of each ramp (failed calls under 0.1 %), their ratio, the
                      server's CPU a setup at those two steps, and the media's own loss
                      and jitter over the loaded ramp. The media issue's goal: no drop
                      (the media worker carries the RTP on the other core).

The server runs with one media worker (media.workers: 1): its own process (SIP) is pinned
to one core, the worker to the other, which SIPp and the RTP generator share
(--loaded-worker-core sipp), or to the server's core beside SIP (server); the
generator's CPU is printed too: a ramp the generator's core limits says so there. With
--loaded-relay kernel (media.relay: kernel, root only) the kernel forwards the relayed
calls once they stand, and their RTP reaches neither the server nor the worker.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from bench.media import RTPLOAD
from bench.parts.rtp import pin_workers_apart, prioritise, threads_of, wait_until
from bench.parts.session import Settings, emit, log
from bench.parts.sip import Step, bench_calls
from tests.support.processes import ServerNotReady, stop_process
from tests.support.server import extension_range, start_ipbx

FIGURE = "calls_under_media"
# The media calls' extensions: after the calls part's caller and callee.
MEDIA_CALLER, MEDIA_CALLEE = extension_range(2, first=1002)
# Seconds the media stays up beyond the ramp's own estimate, and the most it may run.
MEDIA_MARGIN_S = 60.0
MEDIA_LIMIT_S = 600.0


def bench_loaded(settings: Settings) -> bool:
    workdir = settings.out / "loaded"
    try:
        media_lines = ["workers: 1", f"relay: {settings.loaded_relay}"]
        server = start_ipbx(
            workdir / "server", extension_range(4), rtp_ports=6000, media=media_lines
        )
    except (ServerNotReady, OSError) as error:
        log(f"ipbx: not started: {str(error).splitlines()[0]}")
        return False
    log(f"ipbx: pid {server.pid}, call ramps idle and under {settings.loaded_media_calls} calls")
    beside_sipp = settings.loaded_worker_core == "sipp"
    worker_core = settings.sipp_cpu if beside_sipp else settings.server_cpu
    if worker_core is not None:
        pin_workers_apart(server.pid, settings.server_cpu, [worker_core])
    prioritise(threads_of(server.pid))
    try:
        idle = bench_calls(server, settings, workdir / "idle")
        # The ramp's length is not known ahead: the media runs longer, and is stopped
        # (its figures lost) only past MEDIA_LIMIT_S.
        seconds = min(
            MEDIA_LIMIT_S, len(settings.call_rates) * (settings.step_seconds + 20) + MEDIA_MARGIN_S
        )
        media = _start_media(server.port, server.pid, seconds, settings, workdir)
        try:
            loaded = bench_calls(server, settings, workdir / "loaded")
            log("  ramp done; waiting for the media's own figures")
            record = _media_record(media, seconds)
        finally:
            stop_process(media)
    finally:
        code = server.stop()
        log(f"ipbx: stopped (exit {code}); log {server.log_path}")
    _report(idle, loaded, record, settings)
    return idle is not None and loaded is not None and record is not None


def _start_media(
    port: int, pid: int, seconds: float, settings: Settings, workdir: Path
) -> subprocess.Popen[bytes]:
    command = [
        sys.executable, str(RTPLOAD), "--server", "ipbx", "--sip-port", str(port),
        "--server-pid", str(pid), "--calls", str(settings.loaded_media_calls),
        "--seconds", str(seconds), "--mode", "relay",
        "--caller", MEDIA_CALLER.number, "--caller-password", MEDIA_CALLER.password,
        "--callee", MEDIA_CALLEE.number, "--callee-password", MEDIA_CALLEE.password,
    ]  # fmt: skip
    if settings.sipp_cpu is not None:
        command = ["taskset", "-c", str(settings.sipp_cpu), *command]
    workdir.mkdir(parents=True, exist_ok=True)
    errors_path = workdir / "media.stderr.log"
    with errors_path.open("ab") as errors:
        media = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=errors
        )

    def running() -> bool:
        return "media running" in errors_path.read_text(errors="replace")

    # The calls are set up before the ramp starts (rtpload says so on stderr).
    wait_until(running, 60.0, f"'media running' in {errors_path}")
    return media


def _media_record(media: subprocess.Popen[bytes], seconds: float) -> dict[str, object] | None:
    try:
        out, _ = media.communicate(timeout=seconds + 120)
    except subprocess.TimeoutExpired:
        return None
    lines = out.decode(errors="replace").strip().splitlines()
    return json.loads(lines[-1]) if media.returncode == 0 and lines else None


def _rate(step: Step | None) -> float | None:
    return None if step is None else round(step.result.rate, 1)


def _cpu_ms(step: Step | None) -> float | None:
    """The server's CPU a setup at the step: the best rate of a ramp is the step where a
    queue did or did not collapse, which varies more between runs than this."""
    if step is None or not step.result.successful:
        return None
    return round(1000 * step.cpu_s / step.result.successful, 2)


def _report(
    idle: Step | None, loaded: Step | None, media: dict[str, object] | None, settings: Settings
) -> None:
    idle_rate, loaded_rate = _rate(idle), _rate(loaded)
    ratio = round(loaded_rate / idle_rate, 3) if idle_rate and loaded_rate else None
    idle_ms, loaded_ms = _cpu_ms(idle), _cpu_ms(loaded)
    log(f"  call setups/s: idle {idle_rate}, under media {loaded_rate} (ratio {ratio})")
    log(f"  server CPU a setup at those steps: idle {idle_ms} ms, under media {loaded_ms} ms")
    emit(
        {
            "figure": FIGURE,
            "server": "ipbx",
            "value": loaded_rate,
            "idle": idle_rate,
            "ratio_loaded_to_idle": ratio,
            "idle_ms_per_setup": idle_ms,
            "loaded_ms_per_setup": loaded_ms,
            "media_calls": settings.loaded_media_calls,
            "worker_core": settings.loaded_worker_core,
            "relay": settings.loaded_relay,
            "media": media,
        }
    )
