"""The queues part: callers waiting in a call queue, and agents answering them.

One ipbx (its API on, the server pinned to one core) has one queue, `bench`, of
--queue-agents agents (extensions 1001...; strategy leastrecent, no wrap-up), with music
on hold (a 3-minute tone in DATA_DIR/moh), announce_position_seconds 30 and a periodic
announcement (a file): whatever the queue's waiting room plays of them is measured. The
agents' phones are one SIPp UAS (uas_queue_agent.xml) that every agent extension
registers its Contact at; a phone rings 0.2 to 1.5 s before it answers and hangs up
after 0.5 to 3 s of talk (SIPp uniform pauses). --queue-callers SIPp callers
(uac_queue_wait.xml, extensions 2000...) dial the queue at 50 per second, --queue-step
at a time, and stay until the agent hangs up, sending RTP all along as a phone does;
the music on hold they are sent lands on ports this bench counts (PacketCounter). The
server and the agents' SIPp run at nice -10 (as root), so that test runs elsewhere on
the machine do not make them late.

  queue_cpu_pct_per_waiting_caller  every agent is paused (PUT /queues/bench/agents/N),
                      then callers join in steps; at each, once every caller waits, the
                      server's CPU (user + system, /proc) over --queue-seconds as a
                      percentage of one core (from SETTLE_S after the last joined),
                      divided by the callers waiting, and the music packets each
                      caller got per second. A step is held when
                      every caller waits, the music reaches each at >= 95 % of its 50
                      packets/s and the core is under 90 %; the figure is the last step
                      held before the first that is not, with the marginal cost of one
                      more caller between the held steps. Callers keep joining after a
                      step not held, until one is missing. The goal: under 0.1 % of a
                      core with all --queue-callers waiting (1,000 per core). The share
                      of the core before any caller joined is given apart.
  queue_free_to_ring_ms  then the agents are unpaused and serve every caller. For each
                      agent, the time from its phone's BYE (its call ended: with no
                      wrap-up the agent is free) to the next INVITE reaching that phone,
                      both read from the agent SIPp's own message trace (-trace_msg, one
                      clock, to the microsecond): what the agent sees, BYE transit and
                      the server's handling and dispatch included. Every call an agent
                      ends while callers still wait gives one sample (callers - agents
                      in all); a BYE after which the agent gets no call (the line was
                      empty) gives none. p50, p99 and max.
  queue_callers_lost  the queue log ipbx keeps (its store): every caller that entered was
                      connected exactly once, abandoned or sent out (EXIT*), and none was
                      connected twice; SIPp's own count of completed calls beside it.

With --queue-relay kernel (media.relay: kernel, root only) the kernel drops the voice
the waiting callers send (media/kernel.py), and ipbx reads none of it.

Every wait is bounded by a deadline and every SIPp by -m and -timeout. Run it alone:
`.venv/bin/python bench/run.py --parts queues --servers ipbx --out DIR` (small:
`--queue-callers 40 --queue-agents 5 --queue-step 20 --queue-seconds 3`).
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx

from bench.api import percentile
from bench.parts.rtp import RTP_RETURN_OFFSET, PacketCounter, prioritise, threads_of
from bench.parts.session import Settings, emit, log
from ipbx.store import Store
from tests.support.mailbox import write_message_wav
from tests.support.ports import LOOPBACK, free_port, free_udp_range
from tests.support.processes import ServerNotReady
from tests.support.server import (
    Extension,
    IpbxServer,
    extension_range,
    make_token,
    start_configured_ipbx,
)
from tests.support.sipp import (
    SippProcess,
    register_contact,
    start_sipp,
    write_rtp_pcap,
    write_users_csv,
)

QUEUE, NUMBER = "bench", "600"
FIGURES = ("queue_cpu_pct_per_waiting_caller", "queue_free_to_ring_ms", "queue_callers_lost")
GOAL_PCT_PER_CALLER = 0.1
CALL_RATE = 50  # callers dialling in per second
# From the last caller of a step waiting to the CPU reading: the work of joining (the
# answer, the music file read for the caller) is not the cost of waiting.
SETTLE_S = 3.0
IDLE_SECONDS = 10.0
# A caller's longest stay: joining, the CPU interval, then its turn (a phone rings 1.5 s
# and talks 3 s at most) among callers / agents others, twice over for safety.
LONGEST_CALL_S = 4.5
EXITS = ("EXITWITHTIMEOUT", "EXITEMPTY", "EXITWITHKEY")
POLL_S = 0.2
API_DEADLINE_S = 60.0
SATURATED = 0.9  # of one core: a step above it is not held
MUSIC_PPS = 50.0  # 20 ms packets
# The music on hold file: as long as a song, so that a caller's music seldom starts over
# within a step (ipbx reads the file again each time it does).
MUSIC_SECONDS = 180.0
MUSIC_HELD = 0.95  # a step whose callers hear less of their music is not held


# --- pure helpers: the trace of the agents' phones, the queue log's accounts ----------------


@dataclass(frozen=True)
class TracedMessage:
    """A SIP message in SIPp's -trace_msg file: when, which way, its request method
    (empty for a response), Call-ID and Request-URI user (requests)."""

    at: float
    sent: bool
    method: str
    call_id: str
    user: str


_REQUEST_LINE = re.compile(r"^([A-Z]+) sips?:(?:([^@;>\s]+)@)?")
_TRACE_BLOCK = re.compile(r"^-{20,} ", re.MULTILINE)


def parse_trace(text: str) -> list[TracedMessage]:
    """The messages of a SIPp -trace_msg file. Each starts with a line of dashes and
    SIPp's clock ("2026-12-04 20:33:40.412080", local time: only differences are used),
    then "UDP message sent (...)" or "UDP message received [...]", a blank line and the
    message."""
    messages: list[TracedMessage] = []
    for block in _TRACE_BLOCK.split(text)[1:]:
        lines = block.splitlines()
        if len(lines) < 4:
            continue
        try:
            at = datetime.strptime(lines[0].strip(), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        except ValueError:
            continue
        request = _REQUEST_LINE.match(lines[3].strip())
        call_id = next(
            (line.split(":", 1)[1].strip() for line in lines[4:]
             if line.lower().startswith(("call-id:", "i:"))),
            "",
        )  # fmt: skip
        method = request.group(1) if request else ""
        user = (request.group(2) or "") if request else ""
        messages.append(TracedMessage(at, " message sent" in lines[1], method, call_id, user))
    return messages


def free_to_ring_ms(messages: Iterable[TracedMessage]) -> list[float]:
    """For each BYE an agent's phone sent, the milliseconds until the next INVITE
    reached the same agent (the Request-URI user of the INVITEs of its calls); none
    when no INVITE followed. Retransmissions count at their first copy."""
    first: dict[tuple[str, bool, str], TracedMessage] = {}
    for message in sorted(messages, key=lambda m: m.at):
        if message.method in ("INVITE", "BYE"):
            first.setdefault((message.method, message.sent, message.call_id), message)
    agent_of = {m.call_id: m.user for (method, sent, _), m in first.items()
                if method == "INVITE" and not sent}  # fmt: skip
    invites: defaultdict[str, list[float]] = defaultdict(list)
    for call_id, user in agent_of.items():
        invites[user].append(first[("INVITE", False, call_id)].at)
    latencies: list[float] = []
    for (method, sent, call_id), bye in first.items():
        agent = agent_of.get(call_id)
        if method != "BYE" or not sent or agent is None:
            continue
        after = [at for at in invites[agent] if at > bye.at]
        if after:
            latencies.append((min(after) - bye.at) * 1000)
    return sorted(latencies)


@dataclass(frozen=True)
class Accounts:
    """What became of the callers, from the queue log's (call id, event) rows."""

    entered: int
    connected: int
    abandoned: int
    exited: int
    connected_twice: int

    @property
    def lost(self) -> int:
        """Callers that entered and are in none of the other counts."""
        return self.entered - self.connected - self.abandoned - self.exited

    @property
    def balanced(self) -> bool:
        return self.lost == 0 and self.connected_twice == 0


