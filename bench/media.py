"""The media figures of `make bench`: RTP relayed and transcoded on one core.

  relay_calls          concurrent G.711 calls (20 ms, both ways: 100 packets/s a call) a
                       relay carries on its core with loss < 0.1 % and added jitter p99
                       < 5 ms; for ipbx (SIP calls, RTP anchored by its B2BUA) and for
                       rtpengine (userspace, one worker, calls made by ng offer/answer);
  relay_us_per_packet  relay CPU per relayed packet at the largest load both carried;
  transcode_calls      concurrent Opus <-> PCMU calls through ipbx within the same limits
                       (the caller offers only opus/48000/2, the callee answers only PCMU,
                       so ipbx transcodes both directions), with its CPU per call.

Each step runs bench/rtpload.py pinned to the generator's core against a server pinned
to the other, for rising call counts, until a step fails; the last passing step is the
figure and `limited_by` says what stopped the ramp. A step disturbed by other processes
on either core (another test run on the machine) is run again, a bounded number of times.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.processes import REPO_ROOT, core_ticks

MAX_LOSS_PCT = 0.1
MAX_JITTER_P99_MS = 5.0
# Beyond this share of its core the generator, not the server, sets the pace.
MAX_GENERATOR_CPU_PCT = 85.0
# Other processes using more than this share of either core spoil a step: run it again.
MAX_OTHER_PCT = 10.0
RETRIES = 3
# Before a step, wait (this long at most) for both cores to be this idle.
QUIET_PCT = 10.0
QUIET_WAIT_S = 60.0
RTPLOAD = REPO_ROOT / "bench" / "rtpload.py"
DISTURBED = "other processes on the cores"


@dataclass(frozen=True)
class MediaStep:
    """One run of rtpload.py: its JSON record."""

    calls: int
    record: dict[str, object]

    def number(self, key: str) -> float:
        value = self.record.get(key)
        return float(value) if isinstance(value, int | float) else float("nan")

    @property
    def disturbed(self) -> bool:
        return (
            self.number("generator_core_other_pct") > MAX_OTHER_PCT
            or self.number("server_core_other_pct") > MAX_OTHER_PCT
        )

    @property
    def failure(self) -> str | None:
        """Why the step does not count, or None; the generator's own limits first.

        Other processes on the cores can only make a relay look worse, so a step that
        stays within the limits counts even when disturbed; one that does not is blamed
        on them (and run again) when they took more than MAX_OTHER_PCT of a core.
        """
        record = self.record
        if "error" in record:
            return f"load tool failed: {record['error']}"
        if self.number("setup_failed") > 0:
            return "call setup failed"
        if self.number("generator_drops") > 0 or self.number("generator_send_errors") > 0:
            return "load generator drops"
        if self.number("generator_cpu_pct") > MAX_GENERATOR_CPU_PCT:
            return "load generator CPU"
        if self.number("generator_late_p99_ms") > MAX_JITTER_P99_MS:
            # Its packets went out in bursts larger than the jitter allowed: the queue a
            # burst builds in the relay is not the relay's jitter. Other processes on its
            # core make it late as surely as its own load does.
            return DISTURBED if self.disturbed else "load generator late"
        if not self.number("loss_pct") < MAX_LOSS_PCT:
            return DISTURBED if self.disturbed else "loss"
        if not self.number("jitter_p99_ms") < MAX_JITTER_P99_MS:
            return DISTURBED if self.disturbed else "jitter"
        return None


@dataclass(frozen=True)
class MediaOutcome:
    steps: list[MediaStep]
    best: MediaStep | None
    limited_by: str


def run_load(
    target: list[str],
    calls: int,
    seconds: float,
    mode: str,
    cpu: int | None,
    workdir: Path,
    tool: Path = RTPLOAD,
    callee_cpu: int | None = None,
) -> MediaStep:
    """One run of bench/rtpload.py (or `tool`, which takes the same --calls, --seconds
    and --mode and prints the same record) on core `cpu`, its callees' side on
    `callee_cpu` if given (rtpload.py only), bounded by a subprocess deadline on top of
    its own."""
    command = [sys.executable, str(tool), *target, "--calls", str(calls)]
    command += ["--seconds", str(seconds), "--mode", mode]
    if callee_cpu is not None:
        command += ["--callee-core", str(callee_cpu)]
    if cpu is not None:
        command = ["taskset", "-c", str(cpu), *command]
    workdir.mkdir(parents=True, exist_ok=True)
    name = f"{mode}-{calls}"
    with (workdir / f"{name}.stderr.log").open("ab") as errors:
        try:
            done = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=errors,
                timeout=seconds + 120 + calls * 0.05,
                check=False,
            )
        except subprocess.TimeoutExpired:
            return MediaStep(calls, {"error": "timed out"})
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        return MediaStep(calls, {"error": f"exit {done.returncode}, see {name}.stderr.log"})
    record = json.loads(lines[-1])
    (workdir / f"{name}.json").write_text(json.dumps(record) + "\n")
    return MediaStep(calls, record)


def wait_quiet(cores: Sequence[int | None], log: Callable[[str], None]) -> None:
    """Wait until processes use under QUIET_PCT of each core over a second (the relay
    idles between steps), or QUIET_WAIT_S has passed."""
    deadline = time.monotonic() + QUIET_WAIT_S
    while True:
        before = [core_ticks(core) for core in cores]
        time.sleep(1.0)
        busiest = 0.0
        for core, start in zip(cores, before, strict=True):
            delta = [end - begin for begin, end in zip(start, core_ticks(core), strict=True)]
            busiest = max(busiest, 100 * sum(delta[0:3]) / max(1, sum(delta)))
        if busiest < QUIET_PCT:
            return
        if time.monotonic() > deadline:
            log(f"  cores still {busiest:.0f} % busy after {QUIET_WAIT_S:.0f} s; running anyway")
            return


def ramp(
    steps: Sequence[int],
    run_step: Callable[[int], MediaStep],
    log: Callable[[str], None],
    cores: Sequence[int | None] = (),
) -> MediaOutcome:
    """Rising call counts until one fails (after retries when disturbed)."""
    done: list[MediaStep] = []
    best: MediaStep | None = None
    for calls in steps:
        for _attempt in range(1 + RETRIES):
            if cores:
                wait_quiet(cores, log)
            step = run_step(calls)
            log("  " + describe(step))
            if step.failure != DISTURBED:
                break
        done.append(step)
        failure = step.failure
        if failure is not None:
            return MediaOutcome(done, best, failure)
        best = step
    return MediaOutcome(done, best, "end of ramp")


def describe(step: MediaStep) -> str:
    r = step.record
    if "error" in r:
        return f"{step.calls} calls: {r['error']}"
    return (
        f"{step.calls} calls: loss {r.get('loss_pct')} %, jitter p99 {r.get('jitter_p99_ms')} ms "
        f"(max {r.get('jitter_max_ms')}), server CPU {r.get('server_cpu_pct')} % "
        f"({r.get('server_us_per_packet')} us/packet, {r.get('packets_per_s')} packets/s); "
        f"generator CPU {r.get('generator_cpu_pct')} %, late p99 "
        f"{r.get('generator_late_p99_ms')} ms; other load {r.get('generator_core_other_pct')} / "
        f"{r.get('server_core_other_pct')} %: {step.failure or 'pass'}"
    )


def figure(name: str, server: str, outcome: MediaOutcome, **extra: object) -> dict[str, object]:
    """The JSON line of a ramp's figure."""
    best = outcome.best
    if best is None:
        return {"figure": name, "server": server, "value": None, "limited_by": outcome.limited_by}
    r = best.record
    keys = (
        "loss_pct",
        "jitter_p99_ms",
        "jitter_max_ms",
        "server_cpu_pct",
        "server_us_per_packet",
        "packets_per_s",
        "generator_cpu_pct",
        "generator_core_other_pct",
        "server_core_other_pct",
    )
    return {
        "figure": name,
        "server": server,
        "value": best.calls,
        **{key: r.get(key) for key in keys},
        "limited_by": outcome.limited_by,
        **extra,
    }


def common_load(outcomes: dict[str, MediaOutcome]) -> int | None:
    """The largest call count every server carried within the limits."""
    passing = [
        {step.calls for step in outcome.steps if step.failure is None}
        for outcome in outcomes.values()
    ]
    shared = set.intersection(*passing) if passing else set()
    return max(shared) if shared else None


def step_at(outcome: MediaOutcome, calls: int) -> MediaStep:
    return next(step for step in outcome.steps if step.calls == calls and step.failure is None)
