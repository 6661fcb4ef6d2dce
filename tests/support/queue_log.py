"""The call queues' log as ipbx keeps it in its database, read back by the tests."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ipbx.store import Store


@dataclass(frozen=True)
class Row:
    """A row of the queue log, at the time of the event (to the microsecond)."""

    at: float
    call_id: str
    queue: str
    agent: str
    event: str


def queue_log_rows(
    data_dir: Path, queue: str, ready: Callable[[list[Row]], bool] = bool, timeout: float = 5.0
) -> list[Row]:
    """The queue's log in the database of the ipbx whose DATA_DIR is `data_dir`, once
    `ready` says it holds what the test waits for (ipbx writes it to its database a
    moment after the events)."""
    store = Store(f"sqlite:///{data_dir / 'ipbx.db'}")
    deadline = time.monotonic() + timeout
    try:
        while True:
            records = store.queue_log_between(None, None, queue)
            rows = [Row(r.time, r.call_id, r.queue, r.agent, r.event) for r in records]
            if ready(rows) or time.monotonic() > deadline:
                return rows
            time.sleep(0.05)
    finally:
        store.close()