def account(rows: Iterable[tuple[str, str]]) -> Accounts:
    """Counts the callers of (call id, event) rows: entered (ENTERQUEUE), connected
    once (CONNECT, callers with two counted apart), abandoned (ABANDON), sent out of the
    queue (EXITWITHTIMEOUT, EXITEMPTY, EXITWITHKEY)."""
    events: defaultdict[str, Counter[str]] = defaultdict(Counter)
    for call_id, event in rows:
        events[call_id][event] += 1
    entered = [counts for counts in events.values() if counts["ENTERQUEUE"]]
    return Accounts(
        entered=len(entered),
        connected=sum(1 for counts in entered if counts["CONNECT"]),
        abandoned=sum(1 for counts in entered if counts["ABANDON"] and not counts["CONNECT"]),
        exited=sum(1 for counts in entered if any(counts[e] for e in EXITS)),
        connected_twice=sum(1 for counts in events.values() if counts["CONNECT"] > 1),
    )


# --- the run --------------------------------------------------------------------------------


@dataclass
class QueuePbx:
    """The server, its API and the agents' phones."""

    server: IpbxServer
    api: httpx.Client
    agents: list[Extension]
    callers: list[Extension]

    def set_agents(self, action: str) -> None:
        """Pause or unpause every agent; a server slow to answer (a saturated core) is
        asked again until API_DEADLINE_S have passed."""
        body: dict[str, Any] = {"action": action}
        if action == "pause":
            body["reason"] = "bench"
        deadline = time.monotonic() + API_DEADLINE_S
        for agent in self.agents:
            while True:
                try:
                    response = self.api.put(f"/queues/{QUEUE}/agents/{agent.number}", json=body)
                    response.raise_for_status()
                    break
                except httpx.TimeoutException:
                    if time.monotonic() > deadline:
                        raise

    def waiting(self) -> int | None:
        """Callers waiting in the queue (the live picture); None when the server did
        not answer in time."""
        try:
            response = self.api.get(f"/queues/{QUEUE}")
        except httpx.TimeoutException:
            return None
        response.raise_for_status()
        return len(response.json()["waiting"])

    def wait_for_waiting(self, count: int, timeout: float) -> int:
        """Callers waiting once `count` wait or at `timeout` (0 if never read)."""
        deadline = time.monotonic() + timeout
        waiting = 0
        while time.monotonic() < deadline:
            waiting = self.waiting() or waiting
            if waiting >= count:
                break
            time.sleep(POLL_S)
        return waiting

    def measure(self, seconds: float, music: Sequence[PacketCounter]) -> tuple[float, float]:
        """The server's CPU over `seconds` from now, as a fraction of one core, and the
        music on hold packets per second that reached the callers."""
        cpu, packets = self.server.cpu_seconds(), sum(c.packets for c in music)
        started = time.monotonic()
        time.sleep(seconds)
        elapsed = time.monotonic() - started
        share = (self.server.cpu_seconds() - cpu) / elapsed
        return share, (sum(c.packets for c in music) - packets) / elapsed

    def queue_log(self, timeout: float) -> list[tuple[str, str]]:
        """(call id, event) of the queue's log, once every CONNECT has its COMPLETE*
        (ipbx writes to its store a moment after the events) or at `timeout`."""
        store = Store(f"sqlite:///{self.server.data_dir / 'ipbx.db'}")
        deadline = time.monotonic() + timeout
        try:
            while True:
                rows = [(r.call_id, r.event) for r in store.queue_log_between(None, None, QUEUE)]
                events = Counter(event for _, event in rows)
                completed = events["COMPLETECALLER"] + events["COMPLETEAGENT"]
                if completed >= events["CONNECT"] or time.monotonic() > deadline:
                    return rows
                time.sleep(POLL_S)
        finally:
            store.close()


