"""The store as the event loop reaches it: work runs on one thread of its own, in the
order it was handed over, and runs to its end even when its awaiting task is cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import threading

import pytest
from sqlalchemy.exc import IntegrityError

from ipbx.store import AsyncStore, CallRecord, Store


def _record(call_id: str, started: float) -> CallRecord:
    return CallRecord(call_id, "1000", "1001", started, started + 30, "answered", started + 2)


def test_work_runs_on_one_thread_off_the_loop_in_the_order_handed_over(store: Store) -> None:
    threaded = AsyncStore(store)
    threads: set[int] = set()

    def save(store: Store, record: CallRecord) -> str:
        threads.add(threading.get_ident())
        store.save_call_records([record])
        return record.call_id

    async def scenario() -> list[str]:
        records = [_record(f"c{n}", 1000.0) for n in range(20)]
        return await asyncio.gather(*(threaded.run(save, record) for record in records))

    try:
        assert asyncio.run(scenario()) == [f"c{n}" for n in range(20)]
    finally:
        threaded.close()
    assert len(threads) == 1 and threading.get_ident() not in threads
    # Same start time: the newest first is the last written.
    assert [r.call_id for r in store.call_records()] == [f"c{n}" for n in reversed(range(20))]


def test_work_handed_over_is_done_when_the_task_awaiting_it_is_cancelled(store: Store) -> None:
    threaded = AsyncStore(store)
    busy, release = threading.Event(), threading.Event()

    def hold(_store: Store) -> None:
        busy.set()
        release.wait(5)

    async def scenario() -> None:
        holding = asyncio.create_task(threaded.run(hold))
        writing = asyncio.create_task(threaded.run(Store.save_call_records, [_record("a", 1.0)]))
        await asyncio.to_thread(busy.wait, 5)
        writing.cancel()  # while its work waits behind `hold`
        with contextlib.suppress(asyncio.CancelledError):
            await writing
        release.set()
        await holding

    asyncio.run(scenario())
    threaded.close()  # waits for the work handed over
    assert store.call_record("a") is not None


def test_a_failure_reaches_the_task_that_awaits_the_work(store: Store) -> None:
    threaded = AsyncStore(store)

    async def scenario() -> None:
        await threaded.run(Store.save_call_records, [_record("b", 1.0)])
        await threaded.run(Store.save_call_records, [_record("b", 2.0)])  # same call id

    try:
        with pytest.raises(IntegrityError):
            asyncio.run(scenario())
    finally:
        threaded.close()
