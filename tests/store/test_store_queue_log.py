"""The call queues' log in the store: batches written as the queues run, read back by a
span of time and by queue, oldest first, per tenant."""

from ipbx.store import QueueLogRecord, Store


def row(time: float, queue: str, event: str, data: str = "") -> QueueLogRecord:
    return QueueLogRecord(time, "c1", queue, "1001", event, data)


def test_the_log_is_read_back_by_time_and_queue(store: Store) -> None:
    store.save_queue_log([row(100, "sales", "ENTERQUEUE", "|+15550101|1"),
                          row(105, "support", "ENTERQUEUE", "|+15550102|1")])  # fmt: skip
    store.save_queue_log([row(105, "sales", "CONNECT", "5|c1-agent|2"), row(200, "sales", "X")])
    store.save_queue_log([])
    assert [r.event for r in store.queue_log_between(None, None)] == [
        "ENTERQUEUE", "ENTERQUEUE", "CONNECT", "X",
    ]  # fmt: skip
    assert store.queue_log_between(100, 200, "sales") == [
        row(100, "sales", "ENTERQUEUE", "|+15550101|1"),
        row(105, "sales", "CONNECT", "5|c1-agent|2"),
    ]
    assert store.queue_log_between(None, None, tenant="acme") == []
