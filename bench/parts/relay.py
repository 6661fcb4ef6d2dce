"""The media parts, driven by bench/rtpload.py through bench/media.py, for ipbx and
rtpengine: relay_calls and relay_us_per_packet, transcode_calls and
transcode_cpu_pct_per_call."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from bench import media
from bench.parts.rtp import pin_workers_apart, prioritise, threads_of
from bench.parts.session import Settings, emit, log
from tests.support.processes import ServerNotReady, ServerProcess
from tests.support.rtpengine import start_rtpengine
from tests.support.server import extension_range, start_ipbx

TRANSCODED = "opus/48000 <-> PCMU, 20 ms"


def start_media_server(
    name: str, settings: Settings, workdir: Path, media_lines: Sequence[str], pinned: bool
) -> ServerProcess:
    """A fresh relay for the media parts: ipbx with only the caller and the callee (no
    registrations or bindings left from the SIP parts; `media_lines` added to its media
    section), or rtpengine; on the server's core when `pinned`. Each call anchors 4 ports
    (RTP and RTCP per side): 6000 ports carry 1500 calls. Pinned to one core, ipbx has no
    media worker unless `media_lines` ask for one (media.workers: auto)."""
    cpu = settings.server_cpu if pinned else None
    if name == "ipbx-kernel":  # relayed calls forwarded by the kernel (media/kernel.py)
        media_lines = [*media_lines, "relay: kernel"]
    if name.startswith("ipbx"):
        return start_ipbx(workdir, extension_range(2), cpu=cpu, rtp_ports=6000, media=media_lines)
    return start_rtpengine(workdir, cpu=cpu, rtp_ports=6000)


def media_ramp(
    name: str,
    mode: str,
    steps: Sequence[int],
    settings: Settings,
    workdir: Path,
    media_lines: Sequence[str] = (),
    pinned: bool = True,
    spread: Sequence[int] = (),
) -> media.MediaOutcome | None:
    """Start the relay, run the ramp against it, stop it; None if it did not start.

    `spread` (ipbx, the scale part): the cores the media workers and the load go over,
    one worker to each in turn; the server's own process and the callers' side of the
    load share the first, the callees' side takes the last (the first if only one).
    Otherwise the load runs on the generator's core, and the relay on its own when
    `pinned`."""
    try:
        server = start_media_server(
            name, settings, workdir / "server", media_lines, pinned and not spread
        )
    except (ServerNotReady, OSError) as error:
        reason = str(error).splitlines()[0]
        log(f"{name}: not started: {reason}")
        return None
    log(f"{name}: pid {server.pid}, {mode} ramp")
    if spread:
        pin_workers_apart(server.pid, spread[0], spread)
    load_cpu, callee_cpu = (spread[0], spread[-1]) if spread else (settings.sipp_cpu, None)
    # Both relays get the generator's priority (nice -10, as root), so a test run
    # elsewhere on the machine preempts neither; what is left is caught by media.ramp.
    prioritise(threads_of(server.pid))
    if name.startswith("ipbx"):
        target = ["--server", "ipbx", "--sip-port", str(server.port)]
    else:
        target = ["--server", "rtpengine", "--ng-port", str(server.port)]
    target += ["--server-pid", str(server.pid)]

    def step(calls: int) -> media.MediaStep:
        return media.run_load(
            target, calls, settings.media_seconds, mode, load_cpu, workdir, callee_cpu=callee_cpu
        )

    try:
        return media.ramp(steps, step, log, cores=(settings.sipp_cpu, settings.server_cpu))
    finally:
        code = server.stop()
        log(f"{name}: stopped (exit {code}); log {server.log_path}")


def bench_relay(servers: Sequence[str], settings: Settings) -> bool:
    """relay_calls for each relay, relay_us_per_packet at a load all carried, ratios."""
    return _paired(servers, settings, "relay", "relay_calls", "relay_us_per_packet")


def bench_transcode(servers: Sequence[str], settings: Settings) -> bool:
    """transcode_calls for ipbx and rtpengine (which transcodes with FFmpeg's codecs),
    transcode_cpu_pct_per_call at a load both carried, ratios."""
    return _paired(servers, settings, "transcode", "transcode_calls", "transcode_cpu_pct_per_call")


def _paired(
    servers: Sequence[str], settings: Settings, mode: str, calls_figure: str, cost_figure: str
) -> bool:
    """A ramp of `mode` for each server: the calls each carried within the limits, the
    cost of the work (CPU per packet relayed, or share of a core per call transcoded) at
    the largest load every server carried, and ipbx's ratios to rtpengine."""
    steps = settings.relay_calls if mode == "relay" else settings.transcode_calls
    detail = {"codec": "PCMU/20ms"} if mode == "relay" else {"codecs": TRANSCODED}
    outcomes: dict[str, media.MediaOutcome] = {}
    for name in servers:
        workdir = settings.out / mode / name
        outcome = media_ramp(name, mode, steps, settings, workdir)
        if outcome is None:
            emit({"figure": calls_figure, "server": name, "value": None, "error": "not started"})
            continue
        outcomes[name] = outcome
        emit(media.figure(calls_figure, name, outcome, **detail))
    load = media.common_load(outcomes) if outcomes else None
    costs: dict[str, float] = {}
    machine: dict[str, float] = {}
    for name, outcome in outcomes.items():
        if load is None:
            break
        step = media.step_at(outcome, load)
        costs[name] = (
            step.number("server_us_per_packet")
            if mode == "relay"
            else round(step.number("server_cpu_pct") / load, 3)
        )
        machine[name] = step.number("machine_us_per_packet")
        emit(
            {
                "figure": cost_figure,
                "server": name,
                "value": costs[name],
                "at_calls": load,
                "server_cpu_pct": step.record.get("server_cpu_pct"),
                "machine_us_per_packet": machine[name],
            }
        )
    for name, outcome in outcomes.items():
        passed = [step for step in outcome.steps if step.failure is None]
        if mode == "relay" and len(passed) >= 2:
            # What one more relayed call holds: RSS between the first and last steps
            # within the limits, over the calls between them.
            low, high = passed[0], passed[-1]
            grown = high.number("server_rss_mb") - low.number("server_rss_mb")
            emit(
                {
                    "figure": "relay_kb_per_call",
                    "server": name,
                    "value": round(1024 * grown / (high.calls - low.calls), 1),
                    "between_calls": [low.calls, high.calls],
                }
            )
    ipbx, engine = outcomes.get("ipbx"), outcomes.get("rtpengine")
    if ipbx and engine and ipbx.best and engine.best:
        emit(
            {
                "figure": calls_figure,
                "ratio_ipbx_to_rtpengine": round(ipbx.best.calls / engine.best.calls, 3),
            }
        )
    for name in costs:
        if name != "rtpengine" and "rtpengine" in costs:
            # The relay process's own CPU, and the whole machine's (the kernel relay's).
            emit(
                {
                    "figure": cost_figure,
                    "server": name,
                    "ratio_to_rtpengine": round(costs[name] / costs["rtpengine"], 3),
                    "machine_ratio_to_rtpengine": round(machine[name] / machine["rtpengine"], 3),
                    "at_calls": load,
                }
            )
    return len(outcomes) == len(servers) and all(o.best for o in outcomes.values())
