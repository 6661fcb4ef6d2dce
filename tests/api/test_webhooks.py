"""Webhooks: each subscribed event reaches the receiver as a signed JSON POST, in order;
with the receiver down the outbox keeps retrying with back-off, and what is pending when
ipbx stops is sent after it starts again, each event once by its id."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable

from ipbx.api.webhooks import Webhooks
from ipbx.pbx.events import EventBus
from ipbx.pbx.webhook_config import WebhookConfig
from ipbx.store import AsyncStore, Store
from tests.support.ports import free_port
from tests.support.webhook_receiver import Receiver

SECRET = "s3cret-for-the-crm-0123"


def hook(url: str, **settings: object) -> WebhookConfig:
    return WebhookConfig.model_validate(
        {"url": url, "events": ["call.*"], "secret": SECRET, **settings}
    )


async def until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        await asyncio.sleep(0.02)


def test_events_arrive_signed_and_in_order(store: Store, store_thread: AsyncStore) -> None:
    receiver = Receiver(free_port("tcp"), SECRET).start()
    bus = EventBus()

    async def scenario() -> None:
        webhooks = Webhooks(store_thread, [hook(receiver.url)], bus)
        webhooks.start()
        for kind in ("call.started", "call.ringing", "voicemail.new", "call.answered",
                     "call.ended"):  # fmt: skip
            bus.publish(kind, {"call_id": "a1", "caller": "1000", "callee": "1001"})
        await until(lambda: len(receiver.events) == 4)
        # A delivery is marked in the outbox after the receiver's answer: stopping before
        # that leaves it pending, to be sent again at the next start (at least once).
        await until(lambda: store.deliveries(status="delivered")[0] == 4)
        await webhooks.stop()
        await webhooks.close()

    try:
        asyncio.run(scenario())
    finally:
        receiver.stop()
    assert receiver.types() == ["call.started", "call.ringing", "call.answered", "call.ended"]
    assert receiver.bad_signatures == 0
    first = receiver.requests[0]
    assert first["content-type"] == "application/json"
    assert first["x-ipbx-signature"].startswith("sha256=")
    assert first["x-ipbx-event-type"] == "call.started" and first["x-ipbx-attempt"] == "1"
    total, log = store.deliveries(status="delivered")
    assert total == 4 and all(d.attempts == 1 and d.delivered_at for d in log)
    assert json.loads(log[0].payload)["type"] == "call.ended"


def test_a_receiver_that_was_down_gets_every_event_once_after_a_restart(
    store: Store, store_thread: AsyncStore
) -> None:
    port = free_port("tcp")
    receiver = Receiver(port, SECRET)
    config = hook(receiver.url, retry_initial=0.1, retry_max=0.4)
    published: list[str] = []

    async def before_restart() -> None:
        bus = EventBus()
        webhooks = Webhooks(store_thread, [config], bus)
        webhooks.start()
        published.extend(bus.publish(kind, {"call_id": "b2"}).id
                         for kind in ("call.started", "call.answered", "call.ended"))  # fmt: skip
        # Nobody listens on the port: the first event is retried with back-off (0.1,
        # 0.2, 0.4, 0.4 s ...) and the others wait behind it.
        await until(lambda: attempts(store, receiver.url) >= 4)
        await webhooks.stop()
        await webhooks.close()

    asyncio.run(before_restart())
    head = store.next_delivery(receiver.url)
    assert head is not None and head.event_id == published[0]
    assert "ConnectError" in head.last_error
    assert store.pending_deliveries() == 3
    assert store.deliveries(status="pending")[1][-1].attempts == head.attempts

    receiver.start()  # the receiver is back; ipbx starts again with the same database

    async def after_restart() -> None:
        webhooks = Webhooks(store_thread, [config], EventBus())
        webhooks.start()
        await until(lambda: store.pending_deliveries() == 0)
        await webhooks.stop()
        await webhooks.close()

    try:
        asyncio.run(after_restart())
    finally:
        receiver.stop()
    assert list(receiver.events) == published
    assert len(receiver.requests) == 3 and receiver.bad_signatures == 0
    assert [r["x-ipbx-event-id"] for r in receiver.requests] == published


def test_a_refusing_receiver_is_retried_then_given_up_on(
    store: Store, store_thread: AsyncStore
) -> None:
    receiver = Receiver(free_port("tcp"), SECRET, status=503).start()
    bus = EventBus()
    config = hook(receiver.url, retry_initial=0.05, retry_max=0.05, max_attempts=3)

    async def scenario() -> None:
        webhooks = Webhooks(store_thread, [config], bus)
        webhooks.start()
        bus.publish("call.missed", {"extension": "1001"})
        bus.publish("call.ended", {"call_id": "c3"})
        await until(lambda: store.pending_deliveries() == 1 and receiver.status == 503
                    and len(receiver.requests) >= 3)  # fmt: skip
        receiver.status = 200  # the second event goes once the first is given up on
        await until(lambda: store.pending_deliveries() == 0)
        await webhooks.stop()
        await webhooks.close()

    try:
        asyncio.run(scenario())
    finally:
        receiver.stop()
    failed = store.deliveries(status="failed")[1]
    assert len(failed) == 1 and failed[0].attempts == 3 and failed[0].last_error == "HTTP 503"
    assert failed[0].event_type == "call.missed"
    assert receiver.types() == ["call.ended"]
    tries = [
        r["x-ipbx-attempt"] for r in receiver.requests if r["x-ipbx-event-type"] == "call.missed"
    ]
    assert tries == ["1", "2", "3"]
    # The second event waited for the first to be given up on: none of its attempts
    # came before the first event's last.
    order = [r["x-ipbx-event-type"] for r in receiver.requests]
    assert order[:3] == ["call.missed"] * 3 and set(order[3:]) == {"call.ended"}


def test_only_the_webhooks_tenant_and_types_are_queued(
    store: Store, store_thread: AsyncStore
) -> None:
    bus = EventBus()
    webhooks = Webhooks(
        store_thread,
        [hook("http://127.0.0.1:9/a"), hook("http://127.0.0.1:9/b", tenant="acme",
                                            events=["voicemail.new"])],
        bus,
    )  # fmt: skip
    webhooks.subscribe()  # outside a loop: rows are written by close()
    bus.publish("call.started", {})
    bus.publish("voicemail.new", {}, tenant="acme")
    bus.publish("voicemail.new", {})
    bus.publish("call.started", {}, tenant="acme")
    asyncio.run(webhooks.close())
    assert asyncio.run(webhooks.queue_depth()) == 2
    assert [d.webhook for d in store.deliveries()[1]] == ["http://127.0.0.1:9/a"]
    assert [d.event_type for d in store.deliveries("acme")[1]] == ["voicemail.new"]


def attempts(store: Store, url: str) -> int:
    head = store.next_delivery(url)
    return 0 if head is None else head.attempts


def test_a_refused_event_is_retried_before_the_ones_behind_it(
    store: Store, store_thread: AsyncStore
) -> None:
    receiver = Receiver(free_port("tcp"), SECRET, status=503).start()
    bus = EventBus()

    async def scenario() -> None:
        webhooks = Webhooks(store_thread, [hook(receiver.url, retry_initial=0.2)], bus)
        webhooks.start()
        for kind in ("call.started", "call.ringing", "call.answered", "call.ended"):
            bus.publish(kind, {"call_id": "c3"})
        await until(lambda: len(receiver.requests) >= 1)
        receiver.status = 200  # the first event's retry is the next request
        await until(lambda: len(receiver.events) == 4)
        await webhooks.stop()
        await webhooks.close()

    try:
        asyncio.run(scenario())
    finally:
        receiver.stop()
    sent = [(r["x-ipbx-event-type"], r["x-ipbx-attempt"]) for r in receiver.requests]
    assert sent == [
        ("call.started", "1"), ("call.started", "2"), ("call.ringing", "1"),
        ("call.answered", "1"), ("call.ended", "1"),
    ]  # fmt: skip
