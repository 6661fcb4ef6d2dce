"""The API's side of the store: call records searched by time, number and result; API tokens
kept as hashes; the webhook outbox as a queue per webhook and as the delivery log."""

from __future__ import annotations

import json

from ipbx.store import ApiTokenRecord, CallRecord, DeliveryRecord, Store


def call(call_id: str, caller: str, callee: str, started: float, result: str) -> CallRecord:
    answered = started + 2 if result == "answered" else None
    return CallRecord(call_id, caller, callee, started, started + 30, result, answered)


def test_call_records_search_filters_pages_and_counts(store: Store) -> None:
    store.apply_extensions([("1000", "Alice", "secret")], realm="ipbx")
    store.save_call_records(
        [
            call("c1", "1000", "1001", 100.0, "answered"),
            call("c2", "1001", "1000", 200.0, "no_answer"),
            call("c3", "1002", "1003", 300.0, "answered"),
            call("c4", "1000", "+15551234567", 400.0, "busy"),
        ]
    )
    total, page = store.search_call_records(number="1000")
    assert total == 3 and [r.call_id for r in page] == ["c4", "c2", "c1"]
    total, page = store.search_call_records(number="1000", limit=1, offset=1)
    assert total == 3 and [r.call_id for r in page] == ["c2"]
    total, page = store.search_call_records(since=200.0, until=400.0)
    assert [r.call_id for r in page] == ["c3", "c2"]
    assert store.search_call_records(result="answered")[0] == 2
    assert store.search_call_records(tenant="other")[0] == 0
    found = store.call_record("c3")
    assert found is not None and found.callee == "1003" and found.answered == 302.0
    assert store.call_record("c3", tenant="other") is None
    assert store.call_record("nope") is None


def test_api_tokens_are_found_by_key_id_with_their_tenant(store: Store) -> None:
    token = ApiTokenRecord("k1", "acme", "read", "ab" * 16, "cd" * 32, 5.0, "crm")
    store.save_api_token(token)
    assert store.api_token("k1") == token
    assert store.api_token("k2") is None


def delivery(event_id: str, webhook: str, tenant: str = "default") -> DeliveryRecord:
    return DeliveryRecord(
        event_id=event_id,
        event_type="call.started",
        webhook=webhook,
        tenant=tenant,
        payload=json.dumps({"id": event_id}),
        created=1.0,
        next_attempt=1.0,
    )


def test_outbox_is_a_queue_per_webhook_and_a_log(store: Store) -> None:
    a, b = "http://127.0.0.1:9/a", "http://127.0.0.1:9/b"
    assert store.add_deliveries([delivery("e1", a), delivery("e1", b), delivery("e2", a)]) == 3
    # The same event to the same webhook again (a flush retried) is not a second row.
    assert store.add_deliveries([delivery("e1", a), delivery("e3", a, "acme")]) == 1
    assert store.pending_deliveries() == 4
    first = store.next_delivery(a)
    assert first is not None and first.event_id == "e1" and first.attempts == 0
    store.update_delivery(
        first.id, status="pending", attempts=1, next_attempt=9.0, last_error="refused"
    )
    again = store.next_delivery(a)
    assert again is not None and again.id == first.id and again.attempts == 1
    assert again.next_attempt == 9.0 and again.last_error == "refused"
    store.update_delivery(first.id, status="delivered", attempts=2, next_attempt=None,
                          delivered_at=10.0)  # fmt: skip
    second = store.next_delivery(a)
    assert second is not None and second.event_id == "e2"
    assert store.pending_deliveries() == 3
    total, log = store.deliveries(webhook=a)
    assert total == 2 and [d.event_id for d in log] == ["e2", "e1"]
    assert log[1].status == "delivered" and log[1].delivered_at == 10.0
    assert store.deliveries(status="delivered")[0] == 1
    total, log = store.deliveries("acme")
    assert total == 1 and log[0].event_id == "e3" and log[0].tenant == "acme"
    assert store.next_delivery(a, tenant="acme") is not None
    assert store.deliveries(event_id="e1", limit=1)[0] == 2
