"""Benchmark ipbx against Kamailio with SIPp, on loopback, and print one JSON line per figure.

Figures, for each server (`make bench` runs this file):
  register_per_s      authenticated registrations per second (REGISTER, 401, REGISTER,
                      200 = one) for --users extensions, at the highest step of the rate
                      ramp that kept failures under 1 %;
  call_setups_per_s   authenticated calls per second, SIPp UAC as 1000 -> server -> SIPp
                      UAS registered as 1001 (INVITE, 407, INVITE, 180, 200, ACK, BYE),
                      chosen the same way;
  cpu_s_per_call      CPU seconds (user + system, server process tree, /proc/PID/stat)
                      per completed call at that step;
  concurrent_rtp_calls (ipbx only: Kamailio relays no media) the largest number of calls
                      held at once, each with G.711 RTP relayed both ways by the server,
                      at which every call completed, the RTP loss stayed under 0.1 % and
                      the server used under 90 % of its core (see bench_rtp).
then, where both servers have a figure, {"figure": ..., "ratio_ipbx_to_kamailio": x}.

The media parts (bench/media.py, driven by our own load tool bench/rtpload.py):
  relay_calls, relay_us_per_packet  G.711 calls relayed by ipbx and by rtpengine on one
                      core within loss < 0.1 % and added jitter p99 < 5 ms, the CPU per
                      packet at a load both carried, and {"ratio_ipbx_to_rtpengine": x};
  transcode_calls     Opus <-> PCMU calls transcoded by ipbx within the same limits, and
                      its CPU per call.

The integration part `api` (issue 6; building blocks in bench/api.py), ipbx only, one
`ipbx serve` with api.listen on a free loopback port, an admin token from `ipbx token
create` and --api-records call records written through ipbx.store before it starts:
  api_cpu_s_per_call  server CPU per call setup (the calls part's SIPp calls, --api-rate
                      for --api-seconds) with integration "none" (no webhook, no event
                      feed client), then "webhook+event_feed" (one webhook subscribed to *
                      through POST /config/webhooks, delivering to a receiver in this
                      process that answers 204, and one WebSocket client of /events); the
                      CPU is read until every event has arrived. Then
                      {"ratio_with_to_without": x}: the peer is ipbx itself without
                      integration, same server, same session (no other PBX is measured);
  webhook_events_per_s, event_feed_events_per_s  events per second from first to last
                      arrival (the offered 4 x --api-rate unless delivery falls behind:
                      then latency grows; raise --api-rate to find the ceiling), latency
                      p50/p99/max from the event's own `time` field to its arrival here,
                      and what is missing against the calls made times call.started,
                      call.ringing, call.answered and call.ended;
  rest_requests_per_s GET /calls?limit=50 over the seeded store, then GET /calls/active
                      while SIPp calls at --api-rate: requests per second and latency
                      p50/p99 from --rest-connections keep-alive connections (httpx) for
                      --rest-seconds or --rest-requests, whichever ends first; with the
                      server's CPU share and the generator core's busy share (near 100 %:
                      the client set the pace, not the server).
The receiver, the feed client and the REST load run in one thread pinned to the load
generator's core. Run it alone with `.venv/bin/python bench/run.py --parts api` (small:
`--api-rate 20 --api-seconds 3 --api-records 2000 --rest-seconds 3`).

The server runs pinned to one core and every SIPp to another (taskset), so SIPp and the
server do not compete. Every step is bounded by a call count and a SIPp -timeout. Progress
goes to stderr; logs, configs and SIPp statistics stay in --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import api, media  # noqa: E402
from tests.support.kamailio import start_kamailio  # noqa: E402
from tests.support.ports import LOOPBACK, free_port, free_udp_range  # noqa: E402
from tests.support.processes import (  # noqa: E402
    ServerNotReady,
    ServerProcess,
    core_times,
    udp_drops,
)
from tests.support.rtpengine import start_rtpengine  # noqa: E402
from tests.support.server import (  # noqa: E402
    Extension,
    extension_range,
    run_ipbx,
    start_ipbx,
    write_ipbx_config,
)
from tests.support.sipp import (  # noqa: E402
    SippProcess,
    SippResult,
    register_contact,
    run_sipp,
    start_sipp,
    write_users_csv,
)

FIGURES = ("register_per_s", "call_setups_per_s", "cpu_s_per_call")
RTP_FIGURE = "concurrent_rtp_calls"
PARTS = ("register", "calls", "rtp", "relay", "transcode", "api")
SERVERS = ("ipbx", "kamailio", "rtpengine")
# What each server is benchmarked for: SIP servers for SIP parts, media relays for relay.
SIP_SERVERS = ("ipbx", "kamailio")
RELAYS = ("ipbx", "rtpengine")
MAX_FAILED_PCT = 1.0
# concurrent_rtp_calls: a step passes with less loss and CPU than these.
MAX_RTP_LOSS_PCT = 0.1
MAX_RTP_CPU_PCT = 90.0
# uac_rtp.xml plays g711a.pcap (236 packets of 30 ms, 7.05 s) twice per call: RTP flows
# from 0 to 14.35 s after the ACK and the call ends 14.8 s after it.
RTP_PACKETS_PER_CALL = 2 * 236
RTP_SECONDS = 14.35
# Calls of an RTP step start within this many seconds; CPU and packets are measured from
# a margin after that until a margin before the first calls stop sending.
RTP_RAMP_S = 3.0
RTP_MARGIN_S = 1.0
# uac_rtp.xml offers [media_port+4]: the echoed RTP comes back to that port.
RTP_RETURN_OFFSET = 4
# A step that reaches less than this share of its target rate has saturated something.
SATURATION = 0.8


@dataclass(frozen=True)
class Step:
    """One rung of a rate ramp."""

    target_rate: int
    result: SippResult
    cpu_s: float

    @property
    def passed(self) -> bool:
        return self.result.successful > 0 and self.result.failed_pct < MAX_FAILED_PCT

    @property
    def saturated(self) -> bool:
        return not self.passed or self.result.rate < SATURATION * self.target_rate


@dataclass(frozen=True)
class RtpStep:
    """One rung of the concurrent RTP calls ramp: `calls` held at once."""

    calls: int
    result: SippResult
    cpu_pct: float
    packets_per_s: float
    returned: int
    sources: int
    generator_drops: int
    generator_cpu_pct: float

    @property
    def sent(self) -> int:
        return self.calls * RTP_PACKETS_PER_CALL

    @property
    def loss_pct(self) -> float:
        """RTP lost in the server: sent, less what came back, less what the load
        generator's own sockets dropped (counted by the kernel)."""
        lost = self.sent - self.returned - self.generator_drops
        return 100.0 * max(0, lost) / self.sent

    @property
    def generator_drop_pct(self) -> float:
        return 100.0 * self.generator_drops / self.sent

    @property
    def failure(self) -> str | None:
        """Why the step does not count, or None: the first limit it hit."""
        if self.result.successful != self.calls:
            return "calls failed"
        if self.loss_pct >= MAX_RTP_LOSS_PCT:
            return "server RTP loss"
        if self.cpu_pct >= MAX_RTP_CPU_PCT:
            return "server CPU"
        # SIPp's echo dropped packets the server delivered: its core is saturated and
        # the server was not offered the full load.
        if self.generator_drop_pct >= MAX_RTP_LOSS_PCT:
            return "load generator"
        return None