def configure(settings: Settings, workdir: Path, api_port: int) -> Any:
    """The edit of the server's YAML: API, the queue and its number, a file to announce."""
    workdir.mkdir(parents=True, exist_ok=True)
    announcement = write_message_wav(workdir / "announcement.wav", 2.0, 600)
    agents = extension_range(settings.queue_agents, first=1001)

    def edit(config: dict[str, Any]) -> None:
        config["api"] = {"listen": f"{LOOPBACK}:{api_port}"}
        config["queues"] = [
            {
                "name": QUEUE,
                "strategy": "leastrecent",
                "agents": [agent.number for agent in agents],
                "ring_seconds": 15,
                "wrapup_seconds": 0,
                "max_wait_seconds": 3600,
                "max_callers": settings.queue_callers,
                "announce_position_seconds": 30,
                "periodic_announcement": f"file:{announcement}",
            }
        ]
        config["numbers"] = [{"number": NUMBER, "destination": f"queue:{QUEUE}"}]
        config["media"]["relay"] = settings.queue_relay

    return edit


def start_agents(pbx: QueuePbx, settings: Settings, workdir: Path, timeout: float) -> SippProcess:
    """One SIPp UAS for every agent: each extension registers its Contact at its port."""
    port = free_port("udp")
    for agent in pbx.agents:
        registration = register_contact(pbx.server.port, agent, port, workdir / "register")
        if registration.successful != 1:
            raise RuntimeError(f"agent {agent.number} not registered: {registration.errors()}")
    return start_sipp(
        "uas_queue_agent", None, "-trace_msg", "-message_file", str(workdir / "agents.msg"),
        calls=settings.queue_callers * 10, workdir=workdir, local_port=port,
        timeout=timeout, cpu=settings.sipp_cpu, name="agents",
    )  # fmt: skip


