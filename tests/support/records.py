"""The call records a running ipbx has written, read from its database as they arrive."""

from __future__ import annotations

import time

from ipbx.store import CallRecord, Store
from tests.support.server import IpbxServer


def call_records(server: IpbxServer, count: int = 1, timeout: float = 5.0) -> list[CallRecord]:
    """The server's newest call records, once `count` of them are in its database."""
    store = Store(f"sqlite:///{server.data_dir / 'ipbx.db'}")
    try:
        deadline = time.monotonic() + timeout
        while ((records := store.call_records()) and len(records) < count) or not records:
            if time.monotonic() > deadline:
                raise AssertionError(f"{len(records)} call record(s), wanted {count}")
            time.sleep(0.1)
        return records
    finally:
        store.close()
