"""The call queues' log in the store: one row per queue event (Asterisk's queue_log),
written in batches as the queues run and read by time for the analytics and the export."""

from collections.abc import Sequence

from sqlalchemy import insert, select

from ipbx.store.database import Database
from ipbx.store.records import DEFAULT_TENANT, QueueLogRecord
from ipbx.store.schema import queue_log, tenants

_INSERT_ROWS = insert(queue_log)


class QueueLogRows(Database):
    """The queue events of each tenant, in the order they happened."""

    def save_queue_log(
        self, records: Sequence[QueueLogRecord], tenant: str = DEFAULT_TENANT
    ) -> None:
        """Write queue events, in one transaction: the PBX hands them over in batches."""
        if not records:
            return
        with self._engine.begin() as connection:
            tenant_id = self._tenant_id(connection, tenant, create=False)
            connection.execute(
                _INSERT_ROWS,
                [
                    {
                        "tenant_id": tenant_id,
                        "time": r.time,
                        "call_id": r.call_id,
                        "queue": r.queue,
                        "agent": r.agent,
                        "event": r.event,
                        "data": r.data,
                    }
                    for r in records
                ],
            )

    def queue_log_between(
        self,
        since: float | None,
        until: float | None,
        queue: str | None = None,
        tenant: str = DEFAULT_TENANT,
    ) -> list[QueueLogRecord]:
        """The events at or after `since` and before `until` (of `queue` alone when
        given), oldest first; events of one instant in the order they were written."""
        query = (
            select(queue_log)
            .join(tenants, tenants.c.id == queue_log.c.tenant_id)
            .where(tenants.c.domain == tenant)
        )
        if since is not None:
            query = query.where(queue_log.c.time >= since)
        if until is not None:
            query = query.where(queue_log.c.time < until)
        if queue is not None:
            query = query.where(queue_log.c.queue == queue)
        with self._engine.connect() as connection:
            rows = connection.execute(query.order_by(queue_log.c.time, queue_log.c.id)).all()
        return [
            QueueLogRecord(
                time=row.time,
                call_id=row.call_id,
                queue=row.queue,
                agent=row.agent,
                event=row.event,
                data=row.data,
            )
            for row in rows
        ]
