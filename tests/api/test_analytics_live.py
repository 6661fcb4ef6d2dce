"""Analytics of real calls: a live `ipbx serve` takes a scripted set of calls from raw
SIP phones (answered, missed, abandoned after 5 s of ringing, blind-transferred, and one
through a ring group), and GET /analytics, its groupings and the CSV export say what the
script did. The expected times come from the script's own clock: when it sent the
INVITE, when the phone answered, when someone hung up. These check measured values, not
speed: the tolerance covers only loopback delivery and the server's scheduling."""

from __future__ import annotations

import csv
import io
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from statistics import mean
from typing import Any

import httpx
import pytest

from ipbx.sip.message import Request, Response
from tests.support.phones import Caller, Phone
from tests.support.ports import free_port
from tests.support.records import call_records
from tests.support.server import IpbxServer, extension_range, make_token, start_configured_ipbx

CALLER, CALLEE, TARGET = extension_range(3)
LOOPBACK = "127.0.0.1"
SALES = "500"  # an internal short number that rings the group `sales`
RING, TALK, ABANDON_AFTER = 1.0, 1.5, 5.0
# How far the server's clock readings may be from the script's own, either way.
TOLERANCE = 0.3


@dataclass
class Timed:
    """When the script did what a call record times: sent the INVITE, answered (or got
    the answer), hung up (or cancelled)."""

    started: float
    answered: float | None
    ended: float


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[IpbxServer, int]]:
    api_port = free_port("tcp")

    def edit(config: dict[str, Any]) -> None:
        config["api"] = {"listen": f"{LOOPBACK}:{api_port}"}
        config["groups"] = [{"name": "sales", "members": [TARGET.number], "ring_seconds": 10}]
        config["numbers"] = [{"number": SALES, "destination": "group:sales"}]

    ipbx = start_configured_ipbx(tmp_path / "ipbx", edit)
    yield ipbx, api_port
    code = ipbx.stop()
    print(f"--- ipbx (exit {code}) log tail:\n{ipbx.log_tail()}")


@dataclass
class Ringing:
    """1000's call to 1001, ringing (180): the caller, the INVITE 1001 got, when sent."""

    caller: Caller
    invite: Request
    started: float


def _ring(server: IpbxServer, callee: Phone) -> Ringing:
    caller = Caller(server)
    caller.dial(CALLEE.number)
    started = time.time()
    invite = callee.rings()
    callee.ringing(invite)
    return Ringing(caller, invite, started)


def _answer_after_ringing(call: Ringing, callee: Phone) -> tuple[Response, float]:
    """1001 answers after RING s: the caller's 2xx (ACKed) and when 1001 answered."""
    time.sleep(RING)
    answered = time.time()
    callee.answer(call.invite)
    dialog = call.caller.final()
    assert dialog.status == 200, dialog
    return dialog, answered


def _answered(server: IpbxServer, callee: Phone) -> Timed:
    """1000 calls 1001, which rings RING s, answers, talks TALK s; 1000 hangs up."""
    call = _ring(server, callee)
    dialog, answered = _answer_after_ringing(call, callee)
    time.sleep(TALK)
    ended = time.time()
    call.caller.hang_up(dialog)
    callee.hung_up()
    call.caller.close()
    return Timed(call.started, answered, ended)


def _missed(server: IpbxServer, callee: Phone) -> None:
    """1000 calls 1001, which is busy (486): no forwarding, no mailbox, so 1000 hears it."""
    call = _ring(server, callee)
    callee.refuse(call.invite, 486)
    assert call.caller.final().status == 486
    call.caller.close()


def _abandoned(server: IpbxServer, callee: Phone) -> Timed:
    """1000 calls 1001, which rings; 1000 gives up (CANCEL) after ABANDON_AFTER s."""
    call = _ring(server, callee)
    time.sleep(ABANDON_AFTER - (time.time() - call.started))
    ended = time.time()
    call.caller.cancel()
    callee.cancelled(call.invite)
    assert call.caller.final().status == 487
    call.caller.close()
    return Timed(call.started, None, ended)


def _transferred(server: IpbxServer, callee: Phone, target: Phone) -> Timed:
    """1000 calls 1001 (answered after RING s), talks, and hands 1001 over to 1002 (a
    blind REFER, as in tests/pbx/test_transfer.py); 1002 answers, talks, hangs up."""
    call = _ring(server, callee)
    dialog, answered = _answer_after_ringing(call, callee)
    time.sleep(TALK)
    transferor = call.caller
    transferor.refer(dialog, f"<sip:{TARGET.number}@{LOOPBACK}>")
    rung = target.rings()
    target.ringing(rung)
    target.answer(rung)
    frags = transferor.until_hung_up(1)
    assert any(f.startswith(b"SIP/2.0 200") for f in frags), frags
    transferor.close()
    time.sleep(TALK)
    ended = time.time()
    target.hang_up(rung)
    callee.hung_up()
    return Timed(call.started, answered, ended)