@dataclass(frozen=True)
class Settings:
    users: int
    register_rates: list[int]
    call_rates: list[int]
    rtp_calls: list[int]
    relay_calls: list[int]
    transcode_calls: list[int]
    media_seconds: float
    api_rate: int
    api_seconds: float
    api_records: int
    rest_connections: int
    rest_seconds: float
    rest_requests: int
    parts: list[str]
    step_seconds: float
    out: Path
    server_cpu: int | None
    sipp_cpu: int | None


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def emit(record: dict[str, object]) -> None:
    print(json.dumps(record), flush=True)


def ramp(rates: Sequence[int], run_step: Callable[[int], Step]) -> Step | None:
    """Run steps at rising rates until one fails or saturates; the best passing step."""
    best: Step | None = None
    for rate in rates:
        step = run_step(rate)
        result = step.result
        log(
            f"  target {rate}/s: {result.successful} ok, {result.failed} failed, "
            f"{result.requested - result.successful - result.failed} unfinished "
            f"({result.failed_pct:.2f} %), {result.rate:.0f}/s, server CPU {step.cpu_s:.2f} s"
        )
        if step.passed and (best is None or result.rate > best.result.rate):
            best = step
        if step.saturated:
            break
    return best


def bench_register(server: ServerProcess, settings: Settings, workdir: Path) -> Step | None:
    # 1000 and 1001 are the call benchmark's caller and callee: keep their bindings apart.
    users = write_users_csv(workdir / "users.csv", extension_range(settings.users, first=1002))

    def step(rate: int) -> Step:
        calls = max(1, round(rate * settings.step_seconds))
        before = server.cpu_seconds()
        result = run_sipp(
            "register_auth",
            f"{LOOPBACK}:{server.port}",
            "-inf",
            str(users),
            "-r",
            str(rate),
            "-l",
            str(max(100, rate * 2)),
            calls=calls,
            workdir=workdir,
            timeout=settings.step_seconds * 2 + 15,
            cpu=settings.sipp_cpu,
            name=f"register-{rate}",
        )
        return Step(rate, result, server.cpu_seconds() - before)

    return ramp(settings.register_rates, step)


def start_callee(
    scenario: str,
    args: Sequence[str],
    calls: int,
    port: int,
    timeout: float,
    settings: Settings,
    workdir: Path,
    name: str,
) -> SippProcess:
    """The SIPp callee of a call ramp, bound and ready for the first INVITE.

    Kamailio's parallel workers may deliver the ACK after the BYE (UDP keeps no order):
    the UAS must not abort such a finished call (and BYE it) for that. ipbx's qualify
    OPTIONS count as calls of the UAS: leave room for a few, and stop the UAS by PID once
    the caller is done.
    """
    uas = start_sipp(
        scenario,
        None,
        *args,
        "-default_behaviors",
        "all,-abortunexp",
        calls=calls + 10,
        workdir=workdir,
        local_port=port,
        timeout=timeout + 5,
        cpu=settings.sipp_cpu,
        name=name,
    )
    # Let the UAS bind its port before the first INVITE reaches it.
    time.sleep(0.3)
    return uas


@dataclass(frozen=True)
class CallParties:
    """SIPp's UAC calls as the caller (credentials in caller_csv) to `callee`, a SIPp UAS
    registered with the server at 127.0.0.1:uas_port."""

    caller_csv: Path
    callee: Extension
    uas_port: int


def register_callee(server: ServerProcess, workdir: Path) -> CallParties | None:
    """Extensions 1000 (caller) and 1001 (callee, its Contact a free port); None, said on
    stderr, when the registration fails."""
    caller, callee = extension_range(2)
    caller_csv = write_users_csv(workdir / "caller.csv", [caller])
    uas_port = free_port("udp")
    registration = register_contact(server.port, callee, uas_port, workdir)
    if registration.successful != 1:
        log(f"  callee registration failed:\n{registration.errors()}")
        return None
    return CallParties(caller_csv, callee, uas_port)


