"""The read endpoints of the REST API, as a CRM or a dashboard uses them: tokens and
scopes, extensions with their registrations, live calls, call records (search, CSV, one
by id), trunks and metrics, and a tenant seeing only its own data."""

from __future__ import annotations

import csv
import io
import time

import pytest

from ipbx.pbx.call.model import Call
from ipbx.pbx.location import Binding
from ipbx.sip.transaction import Address
from ipbx.sip.uri import parse_uri
from ipbx.store import CallRecord, LegRecord
from tests.support.apiclient import Api


def register(api: Api, extension: str, port: int = 5070) -> None:
    now = time.time()
    binding = Binding(
        aor=extension,
        uri=parse_uri(f"sip:{extension}@127.0.0.1:{port}"),
        expires_at=now + 600,
        call_id=f"reg-{extension}",
        cseq=1,
        source=Address("udp", "127.0.0.1", port),
        user_agent="baresip",
    )
    api.pbx.location.replace(extension, [binding], now)


def save_calls(api: Api) -> None:
    leg = LegRecord("caller", "127.0.0.1:4000", "PCMU", 500, 5, 3.2, 40.0, 4.3)
    api.store.save_call_records(
        [
            CallRecord(
                "c-1",
                "1000",
                "1001",
                1000.0,
                1030.0,
                "answered",
                1005.0,
                legs=(leg,),
                path="extension:1001",
            ),
            CallRecord(
                "c-2",
                "1001",
                "1000",
                2000.0,
                2020.0,
                "no_answer",
                path="extension:1000,voicemail:1000",
            ),
            CallRecord("c-3", "+15551234567", "1000", 3000.0, 3060.0, "answered", 3010.0),
        ]
    )


PROTECTED = ["/extensions", "/registrations", "/calls", "/calls/active", "/calls.csv",
             "/calls/c-1", "/trunks", "/metrics", "/webhooks/deliveries"]  # fmt: skip


@pytest.mark.parametrize("path", PROTECTED)
def test_every_endpoint_wants_a_valid_token(api: Api, path: str) -> None:
    missing = api.client.get(path)
    assert missing.status_code == 401
    assert missing.headers["WWW-Authenticate"] == "Bearer"
    assert "Bearer" in missing.json()["detail"]
    wrong = api.client.get(path, headers={"Authorization": "Bearer ipbx_000000000000_" + "0" * 48})
    assert wrong.status_code == 401 and "invalid" in wrong.json()["detail"]
    tampered = api.admin[:-1] + ("0" if api.admin[-1] != "0" else "1")
    assert api.client.get(path, headers=api.headers(tampered)).status_code == 401
    assert api.client.get(path, headers=api.headers()).status_code in (200, 404)


