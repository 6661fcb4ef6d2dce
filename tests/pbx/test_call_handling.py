"""Personal call handling on a live server: forwarding (always, busy, no answer,
unregistered), do-not-disturb, the blacklist and office-hours schedules, each proved by
which phone rings and by the path in the call record."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.support.phones import Phone, dial, final_status
from tests.support.ports import free_port
from tests.support.records import call_records
from tests.support.server import IpbxServer, extension_range, make_token, start_configured_ipbx
from tests.support.sipclient import next_request, reply_to

CALLER, FIRST, SECOND = extension_range(3)
LOOPBACK = "127.0.0.1"


@pytest.fixture
def make_server(
    tmp_path: Path,
) -> Iterator[Callable[[Callable[[dict[str, Any]], None]], IpbxServer]]:
    servers: list[IpbxServer] = []

    def make(edit: Callable[[dict[str, Any]], None]) -> IpbxServer:
        server = start_configured_ipbx(tmp_path / f"ipbx{len(servers)}", edit)
        servers.append(server)
        return server

    yield make
    for server in servers:
        code = server.stop()
        print(f"--- ipbx (exit {code}) log tail:\n{server.log_tail()}")


def _forward(extension: int, **forward: Any) -> Callable[[dict[str, Any]], None]:
    def edit(config: dict[str, Any]) -> None:
        config["extensions"][extension]["forward"] = forward

    return edit


def test_forward_always_rings_the_target_not_the_phone(make_server: Any) -> None:
    server = make_server(_forward(1, always="1002"))
    first, second = (
        Phone(server, FIRST.number, FIRST.password),
        Phone(server, SECOND.number, SECOND.password),
    )
    caller = dial(server, FIRST.number)
    invite = second.rings()
    assert invite.uri.user == SECOND.number
    second.answer(invite)
    assert final_status(caller) == 200
    first.client.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        first.rings()
    for phone in (first, second):
        phone.close()
    caller.close()


@pytest.mark.parametrize("mode", ["busy", "no_answer", "dnd", "unregistered"])
def test_forwarding_when_the_phone_does_not_take_the_call(make_server: Any, mode: str) -> None:
    def edit(config: dict[str, Any]) -> None:
        ext = config["extensions"][1]
        ext["forward"] = {mode if mode != "dnd" else "busy": "1002", "no_answer_seconds": 2}
        if mode == "dnd":
            ext["dnd"] = True

    server = make_server(edit)
    second = Phone(server, SECOND.number, SECOND.password)
    first = None if mode == "unregistered" else Phone(server, FIRST.number, FIRST.password)
    caller = dial(server, FIRST.number)
    if first is not None and mode in ("busy", "no_answer"):
        invite = first.rings()
        if mode == "busy":
            first.client.send(reply_to(invite, 486, []))
        else:
            first.client.send(reply_to(invite, 180, []))
            cancel = next_request(first.client, "CANCEL")  # after no_answer_seconds
            first.client.send(reply_to(cancel, 200, []))
            first.client.send(reply_to(invite, 487, []))
    forwarded = second.rings()
    second.answer(forwarded)
    assert final_status(caller) == 200
    caller.close()
    for phone in (first, second):
        if phone is not None:
            phone.close()
    time.sleep(0.5)
    server.stop()
    [record] = call_records(server)
    assert record.path == "extension:1001,extension:1002"


def test_a_blacklisted_caller_hears_the_message_and_nobody_rings(make_server: Any) -> None:
    def edit(config: dict[str, Any]) -> None:
        config["blacklist"] = [{"pattern": CALLER.number, "message": "Your calls are blocked."}]

    server = make_server(edit)
    first = Phone(server, FIRST.number, FIRST.password)
    caller = dial(server, FIRST.number)
    status = final_status(caller)
    # Answered to hear the message, then hung up on.
    assert status == 200
    bye = next_request(caller, "BYE")
    caller.send(reply_to(bye, 200, []))
    first.client.sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        first.rings()
    first.close()
    caller.close()
    [record] = call_records(server)
    assert record.path == "blacklist"


@pytest.mark.parametrize("open_now", [True, False], ids=["open", "closed"])
def test_a_schedule_routes_by_the_office_hours_around_now(make_server: Any, open_now: bool) -> None:
    """The clock is set by the test: the office hours are written around the current
    time, in a zone where it is about noon now (so the hours never cross midnight)."""
    utc = datetime.now(UTC)
    offset = 12 - utc.hour  # Etc/GMT-N is N hours east of UTC (the sign is POSIX's)
    zone = "Etc/GMT" if offset == 0 else f"Etc/GMT{'-' if offset > 0 else '+'}{abs(offset)}"
    now = datetime.now(ZoneInfo(zone))
    day = now.strftime("%a").lower()
    if open_now:
        start, end = now - timedelta(minutes=30), now + timedelta(minutes=30)
    else:
        start, end = now + timedelta(minutes=30), now + timedelta(minutes=60)

    def edit(config: dict[str, Any]) -> None:
        config["schedules"] = [
            {
                "name": "office",
                "timezone": zone,
                "hours": {day: f"{start:%H:%M}-{end:%H:%M}"},
                "open": "extension:1001",
                "closed": "extension:1002",
            }
        ]
        config["numbers"] = [{"number": "500", "destination": "schedule:office"}]

    server = make_server(edit)
    first, second = (
        Phone(server, FIRST.number, FIRST.password),
        Phone(server, SECOND.number, SECOND.password),
    )
    caller = dial(server, "500")
    ringing = first if open_now else second
    invite = ringing.rings()
    ringing.answer(invite)
    assert final_status(caller) == 200
    caller.close()
    first.close()
    second.close()
    time.sleep(0.5)
    server.stop()
    [record] = call_records(server)
    target = "extension:1001" if open_now else "extension:1002"
    assert record.path == f"schedule:office,{target}"


def test_a_running_server_takes_up_ipbx_apply_and_api_changes(
    make_server: Any, tmp_path: Path
) -> None:
    api_port = free_port("tcp")

    def edit(config: dict[str, Any]) -> None:
        config["api"] = {"listen": f"{LOOPBACK}:{api_port}"}

    server = make_server(edit)
    first = Phone(server, FIRST.number, FIRST.password)
    blocking = tmp_path / "blacklist.yaml"
    blocking.write_text(
        f"data_dir: {server.data_dir}\nblacklist:\n  - pattern: '{CALLER.number}'\n"
    )
    command = [sys.executable, "-m", "ipbx.cli", "apply", str(blocking)]
    subprocess.run(command, capture_output=True, text=True, check=True, timeout=60)
    deadline = time.monotonic() + 10
    while "configuration revision" not in server.log_tail(200):
        assert time.monotonic() < deadline, server.log_tail()
        time.sleep(0.1)
    caller = dial(server, FIRST.number)
    assert final_status(caller) == 603  # Decline: blacklisted, with no message to hear
    caller.close()
    token = make_token(server.config_path, "admin")
    removed = httpx.delete(
        f"http://{LOOPBACK}:{api_port}/config/blacklist/{CALLER.number}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert removed.status_code == 204, removed.text
    caller = dial(server, FIRST.number)
    assert first.rings().method == "INVITE"  # at once: the API reloads before answering
    caller.close()
    first.close()
    time.sleep(0.5)
    server.stop()
    assert [r.path for r in reversed(call_records(server))] == ["blacklist", "extension:1001"]