def start_callers(
    pbx: QueuePbx, settings: Settings, workdir: Path, callers: Sequence[Extension], timeout: float
) -> tuple[SippProcess, PacketCounter]:
    """`callers` dial the queue at CALL_RATE, each once (queue_wait.pcap is written), and
    the counter of the music on hold they are sent."""
    media, _ = free_udp_range(RTP_RETURN_OFFSET + 2)
    music = PacketCounter(media + RTP_RETURN_OFFSET, settings.sipp_cpu)
    last = callers[-1].number
    users = write_users_csv(workdir / f"callers-{last}.csv", callers)
    calls = len(callers)
    sipp = start_sipp(
        "uac_queue_wait", f"{LOOPBACK}:{pbx.server.port}", "-s", NUMBER, "-inf", str(users),
        "-mi", LOOPBACK, "-mp", str(media), "-r", str(CALL_RATE), "-l", str(calls),
        calls=calls, workdir=workdir, timeout=timeout, cpu=settings.sipp_cpu,
        name=f"callers-{last}",
    )  # fmt: skip
    return sipp, music


@dataclass(frozen=True)
class Step:
    """The server's CPU while `waiting` callers waited (of `placed` that dialled), and
    the music on hold packets each received per second."""

    placed: int
    waiting: int
    share: float  # of one core
    music_pps: float = MUSIC_PPS

    @property
    def pct_per_caller(self) -> float:
        return 100 * self.share / max(1, self.waiting)

    @property
    def held(self) -> bool:
        """Every caller waits and hears its music at its pace, and the core has room."""
        return (
            self.waiting == self.placed
            and self.share <= SATURATED
            and self.music_pps >= MUSIC_HELD * MUSIC_PPS
        )


def step_counts(total: int, step: int) -> list[int]:
    """Callers waiting at each step: step, 2 step, ... and total last."""
    counts = list(range(step, total, step)) if step > 0 else []
    return [*counts, total]


def held_steps(steps: Sequence[Step]) -> list[Step]:
    """The steps before the first the server did not hold."""
    held: list[Step] = []
    for step in steps:
        if not step.held:
            break
        held.append(step)
    return held


def marginal_pct_per_caller(steps: Sequence[Step]) -> float | None:
    """What one more waiting caller costs, in percent of a core: the CPU's growth from
    the first held step to the last over the callers added (the server's own base load
    left out); None with fewer than two held steps."""
    held = held_steps(steps)
    if len(held) < 2 or held[-1].waiting == held[0].waiting:
        return None
    added = held[-1].waiting - held[0].waiting
    return 100 * (held[-1].share - held[0].share) / added


@dataclass(frozen=True)
class QueueRun:
    idle_share: float
    steps: list[Step]
    latencies_ms: list[float]
    accounts: Accounts
    placed: int
    completed: int
    failed: int
    agent_failed: int
    served: bool

    @property
    def held(self) -> Step | None:
        """The last step the server held (all the steps before it too), if any."""
        held = held_steps(self.steps)
        return held[-1] if held else None


