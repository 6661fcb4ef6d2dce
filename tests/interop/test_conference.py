"""A conference room with real phones (`ipbx phone` processes), checked by tone
frequency: three members send 440, 1,000 and 1,500 Hz, and each hears the other two
and not its own (N-1 mixing). In the same room: the moderator PIN and the member PIN
(one member enters a wrong PIN first, another three wrong ones and is hung up), an
extension invited through the API joins when it answers, *1
mutes a member (the others stop hearing its tone), the API shows the members and who
talks, a kick through the API ends the member's call, the conference events reach a
webhook, and the room's mix is recorded. An outside number invited through the API
leaves through a trunk (SIPp as the provider's gateway) and is a member like any."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from tests.api.test_metrics import samples
from tests.interop.test_outside_number_calls import request_line
from tests.support.ports import LOOPBACK, free_port
from tests.support.processes import stop_process
from tests.support.pstn import TRUNK, ip_trunk
from tests.support.records import call_records
from tests.support.server import extension_range, make_token, start_configured_ipbx
from tests.support.sipp import start_sipp
from tests.support.softphone import PhoneRun, ipbx_phone, write_tone
from tests.support.tones import seconds_heard
from tests.support.webhook_receiver import Receiver, events_until

SECRET = "conference-hook-secret"
ROOM = "800"
A, B, C, D, E = extension_range(5)  # 1000 ... 1004
TONES = {A.number: 440, B.number: 1000, C.number: 1500}
TALK_SECONDS = 16.0
# C enters a wrong PIN, then the right one, and presses *1 a few seconds after joining.
C_DIGITS = "1111#,,4321#,,,,,,*1"
MOBILE = "+12125551234"  # an outside number, through the trunk
ROUTE_CALLER_ID = "+15550111"


def test_three_members_hear_each_other_but_not_themselves(tmp_path: Path) -> None:
    api_port = free_port("tcp")
    receiver = Receiver(free_port("tcp"), SECRET).start()

    def edit(config: dict[str, Any]) -> None:
        config["conferences"] = [
            {"name": "standup", "pin": "4321", "moderator_pin": "9999", "record": True}
        ]
        config["numbers"] = [{"number": ROOM, "destination": "conference:standup"}]
        config["api"] = {"listen": f"{LOOPBACK}:{api_port}"}
        config["webhooks"] = [{"url": receiver.url, "secret": SECRET,
                               "events": ["conference.*", "recording.ready"],
                               "retry_initial": 0.2, "retry_max": 1.0}]  # fmt: skip

    server = start_configured_ipbx(tmp_path / "ipbx", edit, extensions=[A, B, C, D, E])
    api = admin_api(server.config_path, api_port)
    recordings = {n: tmp_path / f"heard-{n}.wav" for n in TONES}

    def member(user: Any, digits: str, seconds: float) -> Any:
        tone = write_tone(tmp_path / f"{user.number}.wav", TONES[user.number], seconds + 5)
        return ipbx_phone(
            tmp_path, server.port, user,
            "--call", ROOM, "--dtmf", digits, "--play", str(tone),
            "--record", str(recordings[user.number]), "--duration", str(seconds),
            "--timeout", str(seconds + 15),
        )  # fmt: skip

    def until(what: str, ready: Any, timeout: float = 15.0) -> dict[str, Any]:
        return room_until(api, what, ready, timeout)

    try:
        with (
            member(A, "9999#", TALK_SECONDS) as a,
            member(B, "4321#", TALK_SECONDS) as b,
            member(C, C_DIGITS, 60.0) as c,
            ipbx_phone(
                tmp_path, server.port, D, "--call", ROOM, "--dtmf", "1#,,2#,,3#", "--timeout", "40"
            ) as d,  # fmt: skip
            ipbx_phone(
                tmp_path,
                server.port,
                E,
                "--register",
                "--answer",
                "--duration",
                "2",
                "--timeout",
                "40",
            ) as e,  # fmt: skip
        ):
            full = until("three members", lambda s: len(s["members"]) == 3)
            by_caller = {m["caller"]: m for m in full["members"]}
            assert by_caller[A.number]["moderator"] and not by_caller[B.number]["moderator"]
            until("someone talking", lambda s: any(m["talking"] for m in s["members"]))
            metrics = samples(api.get("/metrics").text)
            assert metrics[("ipbx_conference_members", (("conference", "standup"),))] == 3
            e.wait_for("registered as")
            invited = api.post("/conferences/standup/dial", json={"number": E.number})
            assert invited.status_code == 202, invited.text
            until("E invited in", lambda s: any(m["caller"] == E.number for m in s["members"]))
            assert _answered(e)  # it hung up after its 2 s in the room
            muted = until("C muted by *1", lambda s: _member(s, C.number)["muted"])
            assert not _member(muted, A.number)["muted"]
            c_id = _member(muted, C.number)["id"]
            for run in (a, b):
                assert _answered(run)
            assert _answered(d)  # three wrong PINs: the goodbye, then a hang-up
            kicked = api.post(f"/conferences/standup/members/{c_id}/kick")
            assert kicked.status_code == 200, kicked.text
            assert c_id not in [m["id"] for m in kicked.json()["members"]]
            started = time.monotonic()
            assert _answered(c)
            assert time.monotonic() - started < 5  # its 60 s were cut short
            until("room empty", lambda s: s["members"] == [])

        # N-1: while all three talk, each hears the two others and not itself; once C
        # muted itself (*1), A and B no longer hear its 1,500 Hz.
        # (A phone's recording starts with the first audio it receives.)
        for number, own in TONES.items():
            heard = seconds_heard(recordings[number], TONES.values())
            assert set(TONES.values()) - {own} in heard, (number, heard)
            assert not any(own in second for second in heard), (number, heard)
        for number in (A.number, B.number):
            heard = seconds_heard(recordings[number], TONES.values())
            assert any(TONES[C.number] in second for second in heard), (number, heard)
            assert all(TONES[C.number] not in second for second in heard[-2:]), (number, heard)

        events = events_until(receiver, lambda by: "recording.ready" in by)
        joined = {e["caller"]: e for e in events["conference.joined"]}
        # Not D, who never got in; E, invited through the API, without a PIN.
        assert set(joined) == {A.number, B.number, C.number, E.number}
        assert joined[A.number]["moderator"] is True
        assert {e["member"] for e in events["conference.left"]} == {
            e["member"] for e in joined.values()
        }
        assert any(e["talking"] is True for e in events["conference.talking"])
        # The room's mix was recorded from its first member to its last: all three tones.
        [ready] = events["recording.ready"]
        assert ready["conference"] == "standup" and ready["seconds"] > TALK_SECONDS - 3
        mix = server.data_dir / "recordings" / str(ready["recording"])
        assert set(TONES.values()) in seconds_heard(mix, TONES.values())
        # The members' call records: in a conference (no missed call), the invited
        # extension's answered, and each names the room's recording.
        records = {r.caller: r for r in call_records(server, count=5)}
        assert {n: (r.result, r.recording) for n, r in records.items()} == {
            A.number: ("conference", ready["recording"]),
            B.number: ("conference", ready["recording"]),
            C.number: ("conference", ready["recording"]),
            D.number: ("conference", None),
            E.number: ("answered", ready["recording"]),
        }
    finally:
        server.stop()
        receiver.stop()


def test_an_outside_number_invited_through_the_api_joins_the_room_through_the_trunk(
    tmp_path: Path,
) -> None:
    """A, alone in the room, plays 440 Hz and hears nothing of itself (N-1); the API
    invites MOBILE, which leaves through the route's trunk with the route's caller ID.
    The provider's gateway (SIPp) answers and echoes what it hears: it is a member,
    talking, and A hears its own tone back through it. A hangs up; a kick hangs MOBILE
    up. Its call record is an outbound call answered in the room."""
    api_port, gateway_port = free_port("tcp"), free_port("udp")

    def edit(config: dict[str, Any]) -> None:
        ip_trunk(config, gateway_port)
        config["outbound_routes"] = [{"name": "mobiles", "pattern": "_+1NXXNXXXXXX",
                                      "trunks": [TRUNK], "caller_id": ROUTE_CALLER_ID}]  # fmt: skip
        config["conferences"] = [{"name": "standup"}]
        config["numbers"] = [{"number": ROOM, "destination": "conference:standup"}]
        config["api"] = {"listen": f"{LOOPBACK}:{api_port}"}

    workdir = tmp_path / "sipp"
    gateway = start_sipp(
        "uas", None, "-rtp_echo", "-trace_msg", "-message_file",
        str(workdir / "gateway.messages.log"), calls=1, workdir=workdir,
        local_port=gateway_port, timeout=30, name="gateway",
    )  # fmt: skip
    server = start_configured_ipbx(tmp_path / "ipbx", edit, extensions=[A])
    api = admin_api(server.config_path, api_port)
    tone = write_tone(tmp_path / "a.wav", TONES[A.number], 25)
    heard = tmp_path / "heard-a.wav"
    try:
        with ipbx_phone(
            tmp_path, server.port, A, "--call", ROOM, "--play", str(tone),
            "--record", str(heard), "--duration", "8", "--timeout", "30",
        ) as a:  # fmt: skip
            room_until(api, "A in the room", lambda s: len(s["members"]) == 1)
            invited = api.post("/conferences/standup/dial", json={"number": MOBILE})
            assert invited.status_code == 202, invited.text
            talking = room_until(api, "MOBILE talking", lambda s: any(
                m["caller"] == MOBILE and m["talking"] for m in s["members"]
            ))  # fmt: skip
            mobile = _member(talking, MOBILE)
            assert mobile["call_id"] == invited.json()["call_id"]
            assert not mobile["moderator"]
            assert _answered(a)  # its 8 s are over
        kicked = api.post(f"/conferences/standup/members/{mobile['id']}/kick")
        assert kicked.status_code == 200, kicked.text
        assert kicked.json()["members"] == []
        assert gateway.finish(10).successful == 1  # the kick's BYE ended its call
    finally:
        server.stop()
        if gateway.process.poll() is None:
            stop_process(gateway.process)
        print(f"--- ipbx log tail\n{server.log_tail(60)}")

    assert any(TONES[A.number] in second for second in seconds_heard(heard, TONES.values()))
    assert request_line(gateway).startswith(f"INVITE sip:{MOBILE}@{LOOPBACK}")
    invite = (workdir / "gateway.messages.log").read_text(errors="replace")
    assert f"From: <sip:{ROUTE_CALLER_ID}@" in invite, invite[:2000]
    records = {r.caller: r for r in call_records(server, count=2)}
    record = records[MOBILE]
    assert (record.call_id, record.callee, record.result, record.direction) == (
        invited.json()["call_id"], "standup", "answered", "outbound",
    )  # fmt: skip
    assert record.path == "conference:standup"
    assert record.legs[0].peer == f"UDP:{LOOPBACK}:{gateway_port}"


def admin_api(config_path: Path, api_port: int) -> httpx.Client:
    token = make_token(config_path, "admin")
    return httpx.Client(
        base_url=f"http://{LOOPBACK}:{api_port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )


def room_until(api: httpx.Client, what: str, ready: Any, timeout: float = 15.0) -> dict[str, Any]:
    """The room's picture (GET /conferences/standup) once `ready` says it is `what`."""
    deadline = time.monotonic() + timeout
    while True:
        answer = api.get("/conferences/standup")
        assert answer.status_code == 200, answer.text
        state = dict(answer.json())
        if ready(state):
            return state
        assert time.monotonic() < deadline, f"{what}: {state}"
        time.sleep(0.1)


def _member(state: dict[str, Any], caller: str) -> dict[str, Any]:
    [found] = [m for m in state["members"] if m["caller"] == caller]
    return dict(found)


def _answered(run: PhoneRun) -> bool:
    status, out = run.finish()
    return status == 0 and out.splitlines()[-1] == "result: answered"
