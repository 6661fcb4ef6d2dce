"""A call is answered when a person answers it, not when ipbx does (pbx/call/outcome.py),
with real peers (tests/support/pstn.py): SIPp as the provider's gateway calls DIDs.
The first caller hangs up in a menu; the second hangs up while a ring group's phone
(1002, a SIPp UAS that only rings) rings; the third presses 1 in the menu and 1001's
phone (a SIPp UAS) answers; the fourth presses 2 for 1001's voicemail. The call
records and GET /analytics say menu, group (abandoned), answered and voicemail; a
webhook receiver on loopback gets call.missed for all but the answered one, and every
call.started names the trunk and the caller's display name, as src/ipbx/pbx/events.py
(the event list docs/api.md points to) promises."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx

from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import stop_process
from tests.support.pstn import CALLER_NAME, TRUNK, DidCall, dial, ip_trunk, phone
from tests.support.records import call_records
from tests.support.server import CALLEE, OTHER, make_token, start_configured_ipbx
from tests.support.softphone import write_tone
from tests.support.webhook_receiver import Receiver, events_until

MENU, GROUP = "+15550102", "+15550101"
SECRET = "answered-by-a-person-secret"


def menu_group_and_voicemail(gateway_port: int, api_port: int, greeting: Path, hook: str) -> Any:
    """MENU's menu: 1 rings 1001, 2 is 1001's mailbox; GROUP rings 1002; call events go
    to `hook`."""

    def edit(config: dict[str, Any]) -> None:
        ip_trunk(config, gateway_port)
        callee = next(e for e in config["extensions"] if e["number"] == "1001")
        callee["voicemail"] = {"pin": "1234"}
        config["ivrs"] = [
            {"name": "main", "greeting": f"file:{greeting}",
             "options": {"1": "extension:1001", "2": "voicemail:1001"}}
        ]  # fmt: skip
        config["groups"] = [{"name": "sales", "members": ["1002"]}]
        config["numbers"] = [
            {"number": MENU, "destination": "ivr:main"},
            {"number": GROUP, "destination": "group:sales"},
        ]
        config["api"] = {"listen": f"{LOOPBACK}:{api_port}"}
        config["webhooks"] = [{"url": hook, "events": ["call.*"], "secret": SECRET,
                               "retry_initial": 0.2, "retry_max": 1.0}]  # fmt: skip

    return edit


def voicemail_missed(events: dict[str, list[dict[str, Any]]]) -> bool:
    """The last call's call.missed is in: it is the last event of the calls (one
    webhook's events are delivered in order), so every other one came before it."""
    return any(e["result"] == "voicemail" for e in events.get("call.missed", []))


def test_a_call_is_answered_by_a_phone_not_by_a_menu_a_ringing_group_or_voicemail(
    tmp_path: Path,
) -> None:
    gateway_port, api_port = free_port("udp"), free_port("tcp")
    receiver = Receiver(free_port("tcp"), SECRET).start()
    greeting = write_tone(tmp_path / "greeting.wav", 440, 0.3)
    edit = menu_group_and_voicemail(gateway_port, api_port, greeting, receiver.url)
    server = start_configured_ipbx(tmp_path / "ipbx", edit)
    try:
        with (
            phone(server, tmp_path / "sipp", CALLEE, calls=1) as bob,
            phone(server, tmp_path / "sipp", OTHER, 1, "uas_ring") as carol,
        ):
            calls = [DidCall(MENU), DidCall(GROUP), DidCall(MENU, "1"), DidCall(MENU, "2")]
            placed = dial(server, gateway_port, tmp_path / "sipp", calls, 1.5)
            assert placed.result.successful == 4, placed.result.errors()
            assert bob.finish(timeout=10).successful == 1
            assert carol.finish(timeout=10).successful == 1  # rang, then cancelled
        records = call_records(server, count=4)
        results = {r.call_id: r.result for r in reversed(records)}
        assert list(results.values()) == ["menu", "group", "answered", "voicemail"], records
        [answered] = [r for r in records if r.result == "answered"]
        assert answered.person_answered is not None and answered.path.endswith("extension:1001")
        assert all(r.person_answered is None for r in records if r is not answered)
        token = make_token(server.config_path, "read")
        analytics = httpx.get(
            f"http://{LOOPBACK}:{api_port}/analytics",
            headers={"Authorization": f"Bearer {token}"}, timeout=10,
        ).json()["total"]  # fmt: skip
        assert {key: analytics.get(key) for key in (
            "offered", "answered", "missed", "abandoned", "ended_in_menu", "ended_in_voicemail"
        )} == {"offered": 4, "answered": 1, "missed": 2, "abandoned": 1, "ended_in_menu": 1,
               "ended_in_voicemail": 1}  # fmt: skip
        events = events_until(receiver, voicemail_missed)
    finally:
        code = stop_process(server.process)
        receiver.stop()
        print(f"--- ipbx (exit {code}) log tail:\n{server.log_tail(80)}")
    assert {e["call_id"]: e["result"] for e in events["call.missed"]} == {
        call_id: result for call_id, result in results.items() if result != "answered"
    }
    assert {e["call_id"] for e in events["call.ended"]} == set(results)
    started = events["call.started"]
    assert [(e["trunk"], e["caller_name"], e["direction"]) for e in started] == [
        (TRUNK, CALLER_NAME, "inbound")
    ] * 4
