"""The webhook outbox stays bounded: delivered and failed deliveries older than
`api.delivery_retention_days` are deleted by the Webhooks worker; pending ones, however
old, are kept until they are sent."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ipbx.api.webhooks import DAY, Webhooks
from ipbx.config import ApiConfig, load_config
from ipbx.configfile import ConfigError
from ipbx.pbx.events import EventBus
from ipbx.store import AsyncStore, DeliveryRecord, Store

NOW = 1_750_000_000.0


def delivery(
    event_id: str, age_days: float, status: str, tenant: str = "default"
) -> DeliveryRecord:
    created = NOW - age_days * DAY
    return DeliveryRecord(
        event_id=event_id,
        event_type="call.ended",
        webhook="http://crm.example/hook",
        tenant=tenant,
        payload="{}",
        created=created,
        next_attempt=created if status == "pending" else None,
        attempts=1,
        status=status,
        delivered_at=created + 1 if status == "delivered" else None,
    )


def event_ids(store: Store, tenant: str = "default") -> set[str]:
    return {row.event_id for row in store.deliveries(tenant, limit=1000)[1]}


def test_old_delivered_and_failed_rows_go_and_pending_rows_stay(
    store: Store, store_thread: AsyncStore
) -> None:
    store.add_deliveries(
        [
            delivery("old-delivered", 31, "delivered"),
            delivery("old-failed", 45, "failed"),
            delivery("old-pending", 400, "pending"),
            delivery("recent-delivered", 29, "delivered"),
            delivery("recent-failed", 1, "failed"),
            delivery("other-tenant-old", 60, "delivered", tenant="acme"),
        ]
    )
    webhooks = Webhooks(store_thread, [], EventBus(), clock=lambda: NOW, retention=30 * DAY)

    assert asyncio.run(webhooks.prune()) == 3

    assert event_ids(store) == {"old-pending", "recent-delivered", "recent-failed"}
    assert event_ids(store, "acme") == set()
    assert store.pending_deliveries() == 1
    assert asyncio.run(webhooks.prune()) == 0  # nothing left to prune: idempotent


def test_the_started_worker_prunes_without_being_asked(
    store: Store, store_thread: AsyncStore
) -> None:
    store.add_deliveries([delivery("old", 8, "delivered"), delivery("new", 6, "delivered")])

    async def scenario() -> None:
        webhooks = Webhooks(store_thread, [], EventBus(), clock=lambda: NOW, retention=7 * DAY)
        webhooks.start()
        for _ in range(100):
            if event_ids(store) == {"new"}:
                break
            await asyncio.sleep(0.01)
        await webhooks.stop()
        await webhooks.close()

    asyncio.run(scenario())
    assert event_ids(store) == {"new"}


def test_retention_is_configured_in_days(tmp_path: Path) -> None:
    assert ApiConfig().delivery_retention_days == 30
    path = tmp_path / "ipbx.yaml"
    path.write_text("api:\n  delivery_retention_days: 0\n")
    with pytest.raises(ConfigError, match="delivery_retention_days"):
        load_config(path)
    path.write_text("api:\n  delivery_retention_days: 7\n")
    assert load_config(path).api.delivery_retention_days == 7
