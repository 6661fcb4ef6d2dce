"""The memory part: the server's resident memory under a steady call rate.

One ipbx (API off, as in the calls part) takes --memory-calls SIPp calls, uac_auth.xml as
1000 -> ipbx -> uas.xml registered as 1001 (INVITE, 407, INVITE, 180, 200, ACK, BYE), at a
steady --memory-rate per second. Every --memory-every completed calls (read from SIPp's
-trace_stat CSV, written each second) the server's VmRSS is read from /proc/PID/status;
once more when SIPp is done, and once after --memory-settle idle seconds, when the
transactions of the last calls have outlived their 32 s (RFC 3261 Timers D, J, L, M).

The figure `memory_rss_mb` is the peak RSS while calls run, with every sample, and the
growth from the sample nearest 10,000 calls to the last one under load: the goal is under
200 MB at 250 calls/s and flat (±10 %) from 10,000 calls on.

With --memory-rtp S the calls are relayed calls: uac_rtp_brief.xml plays S seconds of
PCMA in 20 ms packets (brief.pcap) and hangs up 0.5 s after, and the callee, uas_rtp.xml
with -rtp_echo, sends every packet back, so the server relays 100 packets a second of
each call each way. A PacketCounter counts what comes back; `rtp_returned_pct` is that
share of what the callers sent (loss > 0.1 % is a failed run, as in the media parts).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path

from bench.parts.rtp import (
    RTP_RETURN_OFFSET,
    PacketCounter,
    media_from,
    prioritise,
    start_echo,
    threads_of,
)
from bench.parts.session import Settings, emit, log
from bench.parts.sip import (
    MAX_FAILED_PCT,
    CallParties,
    register_callee,
    start_callee,
    start_callers,
    start_uac,
)
from ipbx.media.codecs import PCMA
from tests.support.ports import free_udp_range
from tests.support.processes import ServerNotReady, ServerProcess, memory_of
from tests.support.server import extension_range, start_ipbx
from tests.support.sipp import SippProcess, SippResult, parse_sipp_stats, write_rtp_pcap

FIGURE = "memory_rss_mb"
# Growth is measured from here: by then the lingering transactions of a steady rate have
# reached their plateau (250 calls/s for 40 s).
PLATEAU_CALLS = 10_000
GOAL_MB = 200.0
GOAL_GROWTH_PCT = 10.0
POLL_S = 0.5
MAX_RTP_LOSS_PCT = 0.1
PACKETS_PER_S = 50
# What a call lasts after its play starts: the echo of the last packets comes back.
RTP_TAIL_S = 0.5


@dataclass(frozen=True)
class Sample:
    """The server's memory after `calls` completed calls (SIPp's count), `at_s` seconds
    into the run."""

    calls: int
    at_s: float
    rss_mb: float
    peak_mb: float
    cpu_s: float
    note: str = ""


def completed_calls(stat_path: Path, requested: int) -> int:
    """Successful plus failed calls in the last row of a running SIPp's -trace_stat CSV
    (0 while it has none; a row being written is read at the next poll)."""
    try:
        result = parse_sipp_stats(stat_path, 0, requested, stat_path.parent, "")
    except (IndexError, ValueError, KeyError):
        return 0
    return result.successful + result.failed


@dataclass(frozen=True)
class MemoryRun:
    """The samples of one steady run and SIPp's totals."""

    samples: list[Sample]
    result: SippResult
    # With --memory-rtp: the RTP packets the callers sent and those that came back.
    rtp_sent: int = 0
    rtp_returned: int = 0

    @property
    def returned_pct(self) -> float | None:
        return 100.0 * self.rtp_returned / self.rtp_sent if self.rtp_sent else None

    @property
    def loaded(self) -> list[Sample]:
        """The samples taken while calls ran (not the idle ones before and after)."""
        return [s for s in self.samples if not s.note]

    @property
    def peak_mb(self) -> float:
        return max(s.rss_mb for s in self.loaded)

    @property
    def growth_pct(self) -> float | None:
        """RSS growth from the sample nearest PLATEAU_CALLS to the last one under load."""
        after = [s for s in self.loaded if s.calls >= PLATEAU_CALLS * 0.9]
        if len(after) < 2:
            return None
        first = min(after, key=lambda s: abs(s.calls - PLATEAU_CALLS))
        return 100.0 * (after[-1].rss_mb - first.rss_mb) / first.rss_mb

    @property
    def passed(self) -> bool:
        growth, returned = self.growth_pct, self.returned_pct
        return (
            self.result.failed_pct < MAX_FAILED_PCT
            and (returned is None or returned > 100.0 - MAX_RTP_LOSS_PCT)
            and self.peak_mb < GOAL_MB
            and growth is not None
            and abs(growth) <= GOAL_GROWTH_PCT
        )


