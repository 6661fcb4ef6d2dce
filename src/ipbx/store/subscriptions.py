"""SIP event subscriptions in the store: the notifier's live subscriptions
(pbx/subscription.py), written behind as they change and read back at start-up."""

import json
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, delete, insert, select

from ipbx.store.database import Database
from ipbx.store.records import DEFAULT_TENANT, SubscriptionRecord
from ipbx.store.schema import subscriptions

# A subscription is one dialog; ipbx's own tag (the local tag) names it.
_DELETE_ONE = delete(subscriptions).where(subscriptions.c.local_tag == bindparam("tag"))
_INSERT_ONE = insert(subscriptions)


class SubscriptionRows(Database):
    """The live subscriptions of each tenant."""

    def save_subscriptions(
        self,
        saved: Sequence[SubscriptionRecord],
        removed: Sequence[str],
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        """Write `saved` (new ones, or the latest of changed ones) and delete the
        subscriptions whose local tags are in `removed`, in one transaction."""
        tags = [*removed, *(record.local_tag for record in saved)]
        if not tags:
            return
        with self._engine.begin() as connection:
            tenant_id = self._tenant_id(connection, tenant, create=False)
            connection.execute(_DELETE_ONE, [{"tag": tag} for tag in tags])
            if saved:
                connection.execute(_INSERT_ONE, [_row(tenant_id, r) for r in saved])

    def load_subscriptions(
        self, now: float, tenant: str = DEFAULT_TENANT
    ) -> list[SubscriptionRecord]:
        """The subscriptions still live at `now` (epoch seconds); expired ones are
        deleted."""
        with self._engine.begin() as connection:
            connection.execute(delete(subscriptions).where(subscriptions.c.expires_at <= now))
            tenant_id = self._tenant_id(connection, tenant, create=False)
            rows = connection.execute(
                select(subscriptions)
                .where(subscriptions.c.tenant_id == tenant_id)
                .order_by(subscriptions.c.id)
            )
            return [
                SubscriptionRecord(
                    package=row.package,
                    resource=row.resource,
                    watcher=row.watcher,
                    entity=row.entity,
                    event=row.event,
                    call_id=row.call_id,
                    local_tag=row.local_tag,
                    remote_tag=row.remote_tag,
                    local_uri=row.local_uri,
                    remote_uri=row.remote_uri,
                    remote_target=row.remote_target,
                    local_seq=row.local_seq,
                    remote_seq=row.remote_seq,
                    route_set=tuple(json.loads(row.route_set)),
                    source=_address(row.source),
                    target=_address(row.target),
                    behind_nat=row.behind_nat,
                    expires_at=row.expires_at,
                    version=row.version,
                )
                for row in rows
            ]


def _address(text: str) -> tuple[str, str, int]:
    transport, host, port = json.loads(text)
    return str(transport), str(host), int(port)


def _row(tenant_id: int, record: SubscriptionRecord) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "package": record.package,
        "resource": record.resource,
        "watcher": record.watcher,
        "entity": record.entity,
        "event": record.event,
        "call_id": record.call_id,
        "local_tag": record.local_tag,
        "remote_tag": record.remote_tag,
        "local_uri": record.local_uri,
        "remote_uri": record.remote_uri,
        "remote_target": record.remote_target,
        "local_seq": record.local_seq,
        "remote_seq": record.remote_seq,
        "route_set": json.dumps(list(record.route_set)),
        "source": json.dumps(list(record.source)),
        "target": json.dumps(list(record.target)),
        "behind_nat": record.behind_nat,
        "expires_at": record.expires_at,
        "version": record.version,
    }
