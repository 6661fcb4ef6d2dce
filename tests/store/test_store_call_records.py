"""Call detail records round-trip through the store with their legs, newest first."""

import pytest
from sqlalchemy.exc import IntegrityError

from ipbx.store import CallRecord, LegRecord, Store


def _record(call_id: str, started: float, **changes: object) -> CallRecord:
    fields: dict[str, object] = {
        "call_id": call_id,
        "caller": "1000",
        "callee": "1001",
        "started": started,
        "answered": started + 2,
        "ended": started + 30,
        "result": "answered",
        "legs": (
            LegRecord("caller", "udp:127.0.0.1:5062", "PCMU", 1450, 50, 12.5, 40.0, 3.9),
            LegRecord("callee", "udp:127.0.0.1:5064", "PCMU", 1500, 0, 1.0),
        ),
    }
    fields.update(changes)
    return CallRecord(**fields)  # type: ignore[arg-type]


def test_call_records_come_back_newest_first_with_their_legs(store: Store) -> None:
    first = _record(
        "a1", 1000.0, digits="123#", recording="recordings/a1.wav", path="ivr:main,group:x"
    )
    second = _record("b2", 2000.0, answered=None, result="no_answer", legs=())
    store.save_call_records([first, second])
    assert store.call_records() == [second, first]
    assert first.legs[0].loss_percent == pytest.approx(50 / 1500 * 100)


def test_a_call_id_is_recorded_once_and_a_failed_batch_writes_nothing(store: Store) -> None:
    store.save_call_records([_record("a1", 1000.0)])
    with pytest.raises(IntegrityError):
        store.save_call_records([_record("c3", 3000.0), _record("a1", 4000.0)])
    assert [r.call_id for r in store.call_records()] == ["a1"]


def test_limit_keeps_the_newest(store: Store) -> None:
    store.save_call_records([_record(f"x{i}", float(i)) for i in range(5)])
    assert [r.call_id for r in store.call_records(limit=2)] == ["x4", "x3"]
