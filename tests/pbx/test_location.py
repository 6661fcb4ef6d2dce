"""The location service's write-behind: what reaches the store, and when."""

from __future__ import annotations

from pathlib import Path

import pytest

from ipbx.pbx.location import Binding, Location
from ipbx.sip.transaction import Address
from ipbx.sip.uri import parse_uri
from ipbx.store.store import Store

PHONE = Address("UDP", "192.0.2.7", 5062)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    store = Store(f"sqlite:///{tmp_path / 'ipbx.db'}")
    store.migrate()
    return store


def binding(now: float, expires: float = 3600, source: Address = PHONE, cseq: int = 1) -> Binding:
    return Binding("1000", parse_uri("sip:1000@192.0.2.7:5062"), now + expires, "c", cseq, source)


def test_new_binding_is_written_and_read_back_after_a_restart(store: Store) -> None:
    location = Location(store)
    location.replace("1000", [binding(1000.0)], 1000.0)
    assert location.flush() == 1
    restarted = Location(store)
    assert restarted.load(1001.0) == 1
    (found,) = restarted.bindings("1000", 1001.0)
    assert found.source == PHONE


def test_early_refresh_is_not_written_again(store: Store) -> None:
    location = Location(store)
    location.replace("1000", [binding(1000.0)], 1000.0)
    location.flush()
    location.replace("1000", [binding(1010.0, cseq=2)], 1010.0)
    assert location.flush() == 0


def test_refresh_written_when_the_stored_expiry_would_lapse_first(store: Store) -> None:
    location = Location(store)
    location.replace("1000", [binding(1000.0, expires=600)], 1000.0)
    location.flush()
    # At 1500 the stored expiry (1600) is before 1500 + 600/2: write the refresh.
    location.replace("1000", [binding(1500.0, expires=600, cseq=2)], 1500.0)
    assert location.flush() == 1
    assert Location(store).load(1650.0) == 1


def test_new_nat_mapping_is_written_at_once(store: Store) -> None:
    location = Location(store)
    location.replace("1000", [binding(1000.0)], 1000.0)
    location.flush()
    moved = Address("UDP", "192.0.2.7", 40000)
    location.replace("1000", [binding(1001.0, source=moved, cseq=2)], 1001.0)
    assert location.flush() == 1
    restarted = Location(store)
    restarted.load(1002.0)
    assert restarted.bindings("1000", 1002.0)[0].source == moved


def test_unregistration_is_written(store: Store) -> None:
    location = Location(store)
    location.replace("1000", [binding(1000.0)], 1000.0)
    location.flush()
    location.replace("1000", [], 1001.0)
    assert location.flush() == 1
    assert Location(store).load(1002.0) == 0