def _through_the_group(server: IpbxServer, member: Phone) -> Timed:
    """1000 calls 500, the group `sales`: ipbx answers at once and rings its member
    1002, who answers after RING s (the call's answer by a person); they talk TALK s
    and 1000 hangs up."""
    caller = Caller(server)
    caller.dial(SALES)
    started = time.time()
    dialog = caller.final()  # ipbx's own answer: the caller hears the member ring
    assert dialog.status == 200, dialog
    invite = member.rings()
    member.ringing(invite)
    time.sleep(RING)
    answered = time.time()
    member.answer(invite)
    time.sleep(TALK)
    ended = time.time()
    caller.hang_up(dialog)
    member.hung_up()
    caller.close()
    return Timed(started, answered, ended)


def _approx(values: list[float]) -> Any:
    return pytest.approx(mean(values), abs=TOLERANCE)


def test_analytics_of_a_scripted_set_of_live_calls_equal_the_script(
    server: tuple[IpbxServer, int],
) -> None:
    ipbx, api_port = server
    callee = Phone(ipbx, CALLEE.number, CALLEE.password)
    target = Phone(ipbx, TARGET.number, TARGET.password)
    answered = _answered(ipbx, callee)
    _missed(ipbx, callee)
    abandoned = _abandoned(ipbx, callee)
    transferred = _transferred(ipbx, callee, target)
    grouped = _through_the_group(ipbx, target)
    callee.close()
    target.close()
    call_records(ipbx, count=5)  # the CDR writer has stored all five

    api = httpx.Client(
        base_url=f"http://{LOOPBACK}:{api_port}",
        headers={"Authorization": f"Bearer {make_token(ipbx.config_path, 'admin')}"},
        timeout=10,
    )
    response = api.get("/analytics")
    assert response.status_code == 200, response.text
    total = response.json()["total"]
    counts = ("offered", "internal", "inbound", "answered", "missed", "abandoned", "transferred")
    assert {k: total[k] for k in counts} == {
        "offered": 5, "internal": 5, "inbound": 0,
        "answered": 3, "missed": 1, "abandoned": 1, "transferred": 1,
    }  # fmt: skip
    talked = [answered, transferred, grouped]
    assert total["average_seconds_to_abandon"] == _approx([abandoned.ended - abandoned.started])
    assert total["average_seconds_to_abandon"] == pytest.approx(ABANDON_AFTER, abs=0.5)
    assert total["average_speed_of_answer"] == _approx(
        [(t.answered or 0) - t.started for t in talked]
    )
    assert total["average_handling_time"] == _approx([t.ended - (t.answered or 0) for t in talked])
    # Every answer came within the default 20 s: 3 of the 5 offered.
    assert total["service_level"] == pytest.approx(3 / 5)

    groups = api.get("/analytics?by=extension").json()["groups"]
    assert {n: groups[n]["offered"] for n in groups} == {
        CALLER.number: 5, CALLEE.number: 4, SALES: 1,
    }  # fmt: skip
    ext = groups[CALLEE.number]
    assert (ext["answered"], ext["missed"], ext["abandoned"], ext["transferred"]) == (2, 1, 1, 1)
    assert ext["average_speed_of_answer"] == _approx([RING, RING])

    groups = api.get("/analytics?by=group").json()["groups"]
    assert list(groups) == ["sales"]
    sales = groups["sales"]
    assert (sales["offered"], sales["answered"], sales["missed"]) == (1, 1, 0)
    assert sales["average_handling_time"] == _approx([grouped.ended - (grouped.answered or 0)])

    export = api.get("/calls.csv")
    assert export.status_code == 200 and export.headers["X-Total-Count"] == "5"
    rows = list(csv.DictReader(io.StringIO(export.text)))
    assert sorted((r["caller"], r["callee"], r["result"], r["path"]) for r in rows) == sorted(
        [
            (CALLER.number, CALLEE.number, "answered", f"extension:{CALLEE.number}"),
            (CALLER.number, CALLEE.number, "busy", f"extension:{CALLEE.number}"),
            (CALLER.number, CALLEE.number, "cancelled", f"extension:{CALLEE.number}"),
            (
                CALLER.number, CALLEE.number, "answered",
                f"extension:{CALLEE.number} transfer:{TARGET.number}",
            ),
            (CALLER.number, SALES, "answered", "group:sales"),
        ]
    )  # fmt: skip
    api.close()
