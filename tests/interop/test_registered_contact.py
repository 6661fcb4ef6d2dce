"""A phone is called at the Contact it registered (RFC 3261 §10.3), not at the port its
REGISTER came from, when nothing shows it behind NAT (pbx/nat.py).

SIPp registers 1001 from port A with `Contact: <sip:1001@127.0.0.1:B>` (its Via says A,
and A is where the packets come from: no NAT) and a SIPp UAS answers on B. Calls to 1001,
from an extension or from a trunk's DID, must reach B.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from tests.support.ports import LOOPBACK, free_port
from tests.support.server import CALLEE, CALLER, IpbxServer, start_configured_ipbx
from tests.support.sipp import SCENARIOS, SippProcess, run_sipp, start_sipp, write_users_csv

SCENARIO = Path(__file__).parent / "scenarios" / "register_elsewhere.xml"
DID = "+15550100"


def register_elsewhere(server: IpbxServer, workdir: Path, contact_port: int) -> int:
    """Register 1001 from a free port A with its Contact on `contact_port`; returns A."""
    users = write_users_csv(workdir / "register.csv", [CALLEE])
    users.write_text(
        "\n".join(
            line if line == "SEQUENTIAL" else f"{line};{contact_port}"
            for line in users.read_text().splitlines()
        )
        + "\n"
    )
    source_port = free_port("udp")
    registered = run_sipp(
        SCENARIO, f"{LOOPBACK}:{server.port}", "-inf", str(users),
        calls=1, workdir=workdir, local_port=source_port, timeout=10, name="register",
    )  # fmt: skip
    assert registered.successful == 1, registered.errors()
    return source_port


@contextmanager
def callee_on_another_port(
    server: IpbxServer, workdir: Path, on_source: bool = False
) -> Iterator[SippProcess]:
    """A SIPp UAS registered as 1001 from port A with its Contact on port B, answering
    on B (on A with `on_source`)."""
    contact_port = free_port("udp")
    source_port = register_elsewhere(server, workdir, contact_port)
    port = source_port if on_source else contact_port
    uas = start_sipp("uas", None, calls=1, workdir=workdir, local_port=port, name="uas")
    try:
        yield uas
    finally:
        uas.finish(timeout=10)


def with_ip_trunk(gateway_port: int) -> Any:
    def edit(config: dict[str, Any]) -> None:
        config["trunks"] = [
            {
                "name": "provider", "host": f"{LOOPBACK}:{gateway_port}",
                "allow_from": [f"{LOOPBACK}:{gateway_port}"], "options_interval": 0,
            }
        ]  # fmt: skip
        config["numbers"] = [{"number": DID, "destination": f"extension:{CALLEE.number}"}]

    return edit


def assert_answered_on_the_contact(
    server: IpbxServer,
    workdir: Path,
    scenario: str | Path,
    *args: str,
    local_port: int | None,
    on_source: bool = False,
) -> None:
    """Run the caller's SIPp scenario against ipbx while 1001 waits on its Contact (on
    its REGISTER's source port with `on_source`)."""
    try:
        with callee_on_another_port(server, workdir, on_source) as uas:
            call = run_sipp(
                scenario, f"{LOOPBACK}:{server.port}", *args,
                calls=1, workdir=workdir, local_port=local_port, timeout=15, name="caller",
            )  # fmt: skip
            answered = uas.finish(timeout=10)
    finally:
        server.stop()
    assert (call.successful, call.failed) == (1, 0), call.errors() + server.log_tail()
    assert answered.successful == 1, answered.errors()


def test_a_call_from_an_extension_reaches_the_registered_contact(tmp_path: Path) -> None:
    server = start_configured_ipbx(tmp_path / "ipbx", lambda config: None)
    caller = write_users_csv(tmp_path / "caller.csv", [CALLER])
    assert_answered_on_the_contact(
        server, tmp_path, "uac_auth", "-s", CALLEE.number, "-inf", str(caller), local_port=None
    )


def test_a_did_call_from_a_trunk_reaches_the_registered_contact(tmp_path: Path) -> None:
    gateway_port = free_port("udp")
    server = start_configured_ipbx(tmp_path / "ipbx", with_ip_trunk(gateway_port))
    assert_answered_on_the_contact(
        server, tmp_path, SCENARIOS / "uac_did.xml", "-s", DID, local_port=gateway_port
    )


def test_nat_force_calls_the_phone_where_its_register_came_from(tmp_path: Path) -> None:
    """`extensions[].nat: force`: the REGISTER's source address, whatever the Contact."""

    def force(config: dict[str, Any]) -> None:
        callee = next(e for e in config["extensions"] if e["number"] == CALLEE.number)
        callee["nat"] = "force"

    server = start_configured_ipbx(tmp_path / "ipbx", force)
    caller = write_users_csv(tmp_path / "caller.csv", [CALLER])
    assert_answered_on_the_contact(
        server, tmp_path, "uac_auth", "-s", CALLEE.number, "-inf", str(caller),
        local_port=None, on_source=True,
    )  # fmt: skip