def fill_queue(
    pbx: QueuePbx, settings: Settings, workdir: Path, timeout: float
) -> tuple[list[Step], list[tuple[SippProcess, PacketCounter]]]:
    """Callers join in steps; the server's CPU and the music reaching the callers are
    read over --queue-seconds at each. No more join once a caller is missing (the
    server no longer takes callers in): a step that is merely not held (music late, the
    core over 90 %) is noted and the next one joins."""
    steps: list[Step] = []
    callers: list[tuple[SippProcess, PacketCounter]] = []
    placed = 0
    for count in step_counts(settings.queue_callers, settings.queue_step):
        batch = pbx.callers[placed:count]
        callers.append(start_callers(pbx, settings, workdir, batch, timeout))
        placed = count
        waiting = pbx.wait_for_waiting(count, len(batch) / CALL_RATE + 30)
        time.sleep(SETTLE_S)
        share, music = pbx.measure(settings.queue_seconds, [m for _, m in callers])
        step = Step(count, waiting, share, music / max(1, waiting))
        steps.append(step)
        log(f"  {waiting} of {count} callers wait: server {100 * step.share:.1f} % of a core, "
            f"{step.pct_per_caller:.3f} % per caller, music {step.music_pps:.1f} packets/s "
            "each")  # fmt: skip
        if waiting < count:
            log("  callers are missing: no more join")
            break
    return steps, callers


def run_queue(pbx: QueuePbx, settings: Settings, workdir: Path) -> QueueRun:
    total, agents_n = settings.queue_callers, settings.queue_agents
    steps_n = len(step_counts(total, settings.queue_step))
    join_s = steps_n * (settings.queue_step / CALL_RATE + 30 + SETTLE_S + settings.queue_seconds)
    serve_s = total / agents_n * LONGEST_CALL_S * 2 + 30
    timeout = join_s + serve_s
    write_rtp_pcap(workdir / "queue_wait.pcap", 440, timeout)
    agents = start_agents(pbx, settings, workdir, timeout + 30)
    # Test runs elsewhere on the machine must not delay the server or the agents' phones
    # (their trace times the free-to-ring figure): both run at nice -10 (as root).
    for pid in (pbx.server.pid, agents.process.pid):
        prioritise(threads_of(pid))
    callers: list[tuple[SippProcess, PacketCounter]] = []
    serving = False
    try:
        pbx.set_agents("pause")
        log(f"  agents paused; the server idles {IDLE_SECONDS:.0f} s")
        idle, _ = pbx.measure(IDLE_SECONDS, [])
        log(f"  server {100 * idle:.2f} % of a core")
        try:
            steps, callers = fill_queue(pbx, settings, workdir, timeout)
            try:
                pbx.set_agents("unpause")
                serving = True
                log("  agents unpaused; they serve every caller")
            except httpx.TimeoutException:
                log(f"  the API did not answer within {API_DEADLINE_S:.0f} s: the agents "
                    "stay paused and the callers are stopped")  # fmt: skip
        finally:
            # Callers not served (the run failed) are stopped at once.
            results = [caller.finish(None if serving else 0) for caller, _ in callers]
            for _, music in callers:
                music.close()
    finally:
        # The last BYE's 200 is in by now; the UAS waits for more calls until stopped.
        agent_result = agents.finish(timeout=2)
    trace = (workdir / "agents.msg").read_text(errors="replace")
    return QueueRun(
        idle_share=idle,
        steps=steps,
        latencies_ms=free_to_ring_ms(parse_trace(trace)),
        accounts=account(pbx.queue_log(timeout=10)),
        placed=sum(result.requested for result in results),
        completed=sum(result.successful for result in results),
        failed=sum(result.failed for result in results),
        agent_failed=agent_result.failed,
        served=serving,
    )


