"""The in-process event bus: every subscriber gets every event, in order, and one that
fails does not stop the others or the publisher."""

from __future__ import annotations

import json
import logging

import pytest

from ipbx.pbx.events import Event, EventBus, type_matches


def test_subscribers_get_events_in_order_with_id_time_and_tenant() -> None:
    bus = EventBus(clock=lambda: 1700000000.5)
    seen: list[Event] = []
    bus.subscribe(seen.append)
    started = bus.publish("call.started", {"call_id": "a1", "caller": "1000", "callee": "1001"})
    ended = bus.publish("call.ended", {"call_id": "a1", "duration": 3.5}, tenant="acme")
    assert seen == [started, ended]
    assert started.time == 1700000000.5 and started.tenant == "default"
    assert ended.tenant == "acme"
    assert len(started.id) == 32 and started.id != ended.id
    assert json.loads(ended.to_json()) == {
        "id": ended.id,
        "type": "call.ended",
        "time": 1700000000.5,
        "tenant": "acme",
        "data": {"call_id": "a1", "duration": 3.5},
    }


def test_a_failing_subscriber_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = EventBus()
    seen: list[str] = []

    def broken(event: Event) -> None:
        raise RuntimeError("subscriber bug")

    bus.subscribe(broken)
    bus.subscribe(lambda event: seen.append(event.type))
    with caplog.at_level(logging.ERROR, "ipbx.events"):
        event = bus.publish("call.missed", {"extension": "1001"})
    assert seen == ["call.missed"]
    assert event.type == "call.missed"
    assert "subscriber bug" in caplog.text


def test_unsubscribe_stops_delivery_and_is_safe_inside_a_callback() -> None:
    bus = EventBus()
    seen: list[str] = []
    unsubscribe = bus.subscribe(lambda event: (seen.append(event.type), unsubscribe()))
    bus.publish("call.started")
    bus.publish("call.ended")
    unsubscribe()
    assert seen == ["call.started"]
    assert bus.subscribers == 0


def test_bad_types_and_data_are_the_publishers_mistake() -> None:
    bus = EventBus()
    with pytest.raises(ValueError, match="event type"):
        bus.publish("Call Started")
    with pytest.raises(TypeError):
        bus.publish("call.started", {"when": object()})


def test_type_patterns_and_extension_filter() -> None:
    assert type_matches(["call.*"], "call.answered")
    assert not type_matches(["call.*"], "voicemail.new")
    assert type_matches(["voicemail.new", "*"], "registration.changed")
    event = Event("call.ringing", {"caller": "+15551234567", "extension": "1001"})
    assert event.involves("1001") and event.involves("+15551234567")
    assert not event.involves("1002")