def start_uac(
    server: ServerProcess,
    parties: CallParties,
    rate: int,
    calls: int,
    timeout: float,
    settings: Settings,
    workdir: Path,
    name: str,
) -> SippProcess:
    """SIPp making `calls` authenticated calls (uac_auth.xml) at `rate` per second."""
    return start_sipp(
        "uac_auth",
        f"{LOOPBACK}:{server.port}",
        "-s",
        parties.callee.number,
        "-inf",
        str(parties.caller_csv),
        "-r",
        str(rate),
        "-l",
        str(max(100, rate * 4)),
        calls=calls,
        workdir=workdir,
        timeout=timeout,
        cpu=settings.sipp_cpu,
        name=name,
    )


def call_step(
    server: ServerProcess,
    parties: CallParties,
    rate: int,
    settings: Settings,
    workdir: Path,
    *,
    calls: int | None = None,
    name: str | None = None,
    settle: Callable[[SippResult], object] | None = None,
) -> Step:
    """`calls` calls (default: --step-seconds' worth) at `rate` per second, and the
    server's CPU from the first call until SIPp ends and `settle(result)` returns (it
    waits for what the calls set off after them, such as webhook deliveries)."""
    calls = calls or max(1, round(rate * settings.step_seconds))
    name = name or f"{rate}"
    timeout = calls / rate * 2 + 15
    port = parties.uas_port
    uas = start_callee("uas", (), calls, port, timeout, settings, workdir, f"uas-{name}")
    before = server.cpu_seconds()
    uac = start_uac(server, parties, rate, calls, timeout, settings, workdir, f"uac-{name}")
    result = uac.finish()
    if settle is not None:
        settle(result)
    cpu_s = server.cpu_seconds() - before
    uas.finish(timeout=2)
    return Step(rate, result, cpu_s)


def bench_calls(server: ServerProcess, settings: Settings, workdir: Path) -> Step | None:
    parties = register_callee(server, workdir)
    if parties is None:
        return None
    return ramp(
        settings.call_rates, lambda rate: call_step(server, parties, rate, settings, workdir)
    )


class PacketCounter:
    """Counts the datagrams that reach a UDP port on 127.0.0.1, in a thread pinned to `cpu`.

    It stands where the callers' RTP comes back (uac_rtp.xml), so SIPp's UAC needs no
    receive path of its own: every packet counted crossed the server twice.
    """

    def __init__(self, port: int, cpu: int | None) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        # A deep buffer (capped by net.core.rmem_max) so a late wake-up is not a loss.
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self._sock.bind((LOOPBACK, port))
        self._sock.settimeout(0.2)
        self._cpu = cpu
        self._stop = threading.Event()
        self.packets = 0
        self.sources: set[tuple[str, int]] = set()
        self._thread = threading.Thread(target=self._run, name=f"rtp-counter-{port}")
        self._thread.start()

    def _run(self) -> None:
        if self._cpu is not None:
            # Linux: pid 0 is the calling thread, so only this thread moves.
            os.sched_setaffinity(0, {self._cpu})
        prioritise([threading.get_native_id()])
        buffer = bytearray(2048)
        while not self._stop.is_set():
            try:
                _, source = self._sock.recvfrom_into(buffer)
            except TimeoutError:
                continue
            self.packets += 1
            self.sources.add(source)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self._sock.close()


def prioritise(threads: Iterable[int]) -> None:
    """Raise these threads to nice -10 (as root; otherwise leave them be).

    SIPp's RTP echo and the PacketCounter share a core with hundreds of pcap players;
    ahead of them, they do not fall behind and drop what the server relayed.
    """
    for thread in threads:
        try:
            os.setpriority(os.PRIO_PROCESS, thread, -10)
        except (PermissionError, ProcessLookupError):
            return


def threads_of(pid: int) -> list[int]:
    return [int(task.name) for task in Path(f"/proc/{pid}/task").iterdir()]


@dataclass(frozen=True)
class RtpOutcome:
    """The best passing step of the RTP ramp and what stopped the ramp."""

    best: RtpStep | None
    limited_by: str