def test_the_openapi_document_and_docs_are_public(api: Api) -> None:
    document = api.client.get("/openapi.json")
    assert document.status_code == 200
    paths = document.json()["paths"]
    assert {"/extensions", "/calls", "/calls/{call_id}", "/metrics"} <= set(paths)
    assert document.json()["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    docs = api.client.get("/docs")
    assert docs.status_code == 200 and "openapi.json" in docs.text


def test_the_read_scope_cannot_see_the_delivery_log(api: Api) -> None:
    assert api.client.get("/calls", headers=api.headers(api.reader)).status_code == 200
    refused = api.client.get("/webhooks/deliveries", headers=api.headers(api.reader))
    assert refused.status_code == 403
    assert refused.json() == {"detail": "this needs a token with the admin scope"}
    assert api.client.get("/webhooks/deliveries", headers=api.headers()).status_code == 200


def test_extensions_show_who_is_registered(api: Api) -> None:
    register(api, "1001")
    page = api.client.get("/extensions", headers=api.headers()).json()
    assert page["total"] == 2
    assert page["items"] == [
        {"number": "1000", "name": "Alice", "registered": False, "contacts": 0},
        {"number": "1001", "name": "Bob", "registered": True, "contacts": 1},
    ]
    only = api.client.get("/extensions?registered=true", headers=api.headers()).json()
    assert [e["number"] for e in only["items"]] == ["1001"]
    regs = api.client.get("/registrations?extension=1001", headers=api.headers()).json()
    assert regs["total"] == 1
    reg = regs["items"][0]
    assert reg["contact"] == "sip:1001@127.0.0.1:5070" and reg["user_agent"] == "baresip"
    assert (reg["transport"], reg["host"], reg["port"], reg["reachable"]) == (
        "udp", "127.0.0.1", 5070, True)  # fmt: skip


def test_an_active_call_a_menu_holds_is_answered_by_ipbx_and_by_no_person(api: Api) -> None:
    in_menu = Call("c3", from_number="1002", to_number="500", started=150.0, answered=150.5)
    api.pbx.calls.calls["c3"] = in_menu
    page = api.client.get("/calls/active", headers=api.headers()).json()
    api.pbx.calls.calls.clear()
    [item] = page["items"]
    assert (item["answered"], item["person_answered"]) == (150.5, None)


def test_active_calls_come_from_the_calls_in_progress(api: Api) -> None:
    ringing = Call("c1", from_number="1000", to_number="1001", started=100.0)
    talking = Call("c2", from_number="+15551234567", to_number="1000", started=50.0)
    talking.answered = talking.person_answered = 55.0
    api.pbx.calls.calls.update({"c1": ringing, "c2": talking})
    page = api.client.get("/calls/active", headers=api.headers()).json()
    assert page["total"] == 2
    assert page["items"] == [
        {"call_id": talking.uid, "caller": "+15551234567", "callee": "1000", "started": 50.0,
         "answered": 55.0, "person_answered": 55.0},
        {"call_id": ringing.uid, "caller": "1000", "callee": "1001", "started": 100.0,
         "answered": None, "person_answered": None},
    ]  # fmt: skip
    mine = api.client.get("/calls/active?number=1001", headers=api.headers()).json()
    assert [c["call_id"] for c in mine["items"]] == [ringing.uid]
    metrics = api.client.get("/metrics", headers=api.headers())
    assert "ipbx_active_calls 2.0" in metrics.text
    api.pbx.calls.calls.clear()


def test_call_records_search_page_and_detail(api: Api) -> None:
    save_calls(api)
    page = api.client.get("/calls", headers=api.headers()).json()
    assert page["total"] == 3 and [c["call_id"] for c in page["items"]] == ["c-3", "c-2", "c-1"]
    first = page["items"][2]
    assert first["duration"] == 25.0 and first["path"] == ["extension:1001"]
    assert first["legs"][0]["loss_percent"] == pytest.approx(0.990, abs=1e-3)
    assert first["legs"][0]["mos"] == 4.3
    query = "/calls?number=1000&result=answered&limit=1&offset=1"
    page = api.client.get(query, headers=api.headers()).json()
    assert (page["total"], page["limit"], page["offset"]) == (2, 1, 1)
    assert [c["call_id"] for c in page["items"]] == ["c-1"]
    window = api.client.get("/calls?from=1500&to=3000", headers=api.headers()).json()
    assert [c["call_id"] for c in window["items"]] == ["c-2"]
    one = api.client.get("/calls/c-2", headers=api.headers()).json()
    assert one["result"] == "no_answer" and one["duration"] == 0
    assert one["path"] == ["extension:1000", "voicemail:1000"]
    missing = api.client.get("/calls/nope", headers=api.headers())
    assert missing.status_code == 404 and missing.json() == {"detail": "no call nope"}


def test_call_records_export_as_csv(api: Api) -> None:
    save_calls(api)
    for path in ("/calls.csv?number=1000", "/calls?format=csv&number=1000"):
        response = api.client.get(path, headers=api.headers())
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/csv")
        assert response.headers["X-Total-Count"] == "3"
        rows = list(csv.DictReader(io.StringIO(response.text)))
        assert [r["call_id"] for r in rows] == ["c-3", "c-2", "c-1"]
        assert rows[2]["started"] == "1970-01-01T00:16:40+00:00"
        assert rows[2]["duration"] == "25" and rows[1]["answered"] == ""
        assert rows[1]["path"] == "extension:1000 voicemail:1000"


def test_bad_parameters_get_4xx_naming_the_field(api: Api) -> None:
    for query, field in [("limit=0", "limit"), ("limit=abc", "limit"), ("offset=-1", "offset"),
                         ("from=soon", "from"), ("result=maybe", "result"),
                         ("number=12a", "number"), ("format=xml", "format")]:  # fmt: skip
        response = api.client.get(f"/calls?{query}", headers=api.headers())
        assert response.status_code == 422, query
        assert response.json()["detail"][0]["loc"] == ["query", field]


def test_trunks_show_their_state(api: Api) -> None:
    page = api.client.get("/trunks", headers=api.headers()).json()
    assert page["total"] == 1
    trunk = page["items"][0]
    assert trunk["name"] == "provider" and trunk["channels"] == 0


def test_metrics_are_prometheus_text(api: Api) -> None:
    register(api, "1000", 5070)
    register(api, "1001", 5071)
    api.pbx.events.publish("call.started", {"call_id": "x"})
    response = api.client.get("/metrics", headers=api.headers(api.reader))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert "# TYPE ipbx_active_calls gauge" in lines
    assert "ipbx_active_calls 0.0" in lines
    assert "ipbx_registrations 2.0" in lines
    assert "ipbx_webhook_queue_depth 0.0" in lines
    assert "ipbx_events_published_total 1.0" in lines


def test_a_tenant_sees_only_its_own_data(api: Api) -> None:
    save_calls(api)
    register(api, "1000")
    other = api.headers(api.other_tenant)
    for path in ("/calls", "/extensions", "/registrations", "/calls/active", "/trunks"):
        page = api.client.get(path, headers=other).json()
        assert page["total"] == 0 and page["items"] == [], path
    assert api.client.get("/calls/c-1", headers=other).status_code == 404
