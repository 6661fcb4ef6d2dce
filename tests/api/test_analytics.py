"""Analytics over a scripted day of calls: the API's figures equal the ones worked out
here by hand from the script."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ipbx.store import CallRecord, LegRecord
from tests.support.apiclient import Api

NOON = datetime(2026, 11, 27, 12, 0, tzinfo=UTC).timestamp()


def _call(call_id: str, start: float, **fields: object) -> CallRecord:
    values: dict[str, object] = {
        "call_id": call_id,
        "caller": "+15550199",
        "callee": "1001",
        "started": NOON + start,
        "ended": NOON + start + 60,
        "result": "answered",
        "direction": "inbound",
    }
    values.update(fields)
    if values["result"] == "answered":
        # A phone answered the caller's own INVITE: the person's answer is the answer.
        values.setdefault("person_answered", values.get("answered"))
    return CallRecord(**values)  # type: ignore[arg-type]


def _mos(value: float) -> tuple[LegRecord, ...]:
    return (LegRecord("caller", "udp:x", "PCMU", 100, 0, 1.0, None, value),)


# The script: what each call did.
SCRIPT = [
    # answered after 4 s, talked 60 s
    _call("answered", 0, answered=NOON + 4, ended=NOON + 64, legs=_mos(4.4)),
    # rang 20 s, nobody answered
    _call("missed", 600, result="no_answer", ended=NOON + 620),
    # the caller gave up after 5 s of ringing
    _call("abandoned", 1200, result="cancelled", ended=NOON + 1205),
    # answered after 10 s, transferred, 120 s in all after the answer; an internal call
    _call(
        "transferred",
        3600,
        caller="1000",
        answered=NOON + 3610,
        ended=NOON + 3730,
        direction="internal",
        path="extension:1001,transfer:1002",
        legs=_mos(4.0),
    ),
]


def test_the_figures_of_a_scripted_day_equal_the_hand_computed_ones(api: Api) -> None:
    api.store.save_call_records(SCRIPT)
    response = api.client.get(
        "/analytics?by=hour&service_level_seconds=5", headers=api.headers(api.reader)
    )
    assert response.status_code == 200, response.text
    body = response.json()
    total = body["total"]
    assert {k: total[k] for k in ("offered", "inbound", "outbound", "internal")} == {
        "offered": 4, "inbound": 3, "outbound": 0, "internal": 1,
    }  # fmt: skip
    assert (total["answered"], total["missed"], total["abandoned"], total["transferred"]) == (
        2, 1, 1, 1,
    )  # fmt: skip
    assert total["average_seconds_to_abandon"] == pytest.approx(5.0)
    assert total["average_speed_of_answer"] == pytest.approx((4 + 10) / 2)
    assert total["average_handling_time"] == pytest.approx((60 + 120) / 2)
    # Within 5 s: only the call answered after 4 s, of the 4 offered.
    assert total["service_level"] == pytest.approx(1 / 4)
    assert total["busiest_hour"] == 12  # three calls started between 12:00 and 13:00
    assert total["average_mos"] == pytest.approx((4.4 + 4.0) / 2)
    assert sorted(body["groups"]) == ["2026-11-27T12", "2026-11-27T13"]
    assert body["groups"]["2026-11-27T12"]["offered"] == 3
    assert body["groups"]["2026-11-27T13"]["transferred"] == 1


def test_analytics_by_extension_and_within_a_time_range(api: Api) -> None:
    api.store.save_call_records(SCRIPT)
    query = f"/analytics?by=extension&from={NOON + 500}&to={NOON + 3600}"
    body = api.client.get(query, headers=api.headers(api.reader)).json()
    assert body["total"]["offered"] == 2  # missed and abandoned
    assert set(body["groups"]) == {"+15550199", "1001"}
    assert body["groups"]["1001"]["abandoned"] == 1


def test_analytics_refuse_a_bad_parameter_naming_it(api: Api) -> None:
    response = api.client.get("/analytics?by=week", headers=api.headers(api.reader))
    assert response.status_code == 422 and "by" in response.text
    response = api.client.get(
        "/analytics?service_level_seconds=-1", headers=api.headers(api.reader)
    )
    assert response.status_code == 422 and "service_level_seconds" in response.text
    assert api.client.get("/analytics").status_code == 401


# Calls through ring groups, as the router writes their paths. ipbx answers a group's
# caller at once (ringback); the call is answered when a member takes it.
GROUP_SCRIPT = [
    # a member of sales took it at 1 s: 30 s after that answer
    _call(
        "sales-1",
        0,
        answered=NOON,
        person_answered=NOON + 1,
        ended=NOON + 31,
        path="group:sales,extension:1001",
    ),
    # nobody in sales answered; its fallback, support, did: answered at 2 s, 40 s after
    _call(
        "sales-support",
        100,
        answered=NOON + 100,
        person_answered=NOON + 102,
        ended=NOON + 142,
        path="group:sales,group:support,extension:1002",
    ),
    # support twice in the path (a menu sent the caller back): counted once for it
    _call(
        "support-twice",
        200,
        answered=NOON + 200,
        person_answered=NOON + 203,
        ended=NOON + 213,
        path="ivr:main,group:support,ivr:main,group:support",
    ),
    # no group at all: in no group's figures
    _call("direct", 300, result="no_answer", ended=NOON + 320, path="extension:1001"),
]


def test_analytics_by_ring_group_count_a_call_for_each_group_it_went_through(api: Api) -> None:
    api.store.save_call_records(GROUP_SCRIPT)
    body = api.client.get("/analytics?by=group", headers=api.headers(api.reader)).json()
    assert body["total"]["offered"] == 4
    assert sorted(body["groups"]) == ["sales", "support"]
    sales, support = body["groups"]["sales"], body["groups"]["support"]
    assert (sales["offered"], sales["answered"], sales["missed"]) == (2, 2, 0)
    assert sales["average_speed_of_answer"] == pytest.approx((1 + 2) / 2)
    assert sales["average_handling_time"] == pytest.approx((30 + 40) / 2)
    assert (support["offered"], support["answered"]) == (2, 2)
    assert support["average_speed_of_answer"] == pytest.approx((2 + 3) / 2)
    assert support["average_handling_time"] == pytest.approx((40 + 10) / 2)


def test_a_call_is_transferred_by_a_transfer_step_not_by_a_name_containing_it(api: Api) -> None:
    api.store.save_call_records(
        [
            _call("desk", 0, answered=NOON + 1, path="group:transfer-desk,extension:1001"),
            _call("menu", 100, answered=NOON + 101, path="ivr:transfers,extension:1002"),
            _call("blind", 200, answered=NOON + 201, path="extension:1001,transfer:1002"),
            _call("attended", 300, answered=NOON + 301, path="extension:1003,transfer"),
        ]
    )
    body = api.client.get("/analytics", headers=api.headers(api.reader)).json()
    assert (body["total"]["answered"], body["total"]["transferred"]) == (4, 2)


# Calls no person answered, though ipbx answered most of them itself (answered is its
# answer; person_answered stays None).
UNANSWERED_SCRIPT = [
    # a phone of the group took it after 8 s of the group's ringback
    _call(
        "taken",
        0,
        answered=NOON,
        person_answered=NOON + 8,
        ended=NOON + 68,
        path="ivr:main,group:sales",
    ),
    # the caller listened to the menu for 12 s and hung up
    _call("menu", 100, answered=NOON + 100, ended=NOON + 112, result="menu", path="ivr:main"),
    # left a message after the phone rang 20 s
    _call(
        "mailbox",
        200,
        answered=NOON + 220,
        ended=NOON + 250,
        result="voicemail",
        path="extension:1001,voicemail:1001",
    ),
    # hung up after 6 s of the group's ringback
    _call(
        "ringback", 300, answered=NOON + 300, ended=NOON + 306, result="group", path="group:sales"
    ),
    # a caller on the blacklist heard its message
    _call(
        "blocked", 400, answered=NOON + 400, ended=NOON + 403, result="blocked", path="blacklist"
    ),
    # 1001 dialled *97, its mailbox menu: a service of ipbx, offered to nobody
    _call(
        "mailbox-menu",
        500,
        caller="1001",
        callee="*97",
        answered=NOON + 500,
        ended=NOON + 530,
        result="service",
        path="feature:*97",
        direction="internal",
    ),
]


def test_a_call_is_answered_when_a_person_answers_not_when_ipbx_does(api: Api) -> None:
    """A menu, voicemail or a group's ringback answering the caller is no answer: speed
    of answer and service level go by the person's answer, and such calls are missed
    (a menu, a mailbox) or abandoned (the group's ringback)."""
    api.store.save_call_records(UNANSWERED_SCRIPT)
    response = api.client.get("/analytics?service_level_seconds=5", headers=api.headers(api.reader))
    total = response.json()["total"]
    assert {k: total[k] for k in ("offered", "answered", "missed", "abandoned", "blocked")} == {
        "offered": 5, "answered": 1, "missed": 2, "abandoned": 1, "blocked": 1,
    }  # fmt: skip
    assert (total["ended_in_menu"], total["ended_in_voicemail"]) == (1, 1)
    assert total["average_speed_of_answer"] == pytest.approx(8.0)
    assert total["average_handling_time"] == pytest.approx(60.0)
    assert total["average_seconds_to_abandon"] == pytest.approx(6.0)
    assert total["service_level"] == 0.0  # the only answer took 8 s
    records = api.client.get("/calls?result=menu", headers=api.headers(api.reader)).json()
    [menu] = records["items"]
    assert (menu["call_id"], menu["person_answered"]) == ("menu", None)
    assert menu["answered"] == pytest.approx(NOON + 100)
