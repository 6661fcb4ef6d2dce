"""The SIP parts: register_per_s and call_setups_per_s (with cpu_s_per_call), each the
best step of a rate ramp of SIPp runs against a server; the call helpers the other parts
reuse (a registered SIPp callee, a SIPp caller at a rate)."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.parts.session import Settings, emit, log
from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import ServerProcess
from tests.support.server import Extension, extension_range
from tests.support.sipp import (
    SippProcess,
    SippResult,
    register_contact,
    run_sipp,
    start_sipp,
    write_users_csv,
)

MAX_FAILED_PCT = 1.0
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
    OPTIONS count as calls of the UAS: leave room for one a second however long the run
    (the memory part's runs take minutes), and stop the UAS by PID once the caller is
    done.
    """
    uas = start_sipp(
        scenario,
        None,
        *args,
        "-default_behaviors",
        "all,-abortunexp",
        calls=calls + 10 + math.ceil(timeout),
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
    return start_callers(
        "uac_auth", server, parties, settings, workdir, rate=rate, at_once=max(100, rate * 4),
        calls=calls, timeout=timeout, name=name,
    )  # fmt: skip


def start_callers(
    scenario: str,
    server: ServerProcess,
    parties: CallParties,
    settings: Settings,
    workdir: Path,
    *,
    rate: int,
    at_once: int,
    calls: int,
    timeout: float,
    name: str,
    extra: Sequence[str] = (),
) -> SippProcess:
    """SIPp calling the callee through the server as the caller (uac_auth.xml and those
    built on it): `rate` calls a second, at most `at_once` up; `extra` arguments (media,
    call length) besides."""
    return start_sipp(
        scenario,
        f"{LOOPBACK}:{server.port}",
        "-s",
        parties.callee.number,
        "-inf",
        str(parties.caller_csv),
        *extra,
        "-r",
        str(rate),
        "-l",
        str(at_once),
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
