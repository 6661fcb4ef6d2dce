"""A BLF key played by SIPp (sip-tester) against a running ipbx: 1002 subscribes to the
dialog event package (RFC 4235) of 1001 with digest credentials, and its scenario
(scenarios/subscribe_dialog.xml) checks the NOTIFY bodies in order while 1000 calls
1001: idle, early with the caller's identity, confirmed, terminated, then the last
NOTIFY of its un-SUBSCRIBE."""

from __future__ import annotations

import time
from pathlib import Path

from tests.support.phones import Caller, Phone
from tests.support.server import IpbxFactory, extension_range
from tests.support.sipp import start_sipp, write_users_csv

SCENARIO = Path(__file__).parent / "scenarios" / "subscribe_dialog.xml"
CALLER, CALLEE, WATCHER = extension_range(3)


def test_sipp_blf_key_sees_a_call_ring_connect_and_end(
    ipbx_server: IpbxFactory, tmp_path: Path
) -> None:
    server = ipbx_server(extensions=3)
    bob = Phone(server, CALLEE.number, CALLEE.password)
    alice = Caller(server)
    users = write_users_csv(tmp_path / "watcher.csv", [WATCHER])
    target = f"127.0.0.1:{server.port}"
    watcher = start_sipp(
        SCENARIO, target, "-s", CALLEE.number, "-inf", str(users), calls=1, workdir=tmp_path
    )
    try:
        deadline = time.monotonic() + 10
        while not (tmp_path / "subscribed").exists():
            assert watcher.process.poll() is None, "SIPp ended before its first NOTIFY"
            assert time.monotonic() < deadline, "no first NOTIFY within 10 s"
            time.sleep(0.05)
        alice.dial(CALLEE.number)
        invite = bob.rings()
        bob.ringing(invite)
        bob.answer(invite)
        answered = alice.final()
        assert answered.status == 200, answered
        alice.hang_up(answered)
        result = watcher.finish(timeout=20)
        assert (result.successful, result.failed) == (1, 0), result.errors()
    finally:
        watcher.finish(timeout=1)
        alice.close()
        bob.close()