def bench_rtp(server: ServerProcess, settings: Settings, workdir: Path) -> RtpOutcome:
    """Hold N calls at once with G.711 RTP both ways through the server, for rising N.

    SIPp's UAC (uac_rtp.xml, as 1000) calls 1001, a SIPp UAS (uas_rtp.xml) that answers
    PCMA and echoes RTP with -rtp_echo. Each call sends 472 packets of 30 ms from the
    caller; the server relays them to the callee and the echo back, and a PacketCounter
    counts what returns. Loss is 1 - returned / sent (round trip: two relays through the
    server plus SIPp's echo), less what the kernel dropped at the load generator's
    sockets. The server's CPU share and relayed packets per second are measured while all
    N calls carry RTP, as is the busy share of the load generator's core. The ramp stops
    at the first step that fails; the reason is reported as limited_by.
    """
    parties = register_callee(server, workdir)
    if parties is None:
        return RtpOutcome(None, "callee registration failed")

    def step(calls: int) -> RtpStep:
        rate = math.ceil(calls / RTP_RAMP_S)
        timeout = RTP_RAMP_S + RTP_SECONDS + 20
        uas_media, _ = free_udp_range(4)
        uac_media, _ = free_udp_range(RTP_RETURN_OFFSET + 2)
        counter = PacketCounter(uac_media + RTP_RETURN_OFFSET, settings.sipp_cpu)
        try:
            # The echo thread shares its core with the callers: a deep buffer rides out
            # its late wake-ups (the default 208 KiB overflows at 400 calls).
            echo = (
                "-rtp_echo",
                "-mi",
                LOOPBACK,
                "-mp",
                str(uas_media),
                "-rtp_buffsize",
                str(4 << 20),
            )
            uas = start_callee(
                "uas_rtp", echo, calls, parties.uas_port, timeout, settings, workdir, f"uas-{calls}"
            )
            prioritise(threads_of(uas.process.pid))
            uac = start_sipp(
                "uac_rtp",
                f"{LOOPBACK}:{server.port}",
                "-s",
                parties.callee.number,
                "-inf",
                str(parties.caller_csv),
                "-mi",
                LOOPBACK,
                "-mp",
                str(uac_media),
                "-r",
                str(rate),
                "-l",
                str(calls),
                calls=calls,
                workdir=workdir,
                timeout=timeout,
                cpu=settings.sipp_cpu,
                name=f"uac-rtp-{calls}",
            )
            started = time.monotonic()
            time.sleep(RTP_RAMP_S + RTP_MARGIN_S)
            cpu_before, packets_before = server.cpu_seconds(), counter.packets
            core_before = core_times(settings.sipp_cpu)
            window_start = time.monotonic()
            time.sleep(max(1.0, started + RTP_SECONDS - RTP_MARGIN_S - window_start))
            window = time.monotonic() - window_start
            cpu_s = server.cpu_seconds() - cpu_before
            packets = counter.packets - packets_before
            core_after = core_times(settings.sipp_cpu)
            result = uac.finish()
            # The last echoes are in flight when the last BYE goes out.
            time.sleep(0.5)
            # Read while SIPp's echo sockets (audio port and +2) and the counter exist.
            drops = udp_drops([uas_media, uas_media + 2, uac_media + RTP_RETURN_OFFSET])
            uas.finish(timeout=2)
        finally:
            counter.close()
        return RtpStep(
            calls=calls,
            result=result,
            cpu_pct=100.0 * cpu_s / window,
            # Every packet counted was relayed twice: caller to callee and back.
            packets_per_s=2 * packets / window,
            returned=counter.packets,
            sources=len(counter.sources),
            generator_drops=drops,
            generator_cpu_pct=100.0
            * (core_after[0] - core_before[0])
            / max(1, core_after[1] - core_before[1]),
        )

    best: RtpStep | None = None
    for calls in settings.rtp_calls:
        current = step(calls)
        result = current.result
        log(
            f"  {calls} calls: {result.successful} ok, {result.failed} failed; RTP "
            f"{current.returned}/{current.sent} back, {current.generator_drops} dropped by "
            f"SIPp's sockets, {current.loss_pct:.3f} % lost in the server; back from "
            f"{current.sources} server ports; server CPU {current.cpu_pct:.0f} %, "
            f"{current.packets_per_s:.0f} packets/s; SIPp core {current.generator_cpu_pct:.0f} %"
        )
        if current.failure is not None:
            return RtpOutcome(best, current.failure)
        best = current
    return RtpOutcome(best, "end of ramp")


def report_rtp(name: str, outcome: RtpOutcome) -> dict[str, float]:
    best = outcome.best
    if best is None:
        emit(
            {"figure": RTP_FIGURE, "server": name, "value": None, "limited_by": outcome.limited_by}
        )
        return {}
    emit(
        {
            "figure": RTP_FIGURE,
            "server": name,
            "value": best.calls,
            "cpu_pct": round(best.cpu_pct, 1),
            "packets_per_s": round(best.packets_per_s),
            "loss_pct": round(best.loss_pct, 4),
            "generator_cpu_pct": round(best.generator_cpu_pct, 1),
            "limited_by": outcome.limited_by,
            "codec": "PCMA/30ms",
        }
    )
    return {RTP_FIGURE: best.calls}


def start_media_server(name: str, settings: Settings, workdir: Path) -> ServerProcess:
    """A fresh relay for the media parts: ipbx with only the caller and the callee (no
    registrations or bindings left from the SIP parts), or rtpengine. Each call anchors
    4 ports (RTP and RTCP per side): 6000 ports carry 1500 calls."""
    if name == "ipbx":
        return start_ipbx(workdir, extension_range(2), cpu=settings.server_cpu, rtp_ports=6000)
    return start_rtpengine(workdir, cpu=settings.server_cpu, rtp_ports=6000)


def media_ramp(
    name: str, mode: str, steps: Sequence[int], settings: Settings, workdir: Path
) -> media.MediaOutcome | None:
    """Start the relay, run the ramp against it, stop it; None if it did not start."""
    try:
        server = start_media_server(name, settings, workdir / "server")
    except (ServerNotReady, OSError) as error:
        reason = str(error).splitlines()[0]
        log(f"{name}: not started: {reason}")
        return None
    log(f"{name}: pid {server.pid}, {mode} ramp")
    # Both relays get the generator's priority (nice -10, as root), so a test run
    # elsewhere on the machine preempts neither; what is left is caught by media.ramp.
    prioritise(threads_of(server.pid))
    if name == "ipbx":
        target = ["--server", "ipbx", "--sip-port", str(server.port)]
    else:
        target = ["--server", "rtpengine", "--ng-port", str(server.port)]
    target += ["--server-pid", str(server.pid)]

    def step(calls: int) -> media.MediaStep:
        return media.run_load(
            target, calls, settings.media_seconds, mode, settings.sipp_cpu, workdir
        )

    try:
        return media.ramp(steps, step, log, cores=(settings.sipp_cpu, settings.server_cpu))
    finally:
        code = server.stop()
        log(f"{name}: stopped (exit {code}); log {server.log_path}")