def report_queue(run: QueueRun, settings: Settings) -> bool:
    held, last = run.held, run.steps[-1]
    first_not_held = next((step.placed for step in run.steps if not step.held), None)
    per_caller = held.pct_per_caller if held is not None else None
    marginal = marginal_pct_per_caller(run.steps)
    emit(
        {
            "figure": FIGURES[0],
            "server": "ipbx",
            "value": None if per_caller is None else round(per_caller, 4),
            "waiting": None if held is None else held.waiting,
            "callers_per_core": round(100 / per_caller) if per_caller else None,
            "marginal_pct_per_caller": None if marginal is None else round(marginal, 4),
            "not_held_from": first_not_held,
            "steps": [
                [s.waiting, round(100 * s.share, 1), round(s.music_pps, 1)] for s in run.steps
            ],
            "seconds": settings.queue_seconds,
            "idle_cpu_pct": round(100 * run.idle_share, 2),
            "relay": settings.queue_relay,
            "goal": f"< {GOAL_PCT_PER_CALLER} % of a core with {settings.queue_callers} waiting",
        }
    )
    if not run.served:
        for figure in FIGURES[1:]:
            error = "the agents could not be unpaused: the API did not answer"
            emit({"figure": figure, "server": "ipbx", "value": None, "error": error})
        return False
    latencies = run.latencies_ms
    emit(
        {
            "figure": FIGURES[1],
            "server": "ipbx",
            "p50": round(percentile(latencies, 50), 2) if latencies else None,
            "p99": round(percentile(latencies, 99), 2) if latencies else None,
            "max": round(max(latencies), 2) if latencies else None,
            "samples": len(latencies),
            "agents": settings.queue_agents,
        }
    )
    accounts = run.accounts
    emit(
        {
            "figure": FIGURES[2],
            "server": "ipbx",
            "value": accounts.lost,
            "entered": accounts.entered,
            "connected": accounts.connected,
            "abandoned": accounts.abandoned,
            "exited": accounts.exited,
            "connected_twice": accounts.connected_twice,
            "callers_placed": run.placed,
            "sipp_callers_completed": run.completed,
            "sipp_callers_failed": run.failed,
            "sipp_agent_calls_failed": run.agent_failed,
        }
    )
    log(f"  free to ring p50 {percentile(latencies, 50):.1f} ms, p99 "
        f"{percentile(latencies, 99):.1f} ms ({len(latencies)}); {accounts}")  # fmt: skip
    cpu_ok = (
        first_not_held is None and last.placed == settings.queue_callers
        and per_caller is not None and per_caller < GOAL_PCT_PER_CALLER
    )  # fmt: skip
    served = accounts.entered == run.placed == run.completed
    return cpu_ok and accounts.balanced and served


def bench_queues(settings: Settings) -> bool:
    """The three figures of one ipbx with one queue; False when a goal is missed."""
    workdir = settings.out / "queues"
    api_port = free_port("tcp")
    agents = extension_range(settings.queue_agents, first=1001)
    callers = extension_range(settings.queue_callers, first=2000)
    music = workdir / "ipbx" / "data" / "moh"
    music.mkdir(parents=True, exist_ok=True)
    write_message_wav(music / "tone.wav", MUSIC_SECONDS, 400)
    try:
        server = start_configured_ipbx(
            workdir / "ipbx", configure(settings, workdir, api_port),
            extensions=[*agents, *callers], cpu=settings.server_cpu,
            rtp_ports=4 * (settings.queue_callers + settings.queue_agents) + 100,
            ready_timeout=30,
        )  # fmt: skip
    except (ServerNotReady, OSError) as error:
        reason = str(error).splitlines()[0]
        log(f"ipbx: not started: {reason}")
        for figure in FIGURES:
            emit({"figure": figure, "server": "ipbx", "value": None, "error": reason})
        return False
    log(f"ipbx: pid {server.pid}, queue {QUEUE}: {settings.queue_callers} callers, "
        f"{settings.queue_agents} agents")  # fmt: skip
    try:
        token = make_token(server.config_path, "admin")
        headers = {"Authorization": f"Bearer {token}"}
        base = f"http://{LOOPBACK}:{api_port}"
        with httpx.Client(base_url=base, headers=headers, timeout=10) as api:
            run = run_queue(QueuePbx(server, api, agents, callers), settings, workdir)
    finally:
        code = server.stop()
        log(f"ipbx: stopped (exit {code}); log {server.log_path}")
    return report_queue(run, settings)
