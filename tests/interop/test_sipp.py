"""ipbx against SIPp (sip-tester): the registrar's digest auth and the B2BUA's call flows.

Each test starts its own ipbx (conftest.ipbx_server) on free loopback ports. The callee
is a SIPp UAS that registered as 1001 first (tests/support/sipp.register_contact), the caller
a SIPp UAC authenticating as 1000; the scenarios are the ones the benchmarks run, in
bench/scenarios/, checked against Kamailio.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.support.ports import free_port
from tests.support.server import IpbxFactory, IpbxServer, extension_range
from tests.support.sipp import (
    SippProcess,
    SippResult,
    register_contact,
    run_sipp,
    start_sipp,
    write_users_csv,
)

CALLER, CALLEE = extension_range(2)


def _target(server: IpbxServer) -> str:
    return f"127.0.0.1:{server.port}"


@contextmanager
def registered_callee(
    server: IpbxServer, workdir: Path, scenario: str, calls: int, *args: str
) -> Iterator[SippProcess]:
    """A SIPp UAS registered as 1001: REGISTER from its port, then the UAS binds it
    (with SIPp's `args`)."""
    port = free_port("udp")
    registration = register_contact(server.port, CALLEE, port, workdir)
    assert registration.successful == 1, registration.errors()
    uas = start_sipp(scenario, None, *args, calls=calls, workdir=workdir, local_port=port)
    try:
        yield uas
    finally:
        uas.finish(timeout=10)


def call_from_1000(
    server: IpbxServer, workdir: Path, scenario: str, calls: int, rate: int = 10
) -> SippResult:
    caller = write_users_csv(workdir / "caller.csv", [CALLER])
    return run_sipp(
        scenario,
        _target(server),
        "-s",
        CALLEE.number,
        "-inf",
        str(caller),
        "-r",
        str(rate),
        calls=calls,
        workdir=workdir,
    )


def test_register_50_users_with_digest_auth(ipbx_server: IpbxFactory, tmp_path: Path) -> None:
    """RFC 3261 10.2 + RFC 2617: each REGISTER is challenged (401), then accepted (200)."""
    server = ipbx_server(extensions=50)
    users = write_users_csv(tmp_path / "users.csv", extension_range(50))

    result = run_sipp(
        "register_auth",
        _target(server),
        "-inf",
        str(users),
        "-r",
        "50",
        calls=50,
        workdir=tmp_path,
    )

    assert (result.successful, result.failed) == (50, 0), result.errors()


# (callee scenario, caller scenario, calls), each through the B2BUA:
CALLS = {
    # INVITE (407, then credentials) -> 180 -> 200 -> ACK -> BYE.
    "20 calls from 1000 reach a SIPp UAS registered as 1001": ("uas", "uac_auth", 20),
    # RFC 3261 9.2: CANCEL while ringing -> 200 for the CANCEL, 487 for the INVITE.
    "CANCEL before answer gives 487 to the caller": ("uas_ring", "uac_cancel", 1),
    # A B2BUA relays the callee's final status: 486 Busy Here arrives as 486.
    "the callee's 486 reaches the caller as 486": ("uas_busy", "uac_busy", 1),
}


@pytest.mark.parametrize(("callee_scenario", "caller_scenario", "calls"), CALLS.values(), ids=CALLS)
def test_call_flows_through_ipbx(
    ipbx_server: IpbxFactory,
    tmp_path: Path,
    callee_scenario: str,
    caller_scenario: str,
    calls: int,
) -> None:
    server = ipbx_server(extensions=2)

    with registered_callee(server, tmp_path, callee_scenario, calls=calls) as uas:
        caller = call_from_1000(server, tmp_path, caller_scenario, calls=calls)
        callee = uas.finish(timeout=10)

    assert (caller.successful, caller.failed) == (calls, 0), caller.errors()
    assert (callee.successful, callee.failed) == (calls, 0), callee.errors()
