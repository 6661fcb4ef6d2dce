"""The webhook outbox in the store: one row per (event, webhook), the delivery workers'
queue and the delivery log (api/webhooks.py)."""

from collections.abc import Sequence
from typing import Any, Literal

from sqlalchemy import Select, bindparam, delete, func, insert, select, update
from sqlalchemy.sql.elements import BindParameter

from ipbx.store.database import Database
from ipbx.store.records import DEFAULT_TENANT, DeliveryRecord
from ipbx.store.schema import tenants, webhook_deliveries

# The webhook workers' update, one per attempt (their read is _NEXT_DELIVERIES).
_UPDATE_DELIVERY = (
    update(webhook_deliveries)
    .where(webhook_deliveries.c.id == bindparam("delivery_id"))
    .values(
        status=bindparam("status"),
        attempts=bindparam("attempts"),
        next_attempt=bindparam("next_attempt"),
        delivered_at=bindparam("delivered_at"),
        last_error=bindparam("last_error"),
    )
)


class WebhookOutbox(Database):
    """Deliveries of events to webhooks: pending, delivered or failed."""

    def add_deliveries(self, deliveries: Sequence[DeliveryRecord]) -> int:
        """Put deliveries in the outbox, in one transaction; one already there (same
        event and webhook) is left as it is. Returns how many were added."""
        if not deliveries:
            return 0
        with self._engine.begin() as connection:
            present = {
                (row.event_id, row.webhook)
                for row in connection.execute(
                    select(webhook_deliveries.c.event_id, webhook_deliveries.c.webhook).where(
                        webhook_deliveries.c.event_id.in_({d.event_id for d in deliveries})
                    )
                )
            }
            rows = []
            for d in deliveries:
                if (d.event_id, d.webhook) in present:
                    continue
                present.add((d.event_id, d.webhook))
                rows.append(
                    {
                        "tenant_id": self._tenant_id(connection, d.tenant, create=True),
                        "event_id": d.event_id,
                        "event_type": d.event_type,
                        "webhook": d.webhook,
                        "payload": d.payload,
                        "created": d.created,
                        "status": d.status,
                        "attempts": d.attempts,
                        "next_attempt": d.next_attempt,
                        "delivered_at": d.delivered_at,
                        "last_error": d.last_error,
                    }
                )
            if rows:
                connection.execute(insert(webhook_deliveries), rows)
            return len(rows)

    def next_delivery(self, webhook: str, tenant: str = DEFAULT_TENANT) -> DeliveryRecord | None:
        """The oldest pending delivery to `webhook`: later ones wait for it (order)."""
        head = self.next_deliveries(webhook, tenant, 1)
        return head[0] if head else None

    def next_deliveries(
        self, webhook: str, tenant: str = DEFAULT_TENANT, limit: int = 100
    ) -> list[DeliveryRecord]:
        """The oldest `limit` pending deliveries to `webhook`, oldest first."""
        with self._engine.connect() as connection:
            rows = connection.execute(
                _NEXT_DELIVERIES, {"tenant": tenant, "webhook": webhook, "limit": limit}
            )
            return [_delivery(row) for row in rows]

    def update_delivery(
        self,
        delivery_id: int,
        *,
        status: Literal["pending", "delivered", "failed"],
        attempts: int,
        next_attempt: float | None,
        delivered_at: float | None = None,
        last_error: str = "",
    ) -> None:
        with self._engine.begin() as connection:
            connection.execute(
                _UPDATE_DELIVERY,
                {
                    "delivery_id": delivery_id,
                    "status": status,
                    "attempts": attempts,
                    "next_attempt": next_attempt,
                    "delivered_at": delivered_at,
                    "last_error": last_error,
                },
            )

    def deliveries(
        self,
        tenant: str = DEFAULT_TENANT,
        *,
        webhook: str | None = None,
        status: str | None = None,
        event_id: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[DeliveryRecord]]:
        """The delivery log, newest first: how many match, and the page asked for."""
        query = _delivery_query(tenant, webhook, status, event_id)
        with self._engine.connect() as connection:
            total = connection.scalar(select(func.count()).select_from(query.subquery()))
            rows = connection.execute(
                query.order_by(webhook_deliveries.c.id.desc()).limit(limit).offset(offset)
            ).all()
        return int(total or 0), [_delivery(row) for row in rows]

    def prune_deliveries(self, before: float) -> int:
        """Delete delivered and failed deliveries created before `before` (epoch
        seconds), all tenants; pending ones are never deleted. Returns how many went."""
        with self._engine.begin() as connection:
            deleted = connection.execute(
                delete(webhook_deliveries).where(
                    webhook_deliveries.c.status.in_(("delivered", "failed")),
                    webhook_deliveries.c.created < before,
                )
            )
        return int(deleted.rowcount or 0)

    def pending_deliveries(self) -> int:
        """How many deliveries wait to be sent, all tenants (the webhook queue depth)."""
        with self._engine.connect() as connection:
            count = connection.scalar(
                select(func.count())
                .select_from(webhook_deliveries)
                .where(webhook_deliveries.c.status == "pending")
            )
        return int(count or 0)


def _delivery_query(
    tenant: str | BindParameter[str],
    webhook: str | BindParameter[str] | None,
    status: str | None,
    event_id: str | None,
) -> Select[Any]:
    query = (
        select(webhook_deliveries, tenants.c.domain)
        .join(tenants, tenants.c.id == webhook_deliveries.c.tenant_id)
        .where(tenants.c.domain == tenant)
    )
    if webhook is not None:
        query = query.where(webhook_deliveries.c.webhook == webhook)
    if status is not None:
        query = query.where(webhook_deliveries.c.status == status)
    if event_id is not None:
        query = query.where(webhook_deliveries.c.event_id == event_id)
    return query


# The delivery workers' read, built once: the oldest pending rows of one webhook.
_NEXT_DELIVERIES = (
    _delivery_query(bindparam("tenant"), bindparam("webhook"), "pending", None)
    .order_by(webhook_deliveries.c.id)
    .limit(bindparam("limit"))
)


def _delivery(row: Any) -> DeliveryRecord:
    return DeliveryRecord(
        id=row.id,
        event_id=row.event_id,
        event_type=row.event_type,
        webhook=row.webhook,
        tenant=row.domain,
        payload=row.payload,
        created=row.created,
        status=row.status,
        attempts=row.attempts,
        next_attempt=row.next_attempt,
        delivered_at=row.delivered_at,
        last_error=row.last_error,
    )
