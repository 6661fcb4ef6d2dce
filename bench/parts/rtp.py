"""The rtp part: concurrent_rtp_calls, the most calls ipbx holds at once with G.711 RTP
relayed both ways (SIPp plays and echoes it; a PacketCounter counts what comes back)."""

from __future__ import annotations

import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.parts.session import Settings, emit, log
from bench.parts.sip import CallParties, register_callee, start_callee, start_callers
from tests.support.ports import LOOPBACK, free_udp_range
from tests.support.processes import ServerProcess, core_times, descendants, udp_drops
from tests.support.sipp import SippProcess, SippResult

RTP_FIGURE = "concurrent_rtp_calls"
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


# The longest a server's media workers take to start.
WORKERS_START_S = 10.0


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
    """The threads of a process and of its descendants (ipbx's media workers)."""
    threads = []
    for member in descendants(pid):
        try:
            threads += [int(task.name) for task in Path(f"/proc/{member}/task").iterdir()]
        except OSError:  # it has just exited
            continue
    return threads


def pin_workers_apart(pid: int, server_core: int | None, workers_cores: Sequence[int]) -> None:
    """Pin a server's own threads to `server_core` and its media workers', by process ID,
    to `workers_cores`, one core each (as root; a server_core of None leaves them be).
    ipbx starts its workers just after it says it is ready: they are waited for,
    WORKERS_START_S at most."""
    if server_core is None:
        return

    def workers() -> list[int]:
        return sorted(set(descendants(pid)) - {pid})

    wanted = len(workers_cores)
    wait_until(lambda: len(workers()) >= wanted, WORKERS_START_S, f"{wanted} media workers")
    placed = [(pid, server_core), *zip(workers(), workers_cores, strict=False)]
    for member, core in placed:
        for task in Path(f"/proc/{member}/task").iterdir():
            os.sched_setaffinity(int(task.name), {core})


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` until it holds; TimeoutError naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)


def media_from(port: int) -> tuple[str, ...]:
    """SIPp's arguments for RTP from (and, for a callee, echoed at) `port` on loopback."""
    return ("-mi", LOOPBACK, "-mp", str(port))


def start_echo(
    parties: CallParties,
    calls: int,
    timeout: float,
    settings: Settings,
    workdir: Path,
    name: str,
) -> SippProcess:
    """The callee answering PCMA (uas_rtp.xml) that sends every RTP packet back where it
    came from (-rtp_echo). Its echo thread shares its core with the callers: a deep
    buffer rides out its late wake-ups (the default 208 KiB overflows at 400 calls)."""
    uas_media, _ = free_udp_range(4)
    echo = ("-rtp_echo", *media_from(uas_media), "-rtp_buffsize", str(4 << 20))
    return start_callee("uas_rtp", echo, calls, parties.uas_port, timeout, settings, workdir, name)


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
            uas = start_echo(parties, calls, timeout, settings, workdir, f"uas-{calls}")
            prioritise(threads_of(uas.process.pid))
            uac = start_callers(
                "uac_rtp", server, parties, settings, workdir, rate=rate, at_once=calls,
                calls=calls, timeout=timeout, name=f"uac-rtp-{calls}",
                extra=media_from(uac_media),
            )  # fmt: skip
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