def bench_relay(servers: Sequence[str], settings: Settings) -> bool:
    """relay_calls for each relay, relay_us_per_packet at a load all carried, ratios."""
    outcomes: dict[str, media.MediaOutcome] = {}
    for name in servers:
        workdir = settings.out / "relay" / name
        outcome = media_ramp(name, "relay", settings.relay_calls, settings, workdir)
        if outcome is None:
            emit({"figure": "relay_calls", "server": name, "value": None, "error": "not started"})
            continue
        outcomes[name] = outcome
        emit(media.figure("relay_calls", name, outcome, codec="PCMU/20ms"))
    load = media.common_load(outcomes) if outcomes else None
    if load is not None:
        for name, outcome in outcomes.items():
            step = media.step_at(outcome, load)
            emit(
                {
                    "figure": "relay_us_per_packet",
                    "server": name,
                    "value": step.record.get("server_us_per_packet"),
                    "at_calls": load,
                    "server_cpu_pct": step.record.get("server_cpu_pct"),
                }
            )
    ipbx, engine = outcomes.get("ipbx"), outcomes.get("rtpengine")
    if ipbx and engine and ipbx.best and engine.best:
        emit(
            {
                "figure": "relay_calls",
                "ratio_ipbx_to_rtpengine": round(ipbx.best.calls / engine.best.calls, 3),
            }
        )
        if load is not None:
            mine = media.step_at(ipbx, load).number("server_us_per_packet")
            theirs = media.step_at(engine, load).number("server_us_per_packet")
            emit(
                {
                    "figure": "relay_us_per_packet",
                    "ratio_ipbx_to_rtpengine": round(mine / theirs, 3),
                    "at_calls": load,
                }
            )
    return len(outcomes) == len(servers) and all(o.best for o in outcomes.values())


def bench_transcode(settings: Settings) -> bool:
    """transcode_calls through ipbx, with CPU per call (share of a core)."""
    outcome = media_ramp(
        "ipbx", "transcode", settings.transcode_calls, settings, settings.out / "transcode"
    )
    if outcome is None:
        emit({"figure": "transcode_calls", "server": "ipbx", "value": None, "error": "not started"})
        return False
    extra: dict[str, object] = {"codecs": "opus/48000 <-> PCMU, 20 ms"}
    if outcome.best is not None:
        per_call = outcome.best.number("server_cpu_pct") / outcome.best.calls
        extra["cpu_pct_per_call"] = round(per_call, 3)
    emit(media.figure("transcode_calls", "ipbx", outcome, **extra))
    return outcome.best is not None


# The api part: a webhook secret long enough for WebhookConfig, and the pause after each
# call phase (both phases: they are compared) before the server's CPU is read.
WEBHOOK_SECRET = "bench-webhook-secret-not-a-real-one"
SETTLE_S = 0.5
PEER_NOTE = "ipbx itself without webhooks or event feed, same server, same session"


@dataclass
class ApiServer:
    """ipbx with its API on 127.0.0.1:api_port, an admin token and a client holding it."""

    server: ServerProcess
    api_port: int
    token: str
    client: httpx.Client

    def get_total(self, path: str) -> int | None:
        """`total` of a list endpoint's answer; None if it did not answer 200."""
        response = self.client.get(path)
        total = response.json().get("total") if response.status_code == 200 else None
        return total if isinstance(total, int) else None


