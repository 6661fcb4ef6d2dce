"""`AsyncStore`: the store as code on the event loop uses it.

A `Store` call blocks until the database answers: well under a millisecond as a rule,
but up to SQLite's busy_timeout (5 s) while another process holds the write lock
(`ipbx apply`, a second node, a backup), and a network round trip every statement with
PostgreSQL. The event loop also relays RTP and runs the SIP timers, so it never waits
for the database itself: it hands the work to the store's thread and awaits the answer
while media and signalling go on.

One thread, so work runs in the order it was handed over: bindings and call records are
written in the order they were taken, and a read sees every write handed over before
it. Work once handed over runs to its end even when the task awaiting it is cancelled:
a server stopping in the middle of a write-behind still writes what it had taken.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Concatenate, ParamSpec, TypeVar

from ipbx.store.store import Store

P = ParamSpec("P")
T = TypeVar("T")


class AsyncStore:
    """`await store.run(Store.save_call_records, records)` runs
    `save_call_records(records)` on the store's thread. `blocking` is the Store itself,
    for code that may block: start-up before the loop serves, tools, and threads other
    than the loop's (the API's plain `def` routes)."""

    def __init__(self, store: Store) -> None:
        self.blocking = store
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ipbx-store")

    async def run(
        self, work: Callable[Concatenate[Store, P], T], *args: P.args, **kwargs: P.kwargs
    ) -> T:
        """`work(store, *args, **kwargs)` on the store's thread, after all work handed
        over before it; its result or its exception."""
        call = functools.partial(work, self.blocking, *args, **kwargs)
        done = asyncio.get_running_loop().run_in_executor(self._thread, call)
        return await asyncio.shield(done)

    def close(self) -> None:
        """Wait for the work handed over, then stop the thread (the Store stays open)."""
        self._thread.shutdown(wait=True)
