"""Interop: an outside number reached from forwarding and from click-to-call, with SIPp
as the provider's side of an IP trunk. Extension 1001 forwards every call to a mobile;
1000 (an `ipbx phone`) calls 1001 and the call leaves through the trunk, answered by
SIPp. Click-to-call rings 1000 first, then the mobile through the same trunk."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import stop_process
from tests.support.records import call_records
from tests.support.server import CALLEE, CALLER, IpbxServer, make_token, start_configured_ipbx
from tests.support.sipp import SippProcess, start_sipp
from tests.support.softphone import ipbx_phone

MOBILE = "+12125551234"


def provider(gateway: int, api_port: int | None = None) -> Callable[[dict[str, Any]], None]:
    """One IP trunk to SIPp at `gateway`; E.164 numbers go out through it; 1001 is
    forwarded always to MOBILE."""

    def edit(config: dict[str, Any]) -> None:
        config["country"] = "US"
        config["trunks"] = [
            {"name": "provider", "host": f"{LOOPBACK}:{gateway}",
             "allow_from": [f"{LOOPBACK}:{gateway}"], "options_interval": 0}
        ]  # fmt: skip
        config["outbound_routes"] = [
            {"name": "e164", "pattern": "_+1NXXNXXXXXX", "trunks": ["provider"]}
        ]
        extension = next(e for e in config["extensions"] if e["number"] == CALLEE.number)
        extension["forward"] = {"always": MOBILE}
        if api_port is not None:
            config["api"] = {"listen": f"{LOOPBACK}:{api_port}"}

    return edit


def sipp_gateway(tmp_path: Path, port: int) -> SippProcess:
    """SIPp answering one call on `port`, every message it receives logged."""
    workdir = tmp_path / "sipp"
    return start_sipp(
        "uas", None, "-trace_msg", "-message_file", str(workdir / "gateway.messages.log"),
        calls=1, workdir=workdir, local_port=port, timeout=25, name="gateway",
    )  # fmt: skip


@contextmanager
def provider_and_ipbx(
    tmp_path: Path, api_port: int | None = None
) -> Iterator[tuple[SippProcess, IpbxServer, int]]:
    """The provider's gateway (SIPp) and ipbx with its trunk to it: the gateway, the
    server and the gateway's port; both stopped after, ipbx's log tail printed."""
    port = free_port("udp")
    gateway = sipp_gateway(tmp_path, port)
    server = start_configured_ipbx(tmp_path / "ipbx", provider(port, api_port))
    try:
        yield gateway, server, port
    finally:
        server.stop()
        if gateway.process.poll() is None:
            stop_process(gateway.process)
        print(f"--- ipbx log tail\n{server.log_tail(60)}")


def request_line(sipp: SippProcess) -> str:
    text = (sipp.workdir / f"{sipp.name}.messages.log").read_text(errors="replace")
    start = text.find("INVITE sip:")
    assert start >= 0, f"SIPp received no INVITE:\n{text[:2000]}"
    return text[start:].splitlines()[0].strip()


def test_a_call_to_an_extension_forwarded_to_a_mobile_leaves_through_the_trunk(
    tmp_path: Path,
) -> None:
    with provider_and_ipbx(tmp_path) as (gateway, server, port):
        with ipbx_phone(
            tmp_path, server.port, CALLER, "--call", CALLEE.number, "--duration", "2",
            "--timeout", "20",
        ) as phone:  # fmt: skip
            status, out = phone.finish(30)
        result = gateway.finish(15)
    assert (status, out.strip().splitlines()[-1]) == (0, "result: answered"), phone.log
    assert result.successful == 1, result.errors()
    assert request_line(gateway).startswith(f"INVITE sip:{MOBILE}@{LOOPBACK}")
    [record] = call_records(server)
    assert (record.caller, record.callee, record.result) == (CALLER.number, CALLEE.number,
                                                             "answered")  # fmt: skip
    assert record.path == f"extension:{CALLEE.number},number:{MOBILE}"
    assert record.legs[1].peer == f"UDP:{LOOPBACK}:{port}"


def test_click_to_call_rings_the_agent_then_the_outside_number_through_the_trunk(
    tmp_path: Path,
) -> None:
    api_port = free_port("tcp")
    with provider_and_ipbx(tmp_path, api_port) as (gateway, server, _):
        token = make_token(server.config_path, "admin")
        with ipbx_phone(
            tmp_path, server.port, CALLER, "--register", "--answer", "--duration", "2",
            "--timeout", "25",
        ) as agent:  # fmt: skip
            agent.wait_for("registered as")
            placed = httpx.post(
                f"http://{LOOPBACK}:{api_port}/calls",
                json={"agent": CALLER.number, "number": MOBILE},
                headers={"Authorization": f"Bearer {token}"},
                timeout=10,
            )
            assert placed.status_code == 202, placed.text
            status, _ = agent.finish(30)
        result = gateway.finish(15)
    assert status == 0, agent.log
    assert result.successful == 1, result.errors()
    assert request_line(gateway).startswith(f"INVITE sip:{MOBILE}@{LOOPBACK}")
    [record] = call_records(server)
    assert (record.call_id, record.callee, record.result) == (
        placed.json()["call_id"], MOBILE, "answered",
    )  # fmt: skip
    assert record.direction == "outbound"
