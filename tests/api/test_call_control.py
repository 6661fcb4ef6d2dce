"""Call control through the API: an admin hangs up, records, sends DTMF into,
blind-transfers and parks a call in progress between `ipbx phone`s on a live `ipbx
serve`, and gets 404/409/422/403 for calls that do not exist, cannot do it now, or bad
requests."""

from __future__ import annotations

import time
import wave
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from ipbx.pbx.call.model import Call
from tests.support.apiclient import Api
from tests.support.phones import Caller
from tests.support.ports import LOOPBACK, free_port
from tests.support.server import IpbxServer, extension_range, make_token, run_ipbx, write_config
from tests.support.softphone import PhoneRun, analyse, ipbx_phone, near, timeline, write_tone

A, B, C = extension_range(3)
A_HZ, B_HZ, C_HZ, MUSIC_HZ = 700, 1000, 1300, 440
TOLERANCE_HZ = 20


# --- the in-process API: refusals ------------------------------------------------------------


@pytest.fixture
def ringing(api: Api) -> Iterator[Call]:
    """A call still ringing (nobody answered), as GET /calls/active would show it."""
    call = Call("c1", from_number="1000", to_number="1001", started=time.time())
    api.pbx.calls.calls[call.id] = call
    yield call
    api.pbx.calls.calls.clear()


Operation = tuple[str, str, dict[str, Any] | None]
OPERATIONS: list[Operation] = [
    ("DELETE", "", None),
    ("POST", "/transfer", {"target": "1001", "leg": "caller"}),
    ("POST", "/recording", {"action": "start"}),
    ("POST", "/dtmf", {"digits": "12#", "leg": "callee"}),
]


def control(api: Api, operation: Operation, call_id: str, token: str | None = "") -> Any:
    """Ask for `operation` on `call_id`, with the admin token unless told (None: no token)."""
    method, suffix, body = operation
    headers = {} if token is None else api.headers(token or None)
    return api.client.request(method, f"/calls/active/{call_id}{suffix}", json=body,
                              headers=headers)  # fmt: skip


@pytest.mark.parametrize("operation", OPERATIONS)
def test_call_control_needs_an_admin_token(api: Api, ringing: Call, operation: Operation) -> None:
    refused = control(api, operation, ringing.uid, api.reader)
    assert refused.status_code == 403 and "admin" in refused.json()["detail"]
    assert control(api, operation, ringing.uid, None).status_code == 401
    assert ringing.id in api.pbx.calls.calls


@pytest.mark.parametrize("operation", OPERATIONS)
def test_an_unknown_call_or_another_tenants_is_not_found(
    api: Api, ringing: Call, operation: Operation
) -> None:
    unknown = control(api, operation, "0123456789abcdef")
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "call_id: no call 0123456789abcdef in progress"
    hidden = control(api, operation, ringing.uid, api.other_tenant)
    assert hidden.status_code == 404 and ringing.uid in hidden.json()["detail"]
    assert ringing.id in api.pbx.calls.calls


@pytest.mark.parametrize("operation", OPERATIONS[1:])
def test_a_call_not_answered_yet_cannot_be_transferred_recorded_or_keyed(
    api: Api, ringing: Call, operation: Operation
) -> None:
    answer = control(api, operation, ringing.uid)
    assert answer.status_code == 409
    assert "not answered" in answer.json()["detail"] and ringing.uid in answer.json()["detail"]


def test_stopping_a_recording_that_never_started_is_a_conflict(api: Api, ringing: Call) -> None:
    answer = control(api, ("POST", "/recording", {"action": "stop"}), ringing.uid)
    assert answer.status_code == 409 and "not being recorded" in answer.json()["detail"]


@pytest.mark.parametrize(
    ("suffix", "body", "field"),
    [
        ("/transfer", {"target": "x", "leg": "caller"}, "target"),
        ("/transfer", {"target": "1001", "leg": "middle"}, "leg"),
        ("/transfer", {"target": "1001"}, "leg"),
        ("/transfer", {"target": "1001", "leg": "caller", "blind": False}, "blind"),
        ("/dtmf", {"digits": "12x", "leg": "caller"}, "digits"),
        ("/dtmf", {"digits": "", "leg": "caller"}, "digits"),
        ("/dtmf", {"digits": "1" * 33, "leg": "caller"}, "digits"),
        ("/recording", {"action": "pause"}, "action"),
        ("/recording", {}, "action"),
    ],
)
def test_a_bad_body_is_refused_naming_the_field(
    api: Api, ringing: Call, suffix: str, body: dict[str, Any], field: str
) -> None:
    answer = control(api, ("POST", suffix, body), ringing.uid)
    assert answer.status_code == 422
    assert [field] in [error["loc"][1:] for error in answer.json()["detail"]], answer.text


