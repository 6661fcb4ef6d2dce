"""Presence (RFC 3856, PIDF with RPID activities) as Linphone shows it: linphonec,
registered as 1002, adds 1001 as a friend and subscribes to its presence with digest
credentials; its console reads Offline until 1001 registers, Online after, and On the
phone while 1001's phone rings."""

from __future__ import annotations

from pathlib import Path

from tests.support.linphone import linphonec
from tests.support.phones import Caller, Phone
from tests.support.server import IpbxFactory, extension_range

CALLER, WATCHED, WATCHER = extension_range(3)


def test_linphone_shows_offline_online_and_on_the_phone(
    ipbx_server: IpbxFactory, tmp_path: Path
) -> None:
    server = ipbx_server(extensions=3)
    friend = f'Friend "{WATCHED.number}" <sip:{WATCHED.number}@127.0.0.1:{server.port}> is'
    with linphonec(tmp_path, server.port, WATCHER) as linphone:
        linphone.wait_registered()
        linphone.send(f"friend add {WATCHED.number} sip:{WATCHED.number}@127.0.0.1:{server.port}")
        seen = linphone.wait_console(f"{friend} Offline")
        bob = Phone(server, WATCHED.number, WATCHED.password)
        alice = Caller(server)
        try:
            seen = linphone.wait_console(f"{friend} Online", seen)
            alice.dial(WATCHED.number)
            bob.ringing(bob.rings())
            linphone.wait_console(f"{friend} On the phone", seen)
        finally:
            alice.close()
            bob.close()
