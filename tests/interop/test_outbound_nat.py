"""baresip behind a NAT registers over TCP with SIP Outbound (RFC 5626) and is called
over its flow: the Contact it registers (10.77.0.2, a private address) has no route from
ipbx, so the connection it opened is the only way to reach it. The network and the
helpers are those of tests/interop/test_nat.py; the registrar's side of outbound (the
200's headers, the pong, a flow replaced by the next) is tests/pbx/test_registrar_outbound.py."""

from __future__ import annotations

from pathlib import Path

from tests.interop.test_nat import (
    BARESIP_LAN,
    CALLEE_HZ,
    CALLER_HZ,
    PHONE_PUBLIC,
    SIP_PORT,
    Heard,
    assert_heard,
    calling,
    nat_lab,
    wait_registered,
)
from tests.support.baresip import start_baresip
from tests.support.netns import NAT_WAN, NEEDS_NAMESPACES
from tests.support.processes import stop_process
from tests.support.server import CALLEE
from tests.support.softphone import write_tone

pytestmark = NEEDS_NAMESPACES


def test_baresip_behind_a_nat_is_reached_over_its_outbound_flow(tmp_path: Path) -> None:
    listen = (f"udp://0.0.0.0:{SIP_PORT}", f"tcp://0.0.0.0:{SIP_PORT}")
    callee_dir = tmp_path / "callee"
    callee_dir.mkdir()
    tone = write_tone(callee_dir / "callee.wav", CALLEE_HZ, 6)
    with nat_lab(tmp_path, listen=listen) as (lab, server):
        host = BARESIP_LAN.host(lab)
        baresip = start_baresip(
            callee_dir, registrar_port=SIP_PORT, user=CALLEE, audio_file=tone, seconds=40,
            host=host.address, registrar_host=BARESIP_LAN.server, namespace=host,
            transport="tcp", outbound=True, sip_trace=True,
        )  # fmt: skip
        try:
            wait_registered(
                server,
                f"{CALLEE.number} registered 1 contact(s) from Address(transport='TCP', "
                f"host='{NAT_WAN}'",
            )
            heard_by_caller = calling(PHONE_PUBLIC, lab, server, tmp_path / "caller", 4)
        finally:
            stop_process(baresip)
    log = server.log_path.read_text()
    assert "(behind NAT) over an outbound flow" in log
    trace = (callee_dir / f"baresip-{CALLEE.number}.log").read_text(errors="replace")
    # baresip asked for outbound from its private address, and was told it has it.
    assert "reg-id=1" in trace and "Require: outbound" in trace, trace
    assert_heard(heard_by_caller, CALLEE_HZ, "the caller", server)
    assert_heard(Heard(callee_dir / "snd"), CALLER_HZ, "baresip behind the NAT", server)
