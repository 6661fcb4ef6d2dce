"""The live event feed (WebSocket /events) and the webhook delivery log, through the API."""

from __future__ import annotations

import json

import pytest
from starlette.websockets import WebSocketDisconnect

from ipbx.store import DeliveryRecord
from tests.support.apiclient import Api


def test_the_feed_sends_matching_events_as_json(api: Api) -> None:
    path = f"/events?token={api.reader}&type=call.*&extension=1001"
    # The PBX's own subscribers (busy lamp field, presence) are there before and after.
    others = api.pbx.events.subscribers
    with api.client.websocket_connect(path) as feed:
        api.pbx.events.publish("call.started", {"call_id": "x", "caller": "1000", "callee": "1002"})
        api.pbx.events.publish("voicemail.new", {"extension": "1001", "caller": "1000"})
        wanted = api.pbx.events.publish(
            "call.ringing",
            {"call_id": "y", "caller": "1000", "callee": "1001", "extension": "1001"},
        )
        api.pbx.events.publish("call.answered", {"call_id": "z", "callee": "1001"}, tenant="acme")
        last = api.pbx.events.publish("call.ended", {"call_id": "y", "callee": "1001"})
        assert feed.receive_json() == wanted.as_dict()
        assert feed.receive_json()["id"] == last.id
    assert api.pbx.events.subscribers == others  # unsubscribed when the client went away


def test_the_feed_takes_the_token_in_the_authorization_header(api: Api) -> None:
    with api.client.websocket_connect("/events", headers=api.headers(api.other_tenant)) as feed:
        api.pbx.events.publish("call.started", {"call_id": "d"})
        event = api.pbx.events.publish("call.started", {"call_id": "a"}, tenant="acme")
        assert json.loads(feed.receive_text())["id"] == event.id


@pytest.mark.parametrize(
    ("query", "code"),
    [("", 4401), ("?token=ipbx_nope", 4401), ("?tenant=acme&token={reader}", 4403)],
)
def test_the_feed_refuses_bad_tokens_and_other_tenants(api: Api, query: str, code: int) -> None:
    path = "/events" + query.format(reader=api.reader)
    with api.client.websocket_connect(path) as feed, pytest.raises(WebSocketDisconnect) as closed:
        feed.receive_text()
    assert closed.value.code == code


def test_the_delivery_log_pages_and_filters_by_status_for_the_tenant(api: Api) -> None:
    rows = [
        DeliveryRecord(f"e{i}", "call.ended", "http://127.0.0.1:9/h", tenant, json.dumps({"n": i}),
                       created=float(i), next_attempt=float(i))
        for i, tenant in enumerate(["default", "default", "acme"])
    ]  # fmt: skip
    api.store.add_deliveries(rows)
    first = api.store.deliveries(event_id="e0")[1][0]
    api.store.update_delivery(first.id, status="delivered", attempts=1, next_attempt=None,
                              delivered_at=5.0)  # fmt: skip
    page = api.client.get("/webhooks/deliveries?limit=1", headers=api.headers()).json()
    assert page["total"] == 2 and page["items"][0]["event_id"] == "e1"
    assert page["items"][0]["payload"] == {"n": 1} and page["items"][0]["status"] == "pending"
    done = api.client.get("/webhooks/deliveries?status=delivered", headers=api.headers()).json()
    assert [d["event_id"] for d in done["items"]] == ["e0"]
    assert done["items"][0]["delivered_at"] == 5.0
    theirs = api.client.get("/webhooks/deliveries", headers=api.headers(api.other_tenant)).json()
    assert [d["event_id"] for d in theirs["items"]] == ["e2"]
    metrics = api.client.get("/metrics", headers=api.headers()).text
    assert "ipbx_webhook_queue_depth 2.0" in metrics.splitlines()
