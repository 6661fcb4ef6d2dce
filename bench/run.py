"""Benchmark ipbx against Kamailio with SIPp, on loopback, and print one JSON line per figure.

Figures, for each server (`make bench` runs this file):
  register_per_s      authenticated registrations per second (REGISTER, 401, REGISTER,
                      200 = one) for --users extensions, at the highest step of the rate
                      ramp that kept failures under 1 %;
  call_setups_per_s   authenticated calls per second, SIPp UAC as 1000 -> server -> SIPp
                      UAS registered as 1001 (INVITE, 407, INVITE, 180, 200, ACK, BYE),
                      chosen the same way;
  cpu_s_per_call      CPU seconds (user + system, server process tree, /proc/PID/stat)
                      per completed call at that step.
then, where both servers have a figure, {"figure": ..., "ratio_ipbx_to_kamailio": x}.

The server runs pinned to one core and every SIPp to another (taskset), so SIPp and the
server do not compete. Every step is bounded by a call count and a SIPp -timeout. Progress
goes to stderr; logs, configs and SIPp statistics stay in --out.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench.harness import (  # noqa: E402
    LOOPBACK,
    ServerNotReady,
    ServerProcess,
    SippResult,
    extension_range,
    free_port,
    register_contact,
    run_sipp,
    start_ipbx,
    start_kamailio,
    start_sipp,
    write_users_csv,
)

FIGURES = ("register_per_s", "call_setups_per_s", "cpu_s_per_call")
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


@dataclass(frozen=True)
class Settings:
    users: int
    register_rates: list[int]
    call_rates: list[int]
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
        # Kamailio's parallel workers may deliver the ACK after the BYE (UDP keeps no
        # order): the UAS must not abort such a finished call (and BYE it) for that.
        # ipbx's qualify OPTIONS count as calls of the UAS: leave room for a few, and
        # stop the UAS by PID once the caller is done.
        uas = start_sipp(
            "uas",
            None,
            "-default_behaviors",
            "all,-abortunexp",
            calls=calls + 10,
            workdir=workdir,
            local_port=uas_port,
            timeout=timeout + 5,
            cpu=settings.sipp_cpu,
            name=f"uas-{rate}",
        )
        # Let the UAS bind its port before the first INVITE reaches it.
        time.sleep(0.3)
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


def bench_server(name: str, settings: Settings) -> dict[str, float]:
    """Run every figure against one server; print its lines, return its values."""
    workdir = settings.out / name
    values: dict[str, float] = {}
    try:
        server = start_server(name, settings, workdir / "server")
    except (ServerNotReady, OSError) as error:
        reason = str(error).splitlines()[0]
        log(f"{name}: not started: {reason}")
        for figure in FIGURES:
            emit({"figure": figure, "server": name, "value": None, "error": reason})
        return values
    log(f"{name}: pid {server.pid}, udp:{LOOPBACK}:{server.port}")
    try:
        log(f"{name}: register ramp, {settings.users} users")
        best = bench_register(server, settings, workdir / "register")
        values.update(report(name, "register_per_s", best))
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
    parser.add_argument("--servers", default="ipbx,kamailio", help="comma-separated")
    parser.add_argument("--users", type=int, default=2000, help="registration population")
    parser.add_argument("--register-rates", default="250,500,1000,2000,4000,8000,16000")
    parser.add_argument("--call-rates", default="25,50,100,200,400,800,1600,3200")
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
        step_seconds=args.step_seconds,
        out=out.resolve(),
        server_cpu=1 if pinned else None,
        sipp_cpu=0 if pinned else None,
    )
    return [s for s in args.servers.split(",") if s], settings


def main(argv: Sequence[str] | None = None) -> int:
    servers, settings = parse_args(argv)
    unknown = set(servers) - {"ipbx", "kamailio"}
    if unknown:
        log(f"unknown servers: {', '.join(sorted(unknown))}")
        return 2
    settings.out.mkdir(parents=True, exist_ok=True)
    log(f"output in {settings.out}")
    results = {name: bench_server(name, settings) for name in servers}
    ipbx, kamailio = results.get("ipbx", {}), results.get("kamailio", {})
    for figure in FIGURES:
        if ipbx.get(figure) and kamailio.get(figure):
            ratio = ipbx[figure] / kamailio[figure]
            emit({"figure": figure, "ratio_ipbx_to_kamailio": round(ratio, 3)})
    return 0 if all(results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
