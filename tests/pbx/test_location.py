"""The location service's write-behind: what reaches the store, and when."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.exc import OperationalError

from ipbx.pbx.location import Binding, Location
from ipbx.sip.transaction import Address
from ipbx.sip.uri import parse_uri
from ipbx.store import AsyncStore, Store

PHONE = Address("UDP", "192.0.2.7", 5062)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[AsyncStore]:
    store = Store(f"sqlite:///{tmp_path / 'ipbx.db'}")
    store.migrate()
    threaded = AsyncStore(store)
    yield threaded
    threaded.close()
    store.close()


def binding(now: float, expires: float = 3600, source: Address = PHONE, cseq: int = 1) -> Binding:
    return Binding("1000", parse_uri("sip:1000@192.0.2.7:5062"), now + expires, "c", cseq, source)


def test_new_binding_is_written_and_read_back_after_a_restart(store: AsyncStore) -> None:
    location = Location(store)
    location.replace("1000", [binding(1000.0)], 1000.0)
    assert asyncio.run(location.flush()) == 1
    restarted = Location(store)
    assert asyncio.run(restarted.load(1001.0)) == 1
    (found,) = restarted.bindings("1000", 1001.0)
    assert found.source == PHONE


def test_early_refresh_is_not_written_again(store: AsyncStore) -> None:
    location = Location(store)
    location.replace("1000", [binding(1000.0)], 1000.0)
    asyncio.run(location.flush())
    location.replace("1000", [binding(1010.0, cseq=2)], 1010.0)
    assert asyncio.run(location.flush()) == 0


def test_refresh_written_when_the_stored_expiry_would_lapse_first(store: AsyncStore) -> None:
    location = Location(store)
    location.replace("1000", [binding(1000.0, expires=600)], 1000.0)
    asyncio.run(location.flush())
    # At 1500 the stored expiry (1600) is before 1500 + 600/2: write the refresh.
    location.replace("1000", [binding(1500.0, expires=600, cseq=2)], 1500.0)
    assert asyncio.run(location.flush()) == 1
    assert asyncio.run(Location(store).load(1650.0)) == 1


def test_new_nat_mapping_is_written_at_once(store: AsyncStore) -> None:
    location = Location(store)
    location.replace("1000", [binding(1000.0)], 1000.0)
    asyncio.run(location.flush())
    moved = Address("UDP", "192.0.2.7", 40000)
    location.replace("1000", [binding(1001.0, source=moved, cseq=2)], 1001.0)
    assert asyncio.run(location.flush()) == 1
    restarted = Location(store)
    asyncio.run(restarted.load(1002.0))
    assert restarted.bindings("1000", 1002.0)[0].source == moved


def test_unregistration_is_written(store: AsyncStore) -> None:
    location = Location(store)
    location.replace("1000", [binding(1000.0)], 1000.0)
    asyncio.run(location.flush())
    location.replace("1000", [], 1001.0)
    assert asyncio.run(location.flush()) == 1
    assert asyncio.run(Location(store).load(1002.0)) == 0


class RefusingOnce(AsyncStore):
    """A store whose first write fails, as when another writer kept the lock too long."""

    def __init__(self, store: Store) -> None:
        super().__init__(store)
        self.refusals = 1

    async def run(self, work: Any, *args: Any, **kwargs: Any) -> Any:
        if self.refusals:
            self.refusals -= 1
            raise OperationalError("INSERT", {}, Exception("database is locked"))
        return await super().run(work, *args, **kwargs)


def test_bindings_not_written_for_a_locked_database_go_with_the_next_flush(
    store: AsyncStore,
) -> None:
    refusing = RefusingOnce(store.blocking)
    location = Location(refusing)
    location.replace("1000", [binding(1000.0)], 1000.0)
    with pytest.raises(OperationalError):
        asyncio.run(location.flush())
    assert asyncio.run(location.flush()) == 1
    refusing.close()
    assert asyncio.run(Location(store).load(1001.0)) == 1


def flow(now: float, reg_id: int, source: Address) -> Binding:
    """A binding of one device over one outbound flow (RFC 5626): same Contact URI."""
    return Binding("1000", parse_uri("sip:1000@10.0.0.7:5062;transport=tcp;ob"), now + 600,
                   "c", reg_id, source, instance_id="urn:uuid:1", reg_id=reg_id)  # fmt: skip


def test_a_device_with_two_flows_is_rung_over_one_and_stored_once(store: AsyncStore) -> None:
    first, second = Address("TCP", "192.0.2.7", 40001), Address("TCP", "192.0.2.7", 40002)
    location = Location(store)
    location.replace("1000", [flow(1000.0, 1, first), flow(1001.0, 2, second)], 1001.0)
    location.connected = {first, second}.__contains__
    (rung,) = location.reachable("1000", 1002.0)
    assert rung.source == second  # the latest registered of the live flows
    location.connected = {first}.__contains__
    (rung,) = location.reachable("1000", 1002.0)
    assert rung.source == first  # the other flow's connection is gone
    # The flows share their Contact URI: one row, the latest (flows end with a restart).
    assert asyncio.run(location.flush()) == 1
    restarted = Location(store)
    assert asyncio.run(restarted.load(1002.0)) == 1
    (found,) = restarted.bindings("1000", 1002.0)
    assert (found.source, found.reg_id) == (second, None)


def test_a_browsers_binding_goes_with_its_websocket_and_is_never_stored(
    store: AsyncStore,
) -> None:
    location = Location(store)
    browser = Address("WSS", "192.0.2.9", 50123)
    tab = Binding("1000", parse_uri("sip:k2@df7jal23ls0d.invalid;transport=ws"), 4600.0, "t", 1,
                  browser)  # fmt: skip
    location.replace("1000", [binding(1000.0), tab], 1000.0)
    asyncio.run(location.flush())
    assert [b.source for b in location.bindings("1000", 1001.0)] == [PHONE, browser]
    assert location.drop_connection(Address("TCP", "192.0.2.9", 50123), 1001.0) == []
    assert location.drop_connection(browser, 1001.0) == ["1000"]
    assert [b.source for b in location.bindings("1000", 1001.0)] == [PHONE]
    restarted = Location(store)
    asyncio.run(restarted.load(1002.0))
    assert [b.source for b in restarted.bindings("1000", 1002.0)] == [PHONE]