def start_api_server(settings: Settings, workdir: Path) -> ApiServer:
    """Config with the API on a free port, a token from `ipbx token create`,
    --api-records call records written to the store; then `ipbx serve`, pinned like the
    other parts' servers, and ready once GET /calls answers."""
    # A fresh store (an --out used before holds an earlier run's): exactly the seeded
    # records, no webhook or token left from then.
    shutil.rmtree(workdir / "data", ignore_errors=True)
    (workdir / "data").mkdir(parents=True)
    port, api_port = free_port("both"), free_port("tcp")
    rtp_range = free_udp_range(1000)
    config = write_ipbx_config(
        workdir / "ipbx.yaml",
        port=port,
        data_dir=workdir / "data",
        rtp_range=rtp_range,
        extensions=extension_range(2),
        api_port=api_port,
    )
    command = [sys.executable, "-m", "ipbx.cli", "token", "create", "--config", str(config)]
    created = subprocess.run(
        [*command, "--scope", "admin", "--name", "bench"],
        cwd=workdir,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    token = created.stdout.split()[0]
    from ipbx.config import load_config

    started = time.monotonic()
    api.seed_call_records(load_config(config).store_url, settings.api_records)
    log(f"  {settings.api_records} call records written in {time.monotonic() - started:.1f} s")
    server = run_ipbx(workdir, config, port, rtp_range, cpu=settings.server_cpu)
    client = httpx.Client(
        base_url=f"http://{LOOPBACK}:{api_port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10.0,
    )
    deadline = time.monotonic() + 10.0
    while True:
        try:
            if client.get("/calls", params={"limit": 1}).status_code == 200:
                return ApiServer(server, api_port, token, client)
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            client.close()
            server.stop()
            raise ServerNotReady(f"ipbx: no API on {LOOPBACK}:{api_port}\n{server.log_tail()}")
        time.sleep(0.1)


def wait_for_events(subscribers: Sequence[list[api.Arrival]], calls: int, timeout: float) -> float:
    """Wait (at most `timeout`) until every subscriber has the call.ended of `calls`
    calls; they come last and in order, so all of the calls' events are there. Returns
    the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if all(api.arrived(arrivals, calls) for arrivals in subscribers):
            break
        time.sleep(0.05)
    return time.monotonic() - started


def event_record(figure: str, summary: api.EventSummary, **extra: object) -> dict[str, object]:
    return {
        "figure": figure,
        "server": "ipbx",
        "value": round(summary.events_per_s, 1),
        "events": summary.received - summary.duplicates - summary.malformed,
        "expected": summary.expected,
        "missing": summary.missing,
        "missing_by_type": summary.missing_by_type,
        "duplicates": summary.duplicates,
        "other_events": summary.other,
        "latency_p50_ms": round(summary.latency_ms(50), 2),
        "latency_p99_ms": round(summary.latency_ms(99), 2),
        "latency_max_ms": round(summary.latency_ms(100), 2),
        "latency": "event's time field to arrival at the bench",
        **extra,
    }


def bench_integration(
    ipbx: ApiServer, parties: CallParties, loop: api.LoadLoop, settings: Settings, workdir: Path
) -> bool:
    """Figures 1 and 2: CPU per call setup without and with a webhook and a feed client;
    the webhook's and the feed's events per second, latency and what is missing."""
    rate = settings.api_rate
    calls = max(1, round(rate * settings.api_seconds))
    log(f"ipbx: {calls} calls at {rate}/s, no webhook, no event feed client")
    plain = call_step(
        ipbx.server, parties, rate, settings, workdir, calls=calls, name="plain",
        settle=lambda _: time.sleep(SETTLE_S),
    )  # fmt: skip
    receiver, feed = api.WebhookReceiver(), api.EventFeed()
    loop.run(receiver.start(), 5)
    hook = {"url": receiver.url, "events": ["*"], "secret": WEBHOOK_SECRET}
    added = ipbx.client.post("/config/webhooks", json=hook)
    if added.status_code != 201:
        log(f"  POST /config/webhooks: {added.status_code} {added.text}")
        return False
    loop.run(feed.open(f"ws://{LOOPBACK}:{ipbx.api_port}/events?token={ipbx.token}"), 15)
    time.sleep(1.0)  # the webhook worker restarts with the reload the POST caused
    log(f"ipbx: {calls} calls at {rate}/s, webhook to {receiver.url} and an event feed client")
    waited: list[float] = []

    def drain(result: SippResult) -> None:
        timeout = max(10.0, 2 * settings.api_seconds)
        subscribers = [receiver.arrivals, feed.arrivals]
        waited.append(wait_for_events(subscribers, result.successful, timeout))
        time.sleep(SETTLE_S)

    hooked = call_step(
        ipbx.server, parties, rate, settings, workdir, calls=calls, name="hooked", settle=drain
    )
    pending = ipbx.get_total("/webhooks/deliveries?status=pending&limit=1")
    failed = ipbx.get_total("/webhooks/deliveries?status=failed&limit=1")
    removed = ipbx.client.delete(f"/config/webhooks/{receiver.url}")
    if removed.status_code != 204:
        log(f"  DELETE /config/webhooks/...: {removed.status_code} {removed.text}")
    loop.run(feed.close(), 10)
    loop.run(receiver.stop(), 5)
    for step, label in ((plain, "without"), (hooked, "with")):
        result = step.result
        log(f"  {label}: {result.successful} ok, {result.failed} failed, {result.rate:.0f}/s, "
            f"server CPU {step.cpu_s:.2f} s")  # fmt: skip
    log(f"  events: webhook {len(receiver.arrivals)}, feed {len(feed.arrivals)}, after "
        f"{waited[0] if waited else 0:.1f} s of waiting; outbox pending {pending}, "
        f"failed {failed}")  # fmt: skip
    per_call: dict[str, float] = {}
    for step, integration in ((plain, "none"), (hooked, "webhook+event_feed")):
        record: dict[str, object] = {
            "figure": "api_cpu_s_per_call",
            "server": "ipbx",
            "integration": integration,
            "value": None,
            "at_rate": rate,
            "calls": step.result.requested,
            "failed_pct": round(step.result.failed_pct, 3),
        }
        if step.result.successful:
            per_call[integration] = step.cpu_s / step.result.successful
            record["value"] = round(per_call[integration], 6)
        emit(record)
    if len(per_call) == 2:
        ratio = per_call["webhook+event_feed"] / per_call["none"]
        emit({"figure": "api_cpu_s_per_call", "ratio_with_to_without": round(ratio, 3),
              "peer": PEER_NOTE})  # fmt: skip
    answered = hooked.result.successful
    webhook = api.summarise(receiver.arrivals, answered)
    emit(event_record("webhook_events_per_s", webhook, outbox_pending=pending,
                      outbox_failed=failed, subscribed="*"))  # fmt: skip
    events = api.summarise(feed.arrivals, answered)
    emit(event_record("event_feed_events_per_s", events, close_code=feed.close_code))
    return bool(per_call) and webhook.missing == 0 and events.missing == 0 and not failed


def rest_figure(
    name: str, result: api.RestResult, cpu_s: float, generator_pct: float, **extra: object
) -> dict[str, object]:
    return {
        "figure": "rest_requests_per_s",
        "server": "ipbx",
        "endpoint": name,
        "value": round(result.requests_per_s, 1),
        "latency_p50_ms": round(api.percentile(result.latencies_ms, 50), 2),
        "latency_p99_ms": round(api.percentile(result.latencies_ms, 99), 2),
        "requests": result.requests,
        "not_ok": result.requests - result.ok,
        "errors": dict(result.errors),
        "connections": result.connections,
        "seconds": round(result.seconds, 2),
        "server_cpu_pct": round(100.0 * cpu_s / result.seconds, 1) if result.seconds else None,
        "generator_core_pct": round(generator_pct, 1),
        **extra,
    }


def bench_rest(
    ipbx: ApiServer, parties: CallParties, loop: api.LoadLoop, settings: Settings, workdir: Path
) -> bool:
    """Figure 3: GET /calls?limit=50 over the seeded store, then GET /calls/active while
    SIPp makes calls at --api-rate."""
    base = f"http://{LOOPBACK}:{ipbx.api_port}"

    def load(path: str, totals: bool) -> tuple[api.RestResult, float, float]:
        """The load's result, the server's CPU seconds and the busy share (percent) of
        the generator's core meanwhile: near 100, the client set the pace."""
        before, core_before = ipbx.server.cpu_seconds(), core_times(settings.sipp_cpu)
        coro = api.rest_load(
            base + path,
            ipbx.token,
            connections=settings.rest_connections,
            seconds=settings.rest_seconds,
            max_requests=settings.rest_requests,
            totals=totals,
        )
        result = loop.run(coro, settings.rest_seconds + 30)
        cpu_s, core_after = ipbx.server.cpu_seconds() - before, core_times(settings.sipp_cpu)
        busy = core_after[0] - core_before[0]
        return result, cpu_s, 100.0 * busy / max(1, core_after[1] - core_before[1])

    log(f"ipbx: GET /calls?limit=50, {settings.rest_connections} connections")
    listing, cpu_s, generator = load("/calls?limit=50", totals=False)
    records = ipbx.get_total("/calls?limit=1")
    log(f"  {listing.ok}/{listing.requests} ok, {listing.requests_per_s:.0f}/s")
    emit(rest_figure("GET /calls?limit=50", listing, cpu_s, generator, records=records))

    rate = settings.api_rate
    calls = max(1, round(rate * (settings.rest_seconds + 2)))
    timeout = calls / rate * 2 + 15
    log(f"ipbx: GET /calls/active while SIPp calls at {rate}/s")
    uas = start_callee("uas", (), calls, parties.uas_port, timeout, settings, workdir, "uas-rest")
    uac = start_uac(ipbx.server, parties, rate, calls, timeout, settings, workdir, "uac-rest")
    try:
        time.sleep(1.0)
        active, cpu_s, generator = load("/calls/active?limit=50", totals=True)
    finally:
        result = uac.finish()
        uas.finish(timeout=2)
    mean = sum(active.totals) / len(active.totals) if active.totals else None
    log(f"  {active.ok}/{active.requests} ok, {active.requests_per_s:.0f}/s; calls "
        f"{result.successful} ok, {result.failed} failed")  # fmt: skip
    emit(rest_figure(
        "GET /calls/active", active, cpu_s, generator, active_calls_mean=mean and round(mean, 2),
        calls_at_rate=rate, note="server_cpu_pct includes the calls' own",
    ))  # fmt: skip
    return all(r.ok and r.ok == r.requests for r in (listing, active))


def bench_api(settings: Settings) -> bool:
    """The integration part (issue 6), against one `ipbx serve` with its API on a free
    port; see the module documentation and bench/api.py."""
    workdir = settings.out / "api"
    try:
        ipbx = start_api_server(settings, workdir / "server")
    except (ServerNotReady, OSError, subprocess.SubprocessError) as error:
        reason = str(error).splitlines()[0]
        log(f"ipbx: not started: {reason}")
        emit({"figure": "api_cpu_s_per_call", "server": "ipbx", "value": None, "error": reason})
        return False
    log(f"ipbx: pid {ipbx.server.pid}, udp:{LOOPBACK}:{ipbx.server.port}, "
        f"API http://{LOOPBACK}:{ipbx.api_port}")  # fmt: skip
    loop = api.LoadLoop(settings.sipp_cpu)
    try:
        parties = register_callee(ipbx.server, workdir / "calls")
        if parties is None:
            return False
        complete = bench_integration(ipbx, parties, loop, settings, workdir / "calls")
        complete &= bench_rest(ipbx, parties, loop, settings, workdir / "calls")
        return complete
    finally:
        loop.close()
        ipbx.client.close()
        code = ipbx.server.stop()
        log(f"ipbx: stopped (exit {code}); log {ipbx.server.log_path}")


def start_server(name: str, settings: Settings, workdir: Path) -> ServerProcess:
    if name == "ipbx":
        # Extensions 1000 and 1001 for calls, then the registration population. A call
        # anchors two legs of RTP + RTCP: 4000 ports carry 1000 calls at once.
        return start_ipbx(
            workdir,
            extension_range(settings.users + 2),
            cpu=settings.server_cpu,
            rtp_ports=4000,
        )
    return start_kamailio(workdir, cpu=settings.server_cpu)


def wanted(name: str, settings: Settings) -> list[str]:
    """The figures `settings.parts` asks of this server."""
    figures: list[str] = []
    if "register" in settings.parts:
        figures.append("register_per_s")
    if "calls" in settings.parts:
        figures += ["call_setups_per_s", "cpu_s_per_call"]
    if "rtp" in settings.parts and name == "ipbx":
        figures.append(RTP_FIGURE)
    return figures


def bench_server(name: str, settings: Settings) -> dict[str, float]:
    """Run every figure asked of one server; print its lines, return its values."""
    workdir = settings.out / name
    values: dict[str, float] = {}
    if "rtp" in settings.parts and name != "ipbx":
        log(f"{name}: relays no media, no {RTP_FIGURE}")
    figures = wanted(name, settings)
    if not figures:
        return values
    try:
        server = start_server(name, settings, workdir / "server")
    except (ServerNotReady, OSError) as error:
        reason = str(error).splitlines()[0]
        log(f"{name}: not started: {reason}")
        for figure in figures:
            emit({"figure": figure, "server": name, "value": None, "error": reason})
        return values
    log(f"{name}: pid {server.pid}, udp:{LOOPBACK}:{server.port}")
    try:
        if "register_per_s" in figures:
            log(f"{name}: register ramp, {settings.users} users")
            best = bench_register(server, settings, workdir / "register")
            values.update(report(name, "register_per_s", best))
        if "call_setups_per_s" in figures:
            log(f"{name}: call ramp")
            best = bench_calls(server, settings, workdir / "calls")
            values.update(report(name, "call_setups_per_s", best))
            if best is not None and best.result.successful:
                per_call = best.cpu_s / best.result.successful
                values["cpu_s_per_call"] = per_call
                emit(
                    {
                        "figure": "cpu_s_per_call",
                        "server": name,
                        "value": round(per_call, 6),
                        "at_rate": best.target_rate,
                    }
                )
            else:
                emit({"figure": "cpu_s_per_call", "server": name, "value": None})
        if RTP_FIGURE in figures:
            log(f"{name}: concurrent RTP calls ramp")
            values.update(report_rtp(name, bench_rtp(server, settings, workdir / "rtp")))
    finally:
        code = server.stop()
        log(f"{name}: stopped (exit {code}); log {server.log_path}")
    return values


def report(name: str, figure: str, best: Step | None) -> dict[str, float]:
    if best is None:
        emit({"figure": figure, "server": name, "value": None, "failed_pct": None})
        return {}
    value = round(best.result.rate, 1)
    emit(
        {
            "figure": figure,
            "server": name,
            "value": value,
            "failed_pct": round(best.result.failed_pct, 3),
            "target_rate": best.target_rate,
            "calls": best.result.requested,
        }
    )
    return {figure: value}


def parse_rates(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part]


def parse_args(argv: Sequence[str] | None) -> tuple[list[str], Settings]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--servers", default=",".join(SERVERS), help="comma-separated")
    parser.add_argument("--users", type=int, default=2000, help="registration population")
    parser.add_argument("--register-rates", default="250,500,1000,2000,4000,8000,16000")
    parser.add_argument("--call-rates", default="25,50,100,200,400,800,1600,3200")
    parser.add_argument(
        "--rtp-calls",
        default="100,200,300,400,500,600,800,1000",
        help="concurrent calls per step of the RTP ramp (ipbx has RTP ports for 1000)",
    )
    parser.add_argument(
        "--relay-calls",
        default="100,200,300,400,500,600,700,800,1000,1200",
        help="concurrent calls per step of the relay ramp (ipbx and rtpengine)",
    )
    parser.add_argument(
        "--transcode-calls",
        default="5,10,20,30,40,50,60,80,100,120,150",
        help="concurrent calls per step of the Opus <-> PCMU transcoding ramp",
    )
    parser.add_argument(
        "--media-seconds", type=float, default=10.0, help="RTP time of a relay or transcode step"
    )
    parser.add_argument(
        "--api-rate", type=int, default=50, help="call setups per second of the api part"
    )
    parser.add_argument(
        "--api-seconds", type=float, default=10.0, help="length of each api call phase"
    )
    parser.add_argument(
        "--api-records", type=int, default=10_000, help="call records in the store for GET /calls"
    )
    parser.add_argument("--rest-connections", type=int, default=8, help="REST load connections")
    parser.add_argument("--rest-seconds", type=float, default=10.0, help="each REST load's time")
    parser.add_argument(
        "--rest-requests", type=int, default=50_000, help="each REST load's request limit"
    )
    parser.add_argument(
        "--parts", default=",".join(PARTS), help=f"comma-separated, of {', '.join(PARTS)}"
    )
    parser.add_argument("--step-seconds", type=float, default=4.0, help="length of a step")
    parser.add_argument("--out", type=Path, default=None, help="logs and statistics")
    args = parser.parse_args(argv)
    out: Path = args.out or REPO_ROOT / "bench" / "out" / time.strftime("%Y%m%d-%H%M%S")
    # Two cores or more: the server on core 1, SIPp on core 0.
    pinned = (os.cpu_count() or 1) >= 2
    settings = Settings(
        users=args.users,
        register_rates=parse_rates(args.register_rates),
        call_rates=parse_rates(args.call_rates),
        rtp_calls=parse_rates(args.rtp_calls),
        relay_calls=parse_rates(args.relay_calls),
        transcode_calls=parse_rates(args.transcode_calls),
        media_seconds=args.media_seconds,
        api_rate=args.api_rate,
        api_seconds=args.api_seconds,
        api_records=args.api_records,
        rest_connections=args.rest_connections,
        rest_seconds=args.rest_seconds,
        rest_requests=args.rest_requests,
        parts=[part for part in args.parts.split(",") if part],
        step_seconds=args.step_seconds,
        out=out.resolve(),
        server_cpu=1 if pinned else None,
        sipp_cpu=0 if pinned else None,
    )
    return [s for s in args.servers.split(",") if s], settings


def main(argv: Sequence[str] | None = None) -> int:
    servers, settings = parse_args(argv)
    unknown = set(servers) - set(SERVERS)
    if unknown:
        log(f"unknown servers: {', '.join(sorted(unknown))}")
        return 2
    unknown = set(settings.parts) - set(PARTS)
    if unknown:
        log(f"unknown parts: {', '.join(sorted(unknown))}")
        return 2
    settings.out.mkdir(parents=True, exist_ok=True)
    log(f"output in {settings.out}")
    results = {name: bench_server(name, settings) for name in servers if name in SIP_SERVERS}
    ipbx, kamailio = results.get("ipbx", {}), results.get("kamailio", {})
    for figure in FIGURES:
        if ipbx.get(figure) and kamailio.get(figure):
            ratio = ipbx[figure] / kamailio[figure]
            emit({"figure": figure, "ratio_ipbx_to_kamailio": round(ratio, 3)})
    complete = all(values or not wanted(name, settings) for name, values in results.items())
    if "relay" in settings.parts:
        complete &= bench_relay([name for name in servers if name in RELAYS], settings)
    if "transcode" in settings.parts and "ipbx" in servers:
        complete &= bench_transcode(settings)
    if "api" in settings.parts and "ipbx" in servers:
        complete &= bench_api(settings)
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