def test_hanging_up_a_call_being_set_up_ends_it(api: Api, ringing: Call) -> None:
    answer = control(api, OPERATIONS[0], ringing.uid)
    assert answer.status_code == 204
    assert ringing.ended and ringing.id not in api.pbx.calls.calls
    listed = api.client.get("/calls/active", headers=api.headers())
    assert listed.json()["total"] == 0


def test_the_endpoints_are_in_the_openapi_schema(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    assert set(paths["/calls/active/{call_id}"]) == {"delete"}
    for action in ("transfer", "recording", "dtmf"):
        operation = paths[f"/calls/active/{{call_id}}/{action}"]["post"]
        assert {"403", "404", "409", "422"} <= set(operation["responses"])


# --- a live server and `ipbx phone`s ---------------------------------------------------------


@dataclass
class Live:
    server: IpbxServer
    base: str
    auth: dict[str, str]
    workdir: Path

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return httpx.post(f"{self.base}{path}", json=body, headers=self.auth, timeout=10)

    def answered_call(self, timeout: float = 15.0) -> str:
        """The call_id of the call in progress, once it is answered."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = httpx.get(f"{self.base}/calls/active", headers=self.auth).json()["items"]
            if items and items[0]["answered"] is not None:
                return str(items[0]["call_id"])
            time.sleep(0.1)
        raise AssertionError(f"no answered call within {timeout} s:\n{self.server.log_tail()}")

    def record_of(self, call_id: str, timeout: float = 10.0) -> dict[str, Any]:
        """The call's record, once the server has written it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            answer = httpx.get(f"{self.base}/calls/{call_id}", headers=self.auth)
            if answer.status_code == 200:
                return dict(answer.json())
            time.sleep(0.1)
        raise AssertionError(f"no record of {call_id}:\n{self.server.log_tail()}")

    def phone(self, stack: ExitStack, user: Any, hz: int, seconds: float, *args: str) -> PhoneRun:
        """An `ipbx phone` for `user` playing a tone of `hz` for `seconds` and recording
        what it hears into heard-by-NUMBER.wav; bounded by a 40 s time-out."""
        tone = write_tone(self.workdir / f"{user.number}.wav", hz, seconds)
        heard = self.workdir / f"heard-by-{user.number}.wav"
        options = ["--play", str(tone), "--record", str(heard), "--timeout", "40", *args]
        return stack.enter_context(ipbx_phone(self.workdir, self.server.port, user, *options))


@contextmanager
def live_server(tmp_path: Path, extra: str = "") -> Iterator[Live]:
    """ipbx with A, B and C and the API; `extra` is YAML added to its configuration."""
    api_port = free_port("tcp")
    config, port = write_config(tmp_path, api_port, extra, extensions=[A, B, C])
    token = make_token(config, "admin")
    server = run_ipbx(tmp_path, config, port)
    try:
        yield Live(server, f"http://{LOOPBACK}:{api_port}", {"Authorization": f"Bearer {token}"},
                   tmp_path)  # fmt: skip
    finally:
        code = server.stop()
    log = server.log_tail(400)
    assert code == 0 and "Traceback" not in log, log


def call_a_to_b(live: Live, stack: ExitStack, seconds: float = 20) -> tuple[PhoneRun, PhoneRun]:
    """A calls B; both play their tone for `seconds` unless hung up before."""
    b = live.phone(stack, B, B_HZ, seconds, "--register", "--answer")
    b.wait_for("registered as")
    a = live.phone(stack, A, A_HZ, seconds, "--call", B.number)
    return a, b


def test_hanging_up_through_the_api_ends_both_phones_calls_and_the_record(
    tmp_path: Path,
) -> None:
    with live_server(tmp_path) as live, ExitStack() as stack:
        a, b = call_a_to_b(live, stack)
        call_id = live.answered_call()
        time.sleep(0.5)
        answer = httpx.delete(f"{live.base}/calls/active/{call_id}", headers=live.auth)
        assert answer.status_code == 204, answer.text
        for phone in (a, b):
            code, stdout = phone.finish(timeout=10)
            assert (code, "result: answered") == (0, stdout.strip()), phone.log
            assert "the far end hung up" in phone.log
        record = live.record_of(call_id)
        assert (record["caller"], record["callee"], record["result"]) == (
            A.number, B.number, "answered",
        )  # fmt: skip
        assert 0.3 < record["duration"] < 10
        again = httpx.delete(f"{live.base}/calls/active/{call_id}", headers=live.auth)
        assert again.status_code == 404


def test_dtmf_sent_through_the_api_reaches_the_named_phone(tmp_path: Path) -> None:
    with live_server(tmp_path) as live, ExitStack() as stack:
        a, b = call_a_to_b(live, stack)
        call_id = live.answered_call()
        sent = live.post(f"/calls/active/{call_id}/dtmf", {"digits": "12#", "leg": "callee"})
        assert sent.status_code == 202, sent.text
        busy = live.post(f"/calls/active/{call_id}/dtmf", {"digits": "9", "leg": "callee"})
        assert busy.status_code == 409 and "still being sent" in busy.json()["detail"]
        time.sleep(1.0)  # 3 key presses of 100 ms, 60 ms apart, 3 end packets each
        sent = live.post(f"/calls/active/{call_id}/dtmf", {"digits": "*0", "leg": "caller"})
        assert sent.status_code == 202, sent.text
        time.sleep(1.0)
        httpx.delete(f"{live.base}/calls/active/{call_id}", headers=live.auth)
        heard_by_a, heard_by_b = a.finish(timeout=10)[1], b.finish(timeout=10)[1]
    assert _digits(heard_by_b) == ["1", "2", "#"], heard_by_b
    assert _digits(heard_by_a) == ["*", "0"], heard_by_a


def test_dtmf_to_a_phone_without_telephone_event_is_sent_as_tones(tmp_path: Path) -> None:
    with live_server(tmp_path) as live, ExitStack() as stack:
        b = live.phone(stack, B, B_HZ, 20, "--register", "--answer")
        b.wait_for("registered as")
        a = Caller(live.server)  # raw SIP: offers PCMU alone, no telephone-event
        stack.callback(a.client.close)
        a.call(B.number)
        call_id = live.answered_call()
        sent = live.post(f"/calls/active/{call_id}/dtmf", {"digits": "58", "leg": "callee"})
        assert sent.status_code == 202, sent.text
        time.sleep(1.0)
        httpx.delete(f"{live.base}/calls/active/{call_id}", headers=live.auth)
        heard_by_b = b.finish(timeout=10)[1]
        assert "DTMF in-band" in live.server.log_tail(400)
    assert _digits(heard_by_b) == ["5", "8"], heard_by_b


def _digits(stdout: str) -> list[str]:
    lines = stdout.splitlines()
    return [line.split(":", 1)[1].strip() for line in lines if line.startswith("dtmf:")]


def test_recording_started_mid_call_holds_the_call_audio_until_stopped(tmp_path: Path) -> None:
    with live_server(tmp_path) as live, ExitStack() as stack:
        a, b = call_a_to_b(live, stack)
        call_id = live.answered_call()
        time.sleep(1.0)  # before the recording: not in the file
        started = live.post(f"/calls/active/{call_id}/recording", {"action": "start"})
        assert started.status_code == 200, started.text
        name = started.json()["recording"]
        assert started.json() == {"call_id": call_id, "recording": name, "active": True}
        twice = live.post(f"/calls/active/{call_id}/recording", {"action": "start"})
        assert twice.status_code == 409 and "being recorded" in twice.json()["detail"]
        time.sleep(2.0)
        stopped = live.post(f"/calls/active/{call_id}/recording", {"action": "stop"})
        assert stopped.json() == {"call_id": call_id, "recording": name, "active": False}
        path = tmp_path / "data" / "recordings" / name
        with wave.open(str(path), "rb") as wav:
            assert (wav.getnchannels(), wav.getframerate()) == (2, 8000)
        again = live.post(f"/calls/active/{call_id}/recording", {"action": "stop"})
        assert again.status_code == 409 and "not being recorded" in again.json()["detail"]
        time.sleep(1.0)  # after the recording: not in the file either
        size = path.stat().st_size
        httpx.delete(f"{live.base}/calls/active/{call_id}", headers=live.auth)
        a.finish(timeout=10)
        b.finish(timeout=10)
        record = live.record_of(call_id)
    assert path.stat().st_size == size
    caller_side, callee_side = analyse(path, 0), analyse(path, 1)
    assert caller_side.seconds == pytest.approx(2.0, abs=0.5)
    assert caller_side.dominant_hz == pytest.approx(A_HZ, abs=TOLERANCE_HZ)
    assert callee_side.dominant_hz == pytest.approx(B_HZ, abs=TOLERANCE_HZ)
    assert record["recording"] == name and record["result"] == "answered"


def test_blind_transfer_through_the_api_connects_the_caller_with_a_third_phone(
    tmp_path: Path,
) -> None:
    with live_server(tmp_path) as live, ExitStack() as stack:
        a, b = call_a_to_b(live, stack, seconds=12)
        c = live.phone(stack, C, C_HZ, 6, "--register", "--answer")
        c.wait_for("registered as")
        call_id = live.answered_call()
        time.sleep(0.5)
        url = f"/calls/active/{call_id}/transfer"
        nobody = live.post(url, {"target": "4999", "leg": "caller"})
        assert nobody.status_code == 404 and nobody.json()["detail"].startswith("target:")
        moved = live.post(url, {"target": C.number, "leg": "caller"})
        assert moved.status_code == 202, moved.text
        assert moved.json() == {"call_id": call_id}
        code, _ = b.finish(timeout=15)
        assert code == 0 and "the far end hung up" in b.log, b.log
        for phone in (c, a):
            code, _ = phone.finish(timeout=20)
            assert code == 0, phone.log
        record = live.record_of(call_id)
    assert f"transfer:{C.number}" in record["path"]
    assert (record["caller"], record["callee"], record["result"]) == (
        A.number, B.number, "answered",
    )  # fmt: skip
    # A talked to B for a second or so, then to C for six: what A heard is mostly C.
    assert analyse(tmp_path / f"heard-by-{A.number}.wav").dominant_hz == pytest.approx(
        C_HZ, abs=TOLERANCE_HZ
    )
    assert analyse(tmp_path / f"heard-by-{C.number}.wav").dominant_hz == pytest.approx(
        A_HZ, abs=TOLERANCE_HZ
    )


def test_a_blind_transfer_to_700_through_the_api_parks_the_caller_until_701_is_dialled(
    tmp_path: Path,
) -> None:
    """With ``parking: {slots: "701-720"}``: A waits in 701 with the music on hold, B
    hears "Parked on 7 0 1" and is hung up, and C takes A's call by dialling 701."""
    (tmp_path / "data" / "moh").mkdir(parents=True)
    write_tone(tmp_path / "data" / "moh" / "music.wav", MUSIC_HZ, 10, rate=16000)
    with live_server(tmp_path, 'parking: {slots: "701-720"}\n') as live, ExitStack() as stack:
        a, b = call_a_to_b(live, stack)
        call_id = live.answered_call()
        time.sleep(1.0)
        parked = live.post(f"/calls/active/{call_id}/transfer", {"target": "700", "leg": "caller"})
        assert (parked.status_code, parked.json()) == (202, {"call_id": call_id}), parked.text
        code, _ = b.finish(timeout=15)
        assert code == 0 and "the far end hung up" in b.log, b.log
        c = live.phone(stack, C, C_HZ, 10, "--call", "701", "--duration", "3")
        assert c.finish(timeout=20)[0] == 0, c.log
        assert a.finish(timeout=10)[0] == 0, a.log
        record = live.record_of(call_id)
    assert record["path"] == [f"extension:{B.number}", "park:701", f"retrieve:{C.number}"]
    # B heard A, then the slot spoken: neither A's tone nor silence, most of a second.
    heard_by_b = timeline(tmp_path / f"heard-by-{B.number}.wav")
    a_at = next(i for i, hz in enumerate(heard_by_b) if near(hz, A_HZ))
    assert len([hz for hz in heard_by_b[a_at:] if hz is not None and not near(hz, A_HZ)]) >= 8
    # A heard B, then the music, then C; C heard A.
    heard_by_a = timeline(tmp_path / f"heard-by-{A.number}.wav")
    music_at = next(i for i, hz in enumerate(heard_by_a) if near(hz, MUSIC_HZ))
    assert any(near(hz, B_HZ) for hz in heard_by_a[:music_at]), heard_by_a
    assert any(near(hz, C_HZ) for hz in heard_by_a[music_at:]), heard_by_a
    assert analyse(tmp_path / f"heard-by-{C.number}.wav").dominant_hz == pytest.approx(
        A_HZ, abs=TOLERANCE_HZ
    )
