"""bench/api.py: the pieces of the `api` benchmark part at a tiny scale, on loopback. The
webhook receiver answers a webhook POST as a receiver must (2xx, connection kept), event
counting finds what a subscriber missed, and the loads stop at their bounds. No timing is
asserted: figures come from bench/run.py on a quiet machine."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from websockets.asyncio.server import ServerConnection, serve

from bench.api import (
    CALL_EVENTS,
    Arrival,
    EventFeed,
    LoadLoop,
    WebhookReceiver,
    arrived,
    percentile,
    rest_load,
    seed_call_records,
    summarise,
)
from ipbx.store import Store


@pytest.fixture
def loop() -> Iterator[LoadLoop]:
    load_loop = LoadLoop(cpu=None)
    yield load_loop
    load_loop.close()


def event(event_id: str, kind: str, published: float) -> bytes:
    # As ipbx's Event.to_json writes it: compact separators.
    body = {"id": event_id, "type": kind, "time": published, "tenant": "default", "data": {}}
    return json.dumps(body, separators=(",", ":")).encode()


def test_receiver_answers_204_on_one_kept_alive_connection(loop: LoadLoop) -> None:
    receiver = WebhookReceiver()
    loop.run(receiver.start(), 5)
    try:
        bodies = [event(f"e{n}", "call.started", 1.0) for n in range(3)]
        with httpx.Client(timeout=5) as client:
            statuses = [
                client.post(receiver.url, content=body, headers={"X-Ipbx-Event-Id": "x"})
                for body in bodies
            ]
            statuses.append(client.get(receiver.url))
        assert [response.status_code for response in statuses] == [204] * 4
        assert [arrival.body for arrival in receiver.arrivals[:3]] == bodies
        assert receiver.requests == 4
    finally:
        loop.run(receiver.stop(), 5)


def test_a_call_is_four_events_and_what_is_missing_is_named() -> None:
    arrivals = [
        Arrival(10.010, event("a1", "call.started", 10.0)),
        Arrival(10.020, event("a2", "call.ringing", 10.0)),
        Arrival(10.030, event("a3", "call.answered", 10.0)),
        Arrival(10.040, event("a4", "call.ended", 10.0)),
        Arrival(10.050, event("a4", "call.ended", 10.0)),  # a retried delivery
        Arrival(11.010, event("b1", "call.started", 11.0)),
        Arrival(11.020, event("b2", "call.ringing", 11.0)),
        Arrival(11.030, b"not json"),
        Arrival(11.040, event("r1", "registration.changed", 11.0)),
    ]
    summary = summarise(arrivals, calls=2)
    assert summary.expected == 2 * len(CALL_EVENTS)
    assert summary.missing_by_type == {"call.answered": 1, "call.ended": 1}
    assert summary.missing == 2
    assert (summary.duplicates, summary.malformed, summary.other) == (1, 1, 1)
    assert summary.latency_ms(50) == pytest.approx(20.0)  # of 10, 10, 20, 20, 30, 40
    assert summary.latency_ms(100) == pytest.approx(40.0)
    assert not arrived(arrivals, calls=2)
    assert arrived(arrivals, calls=1)


def test_nearest_rank_percentile() -> None:
    values = [float(n) for n in range(1, 101)]
    assert percentile(values, 50) == 50.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) != percentile([], 50)  # NaN


def test_rest_load_stops_at_its_request_bound(loop: LoadLoop) -> None:
    receiver = WebhookReceiver()
    loop.run(receiver.start(), 5)
    try:
        result = loop.run(
            rest_load(receiver.url, "t", connections=3, seconds=30.0, max_requests=20), 40
        )
    finally:
        loop.run(receiver.stop(), 5)
    assert result.requests == 20
    assert dict(result.statuses) == {204: 20}
    assert result.ok == 0  # only 200 counts: the receiver sends no page


def test_event_feed_keeps_every_message(loop: LoadLoop) -> None:
    messages = [event(f"e{n}", "call.started", 1.0).decode() for n in range(5)]

    async def feed(connection: ServerConnection) -> None:
        for message in messages:
            await connection.send(message)
        await connection.close()

    async def run() -> list[Arrival]:
        async with serve(feed, "127.0.0.1", 0) as server:
            port = next(iter(server.sockets)).getsockname()[1]
            client = EventFeed()
            await client.open(f"ws://127.0.0.1:{port}/events?token=t")
            for _ in range(100):
                if len(client.arrivals) == len(messages):
                    break
                await asyncio.sleep(0.02)
            await client.close()
            return client.arrivals

    arrivals = loop.run(run(), 20)
    assert [arrival.body.decode() for arrival in arrivals] == messages


def test_seeded_call_records_are_in_the_store(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'ipbx.db'}"
    seed_call_records(url, 30, now=1_700_000_000.0, batch=7)
    store = Store(url)
    try:
        total, page = store.search_call_records("default", limit=50)
    finally:
        store.close()
    assert total == 30
    assert all(record.started < 1_700_000_000.0 for record in page)
    assert any(record.legs for record in page)
