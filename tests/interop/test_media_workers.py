"""Media workers with real phones: SIPp calls extension to extension through an ipbx with
`media.workers: 2` and a media time-out of 2 s. The callee is one SIPp UAS registered as
1001 that echoes the RTP it gets; the callers play G.711 and count what comes back, so
every packet counted crossed ipbx both ways.

Two calls that talk for twice the media time-out are carried one by each worker
(/metrics), are not cut by the time-out (the workers' meter readings reach the server)
and end when the callers hang up. Two more calls are up when both workers are killed
(SIGKILL): ipbx sends BYE to both phones of each, their records say `media_failed`, the
server still answers OPTIONS, a call placed at once is answered and carries RTP, and the
workers come back. The default, `auto`, is run as well: a worker a core less one, and a
call carried by one."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from bench.parts.rtp import RTP_RETURN_OFFSET, PacketCounter
from tests.api.test_metrics import samples
from tests.interop.test_conference import admin_api
from tests.interop.test_sipp import registered_callee
from tests.support.ports import LOOPBACK, free_port, free_udp_range
from tests.support.processes import options_probe
from tests.support.server import IpbxServer, extension_range, start_configured_ipbx
from tests.support.sipp import SippProcess, start_sipp, write_users_csv
from tests.support.trunks import eventually

SCENARIOS = Path(__file__).parent / "scenarios"
CALLER, CALLEE = extension_range(2)
TIMEOUT_S = 2
# The talking calls last twice the media time-out; the call after the loss, a second.
TALK_MS = 2000 * TIMEOUT_S
AFTER_LOSS_MS = 1000
# g711a.pcap sends a packet every 30 ms; a loaded machine may start the echo late.
PACKETS_PER_S = 1000 / 30
SHARE_RETURNED = 0.7
ACTIVE = ("ipbx_active_calls", ())
RECEIVED = ("ipbx_rtp_packets_received_total", ())
# What the server logs when a worker is lost: the worker, then each call it carried.
EXPECTED = re.compile(
    r" ERROR ipbx\.media\.workers: media worker \d+ lost"
    r"| ERROR ipbx\.calls: c\d+: its media worker was lost; hanging up"
)
# Anything else logged at these levels, or by a worker ("media worker: ..."), is wrong.
WRONG = (" WARNING ", " ERROR ", " CRITICAL ", "Traceback", "media worker: ")

Metrics = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def test_bridged_calls_ride_the_media_workers_and_end_cleanly_when_they_are_killed(
    tmp_path: Path,
) -> None:
    api_port = free_port("tcp")

    def edit(config: dict[str, Any]) -> None:
        # The relays are the workers' here, not the kernel's (IPBX_TEST_MEDIA_RELAY).
        config["media"].update(workers=2, timeout_seconds=TIMEOUT_S, relay="userspace")
        config["api"] = {"listen": f"{LOOPBACK}:{api_port}"}

    server = start_configured_ipbx(tmp_path / "ipbx", edit, extensions=[CALLER, CALLEE])
    try:
        api = admin_api(server.config_path, api_port)
        with registered_callee(server, tmp_path, "uas_rtp", 5, "-rtp_echo") as callee:
            with callers(server, tmp_path, "uac_rtp_hangs_up", 2, "-d", str(TALK_MS)) as (
                talking,
                returned,
            ):
                assert bridges(carried(api, 2)) == [1, 1]  # one call on each worker
                talked = talking.finish()
            assert talked.successful == 2, talked.errors()  # a BYE from ipbx would fail them
            assert returned.packets >= 2 * SHARE_RETURNED * PACKETS_PER_S * TALK_MS / 1000
            assert len(returned.sources) == 2  # each call's own port on ipbx

            with callers(server, tmp_path, "uac_rtp_until_bye", 2) as (cut, _):
                before = carried(api, 2)[RECEIVED]
                # Killed once a meter reading of both calls' RTP has reached the server.
                eventually(lambda: scrape(api)[RECEIVED] >= before + 40, 10, "RTP in workers")
                workers = media_workers(server)
                assert len(workers) == 2
                for pid in workers:
                    os.kill(pid, signal.SIGKILL)
                killed = time.time()
                assert options_probe(server.port, timeout=2)
                with callers(server, tmp_path, "uac_rtp_hangs_up", 1, "-d", str(AFTER_LOSS_MS)) as (
                    new,
                    new_returned,
                ):
                    placed = new.finish()
                ended = cut.finish()
            assert ended.successful == 2, ended.errors()  # both callers got ipbx's BYE
            assert placed.successful == 1, placed.errors()
            assert new_returned.packets >= SHARE_RETURNED * PACKETS_PER_S * AFTER_LOSS_MS / 1000
            # Every callee got its BYE: relayed from the callers, or ipbx's own.
            answered = callee.finish(timeout=10)
            assert answered.successful == 5, answered.errors()
        eventually(lambda: len(media_workers(server)) == 2, 10, "two media workers again")
        replaced = media_workers(server)
        assert not set(replaced) & set(workers)

        records = sorted(finished_calls(api, 5), key=lambda r: r["started"])
        reasons = [r["end_reason"] for r in records]
        assert reasons == [None, None, "media_failed", "media_failed", None]
        assert all(r["duration"] >= TALK_MS / 1000 for r in records[:2])
        # Each leg's count is complete: the worker hands it back as the call ends. A leg
        # received at least what came back to its caller (less the meter's probation).
        legs_least = sum(min(leg["packets_received"] for leg in r["legs"]) for r in records[:2])
        assert legs_least >= returned.packets - 2 * 2
        for record in records[2:4]:
            assert record["ended"] - killed < 2
            # The workers' last meter readings are in the records.
            assert all(leg["packets_received"] > 0 for leg in record["legs"]), record
        new_call = records[4]
        assert new_call["answered"] - killed < 2
        assert all(leg["packets_received"] > 0 for leg in new_call["legs"]), new_call
    finally:
        code = server.stop()
    assert code == 0, server.log_tail()
    assert not any(Path(f"/proc/{pid}").exists() for pid in replaced)
    log = server.log_path.read_text().splitlines()
    wrong = [line for line in log if any(w in line for w in WRONG) and not EXPECTED.search(line)]
    assert not wrong, "\n".join(wrong)


def test_the_default_auto_runs_a_worker_a_core_less_one_and_a_call_rides_it(
    tmp_path: Path,
) -> None:
    """`media.workers: auto`, the default `make serve` runs with: a worker for each core the
    server may run on, less the one SIP needs (none on one core), and a talking call is
    carried by a worker when there is one. The suite's servers otherwise run with the
    count `make test` sets, so this is where the default itself is run."""
    api_port = free_port("tcp")
    expected = len(os.sched_getaffinity(0)) - 1

    def edit(config: dict[str, Any]) -> None:
        config["media"].update(workers="auto", relay="userspace")
        config["api"] = {"listen": f"{LOOPBACK}:{api_port}"}

    server = start_configured_ipbx(tmp_path / "ipbx", edit, extensions=[CALLER, CALLEE])
    try:
        api = admin_api(server.config_path, api_port)
        eventually(lambda: len(media_workers(server)) == expected, 10, f"{expected} workers")
        with registered_callee(server, tmp_path, "uas_rtp", 1, "-rtp_echo") as callee:
            with callers(server, tmp_path, "uac_rtp_hangs_up", 1, "-d", str(TALK_MS)) as (
                talking,
                returned,
            ):
                if expected:
                    assert sum(bridges(carried(api, 1))) == 1
                talked = talking.finish()
            assert talked.successful == 1, talked.errors()
            assert returned.packets >= SHARE_RETURNED * PACKETS_PER_S * TALK_MS / 1000
            assert callee.finish(timeout=10).successful == 1
        assert len(bridges(scrape(api))) == expected
    finally:
        code = server.stop()
    assert code == 0, server.log_tail()


@contextmanager
def callers(
    server: IpbxServer, workdir: Path, scenario: str, calls: int, *args: str
) -> Iterator[tuple[SippProcess, PacketCounter]]:
    """SIPp placing `calls` at once from 1000 to 1001, and the counter of the RTP that
    comes back to them (scenarios uac_rtp_*.xml offer [media_port+4])."""
    media, _ = free_udp_range(RTP_RETURN_OFFSET + 2)
    returned = PacketCounter(media + RTP_RETURN_OFFSET, None)
    run = start_sipp(
        SCENARIOS / f"{scenario}.xml", f"{LOOPBACK}:{server.port}",
        "-s", CALLEE.number, "-inf", str(write_users_csv(workdir / "caller.csv", [CALLER])),
        "-mi", LOOPBACK, "-mp", str(media), "-l", str(calls), *args,
        calls=calls, workdir=workdir, timeout=20,
    )  # fmt: skip
    try:
        yield run, returned
    finally:
        run.finish(timeout=0)
        returned.close()


def scrape(api: httpx.Client) -> Metrics:
    return samples(api.get("/metrics").text)


def bridges(metrics: Metrics) -> list[float]:
    """The bridges each media worker carries."""
    return [v for (name, _), v in metrics.items() if name == "ipbx_media_worker_bridges"]


def carried(api: httpx.Client, calls: int) -> Metrics:
    """/metrics once `calls` calls are up and the workers carry them all (one scrape
    says both)."""
    metrics: Metrics = {}

    def all_carried() -> bool:
        metrics.update(scrape(api))
        return metrics[ACTIVE] == calls == sum(bridges(metrics))

    eventually(all_carried, 10, f"{calls} calls carried by the media workers")
    return metrics


def media_workers(server: IpbxServer) -> list[int]:
    """The PIDs of the server's children that are media workers (python -m
    ipbx.media.worker)."""
    pids = []
    for task in Path(f"/proc/{server.pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            try:
                command = Path(f"/proc/{child}/cmdline").read_bytes()
            except OSError:
                continue  # gone meanwhile
            if b"ipbx.media.worker" in command:
                pids.append(int(child))
    return pids


def finished_calls(api: httpx.Client, count: int) -> list[dict[str, Any]]:
    """The call records (GET /calls), once there are `count`."""
    items: list[dict[str, Any]] = []

    def written() -> bool:
        answer = api.get("/calls")
        assert answer.status_code == 200, answer.text
        items[:] = answer.json()["items"]
        return len(items) >= count

    eventually(written, 10, f"{count} call records")
    return items
