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

The server runs pinned to one core and every SIPp to another (taskset), so SIPp and the
server do not compete. Every step is bounded by a call count and a SIPp -timeout. Progress
goes to stderr; logs, configs and SIPp statistics stay in --out.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import media  # noqa: E402
from bench.harness import (  # noqa: E402
    LOOPBACK,
    ServerNotReady,
    ServerProcess,
    SippProcess,
    SippResult,
    core_times,
    extension_range,
    free_port,
    free_udp_range,
    register_contact,
    run_sipp,
    start_ipbx,
    start_kamailio,
    start_rtpengine,
    start_sipp,
    udp_drops,
    write_users_csv,
)

FIGURES = ("register_per_s", "call_setups_per_s", "cpu_s_per_call")
RTP_FIGURE = "concurrent_rtp_calls"
PARTS = ("register", "calls", "rtp", "relay", "transcode")
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


def bench_calls(server: ServerProcess, settings: Settings, workdir: Path) -> Step | None:
    caller, callee = extension_range(2)
    caller_csv = write_users_csv(workdir / "caller.csv", [caller])
    uas_port = free_port("udp")
    registration = register_contact(server.port, callee, uas_port, workdir)
    if registration.successful != 1:
        log(f"  callee registration failed:\n{registration.errors()}")
        return None

    def step(rate: int) -> Step:
        calls = max(1, round(rate * settings.step_seconds))
        timeout = settings.step_seconds * 2 + 15
        uas = start_callee("uas", (), calls, uas_port, timeout, settings, workdir, f"uas-{rate}")
        before = server.cpu_seconds()
        result = run_sipp(
            "uac_auth",
            f"{LOOPBACK}:{server.port}",
            "-s",
            callee.number,
            "-inf",
            str(caller_csv),
            "-r",
            str(rate),
            "-l",
            str(max(100, rate * 4)),
            calls=calls,
            workdir=workdir,
            timeout=timeout,
            cpu=settings.sipp_cpu,
            name=f"uac-{rate}",
        )
        cpu_s = server.cpu_seconds() - before
        uas.finish(timeout=2)
        return Step(rate, result, cpu_s)

    return ramp(settings.call_rates, step)


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
    caller, callee = extension_range(2)
    caller_csv = write_users_csv(workdir / "caller.csv", [caller])
    uas_port = free_port("udp")
    registration = register_contact(server.port, callee, uas_port, workdir)
    if registration.successful != 1:
        log(f"  callee registration failed:\n{registration.errors()}")
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
                "uas_rtp", echo, calls, uas_port, timeout, settings, workdir, f"uas-{calls}"
            )
            prioritise(threads_of(uas.process.pid))
            uac = start_sipp(
                "uac_rtp",
                f"{LOOPBACK}:{server.port}",
                "-s",
                callee.number,
                "-inf",
                str(caller_csv),
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
    return 0 if complete else 1


if __name__ == "__main__":
    sys.exit(main())
