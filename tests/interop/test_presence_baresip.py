"""Presence (RFC 3856, PIDF) as baresip shows it: its presence module subscribes to
1001's presence, with digest credentials, and its contact list reads Offline until 1001
registers, Online after, Busy while 1001's phone rings, and Online again when the call
is cancelled."""

from __future__ import annotations

import re
import time
from pathlib import Path

from tests.support.baresip import BaresipControl, start_baresip
from tests.support.phones import Caller, Phone
from tests.support.ports import free_port
from tests.support.processes import stop_process
from tests.support.server import IpbxFactory, extension_range
from tests.support.softphone import write_tone

CALLER, WATCHED, WATCHER = extension_range(3)
# baresip's contact list: the status, coloured, before the name.
STATUS = re.compile(r"(Offline|Online|Busy)\S* " + WATCHED.number)


def shows(control: BaresipControl, status: str, timeout: float = 10.0) -> None:
    """Wait until baresip's contact list shows 1001 as `status`."""
    deadline = time.monotonic() + timeout
    while True:
        found = STATUS.search(control.command("contacts"))
        seen = found.group(1) if found else None
        if seen == status:
            return
        assert time.monotonic() < deadline, f"baresip shows {seen}, not {status}"
        time.sleep(0.1)


def test_baresip_shows_offline_online_and_busy(ipbx_server: IpbxFactory, tmp_path: Path) -> None:
    server = ipbx_server(extensions=3)
    tone = write_tone(tmp_path / "tone.wav", 440, 30)
    port = free_port("tcp")
    baresip = start_baresip(
        tmp_path, registrar_port=server.port, user=WATCHER, audio_file=tone,
        control_port=port, watch=(WATCHED.number,), seconds=40,
    )  # fmt: skip
    control = BaresipControl(port)
    bob = alice = None
    try:
        shows(control, "Offline")
        bob = Phone(server, WATCHED.number, WATCHED.password)
        shows(control, "Online")
        alice = Caller(server)
        alice.dial(WATCHED.number)
        invite = bob.rings()
        bob.ringing(invite)
        shows(control, "Busy")
        alice.cancel()
        bob.cancelled(invite)
        shows(control, "Online")
    finally:
        control.close()
        stop_process(baresip)
        for phone in (alice, bob):
            if phone is not None:
                phone.close()