def run_calls(server: ServerProcess, settings: Settings, workdir: Path) -> MemoryRun | None:
    """The steady call run, sampled; None if the callee could not register."""
    parties = register_callee(server, workdir)
    if parties is None:
        return None
    calls, rate, every = settings.memory_calls, settings.memory_rate, settings.memory_every
    timeout = calls / rate * 1.5 + 30
    started = time.monotonic()

    def sample(done: int, note: str = "") -> Sample:
        rss_mb, peak_mb = memory_of(server.pid)
        at_s = time.monotonic() - started
        return Sample(done, at_s, rss_mb, peak_mb, server.cpu_seconds(), note)

    samples = [sample(0, "registered, before the calls")]
    counter: PacketCounter | None = None
    if settings.memory_rtp:
        uac_media, _ = free_udp_range(RTP_RETURN_OFFSET + 2)
        counter = PacketCounter(uac_media + RTP_RETURN_OFFSET, settings.sipp_cpu)
        uas, uac = start_relayed(server, parties, uac_media, timeout, settings, workdir)
    else:
        uas = start_callee(
            "uas", (), calls, parties.uas_port, timeout, settings, workdir, "uas-memory"
        )
        uac = start_uac(server, parties, rate, calls, timeout, settings, workdir, "uac-memory")
    # A steady rate is the point: a test run elsewhere on the machine must not make the
    # calls late (SIP retransmissions and failed calls hold memory of their own).
    for pid in (server.pid, uas.process.pid, uac.process.pid):
        prioritise(threads_of(pid))
    stat_path = workdir / "uac-memory.stat.csv"
    deadline = started + uac.deadline_s
    threshold = every
    try:
        while uac.process.poll() is None and time.monotonic() < deadline:
            time.sleep(POLL_S)
            done = completed_calls(stat_path, calls)
            if done >= threshold:
                samples.append(sample(done))
                log(f"  {done} calls: RSS {samples[-1].rss_mb:.0f} MB")
                threshold = (done // every + 1) * every
    finally:
        result = uac.finish()
        uas.finish(timeout=2)
        if counter is not None:
            counter.close()
    done = result.successful + result.failed
    if samples[-1].calls != done:
        samples.append(sample(done))
    log(f"  {result.successful} ok, {result.failed} failed, {result.rate:.0f}/s")
    time.sleep(settings.memory_settle)
    samples.append(sample(done, f"{settings.memory_settle:.0f} s after the last call"))
    if counter is None:
        return MemoryRun(samples, result)
    sent = result.successful * round(settings.memory_rtp * PACKETS_PER_S)
    log(f"  RTP: {counter.packets} of {sent} packets came back")
    return MemoryRun(samples, result, sent, counter.packets)


def start_relayed(
    server: ServerProcess,
    parties: CallParties,
    uac_media: int,
    timeout: float,
    settings: Settings,
    workdir: Path,
) -> tuple[SippProcess, SippProcess]:
    """The callee echoing RTP and the callers sending brief.pcap (--memory-rtp seconds)."""
    calls, rate = settings.memory_calls, settings.memory_rate
    write_rtp_pcap(workdir / "brief.pcap", 440, settings.memory_rtp, PCMA)
    uas = start_echo(parties, calls, timeout, settings, workdir, "uas-memory")
    length_ms = round(1000 * (settings.memory_rtp + RTP_TAIL_S))
    # Calls at once: each lasts its RTP and tail, and a late second adds its own.
    at_once = max(100, rate * (math.ceil(length_ms / 1000) + 4))
    uac = start_callers(
        "uac_rtp_brief", server, parties, settings, workdir, rate=rate, at_once=at_once,
        calls=calls, timeout=timeout, name="uac-memory",
        extra=(*media_from(uac_media), "-d", str(length_ms)),
    )  # fmt: skip
    return uas, uac


def table(samples: list[Sample]) -> str:
    """The samples, with the server's CPU share since the sample before."""
    lines = ["     calls   time s   RSS MB  peak MB  CPU %", "  " + "-" * 45]
    previous = samples[0]
    for s in samples:
        elapsed = s.at_s - previous.at_s
        cpu = f"{100 * (s.cpu_s - previous.cpu_s) / elapsed:6.0f}" if elapsed > 0 else " " * 6
        note = f"  ({s.note})" if s.note else ""
        lines.append(f"  {s.calls:8d} {s.at_s:8.0f} {s.rss_mb:8.1f} {s.peak_mb:8.1f} {cpu}{note}")
        previous = s
    return "\n".join(lines)


def bench_memory(settings: Settings) -> bool:
    """RSS of one ipbx under --memory-calls calls at --memory-rate per second."""
    workdir = settings.out / "memory"
    try:
        # RTP ports for 1000 calls at once, as in the calls part: a late second does
        # not run the pool dry.
        server = start_ipbx(
            workdir / "server",
            extension_range(2),
            cpu=settings.server_cpu,
            rtp_ports=4000,
            ready_timeout=30,
        )
    except (ServerNotReady, OSError) as error:
        reason = str(error).splitlines()[0]
        log(f"ipbx: not started: {reason}")
        emit({"figure": FIGURE, "server": "ipbx", "value": None, "error": reason})
        return False
    media = f", {settings.memory_rtp:g} s of RTP each" if settings.memory_rtp else ""
    log(f"ipbx: pid {server.pid}, {settings.memory_calls} calls at {settings.memory_rate}/s{media}")
    try:
        run = run_calls(server, settings, workdir / "calls")
    finally:
        code = server.stop()
        log(f"ipbx: stopped (exit {code}); log {server.log_path}")
    if run is None:
        emit({"figure": FIGURE, "server": "ipbx", "value": None, "error": "callee not registered"})
        return False
    log(table(run.samples))
    growth, last = run.growth_pct, run.loaded[-1]
    growth_text = "n/a" if growth is None else f"{growth:+.1f} %"
    log(f"ipbx: peak RSS {run.peak_mb:.0f} MB, {PLATEAU_CALLS} -> {last.calls} calls "
        f"{growth_text}, {run.result.failed_pct:.2f} % calls failed (goal < {GOAL_MB:.0f} MB, "
        f"±{GOAL_GROWTH_PCT:.0f} %): {'pass' if run.passed else 'fail'}")  # fmt: skip
    emit(
        {
            "figure": FIGURE,
            "server": "ipbx",
            "value": round(run.peak_mb, 1),
            "growth_pct": None if growth is None else round(growth, 1),
            "at_rate": settings.memory_rate,
            "calls": last.calls,
            "failed_pct": round(run.result.failed_pct, 3),
            "samples": [[s.calls, round(s.rss_mb, 1)] for s in run.samples],
            "settled_mb": round(run.samples[-1].rss_mb, 1),
            "rtp_seconds": settings.memory_rtp,
            "rtp_returned_pct": None if run.returned_pct is None else round(run.returned_pct, 3),
            "hwm_mb": round(run.samples[-1].peak_mb, 1),
            "goal": f"< {GOAL_MB:.0f} MB, flat ±{GOAL_GROWTH_PCT:.0f} % from {PLATEAU_CALLS}",
        }
    )
    return run.passed
