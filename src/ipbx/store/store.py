"""`Store`: the only object that speaks SQL.

One engine per process, Core statements rather than ORM sessions: the registrar calls
`save_bindings` for every REGISTER, thousands of times a second, and the ORM's unit of
work would cost more than the SQL itself.
"""

import hashlib
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    Connection,
    Engine,
    Select,
    bindparam,
    create_engine,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.sql.elements import BindParameter

from ipbx.store.records import (
    DEFAULT_TENANT,
    ApiTokenRecord,
    BindingRecord,
    CallRecord,
    DeliveryRecord,
    ExtensionRecord,
    LegRecord,
    ProvisionedRecord,
    TenantRecord,
)
from ipbx.store.schema import (
    api_tokens,
    call_legs,
    call_records,
    extensions,
    provisioned,
    registrations,
    revisions,
    tenants,
    webhook_deliveries,
)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


# The registrar's statements, built once: constructing a statement per call costs more
# than SQLite takes to run it.
_DELETE_AOR = delete(registrations).where(
    registrations.c.tenant_id == bindparam("tenant_id"), registrations.c.aor == bindparam("aor")
)
_INSERT_BINDING = insert(registrations)
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
_TOKENS = select(api_tokens, tenants.c.domain).join(tenants, tenants.c.id == api_tokens.c.tenant_id)


class TenantInUse(ValueError):
    """A tenant that still has extensions, items, records or tokens is not deleted."""


class UnknownTenantError(LookupError):
    """A tenant domain that has not been provisioned."""


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the writer; synchronous=NORMAL skips the fsync per
    # commit (WAL stays consistent; a power cut loses at most the last commits, which
    # phones re-send with their next REGISTER). busy_timeout waits out another writer.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def _ha1(hash_name: str, username: str, realm: str, password: str) -> str:
    # RFC 7616 §3.4.2: HA1 = H(username ":" realm ":" password).
    return hashlib.new(hash_name, f"{username}:{realm}:{password}".encode()).hexdigest()


class Store:
    """Provisioning and registration state, in SQLite (default) or PostgreSQL."""

    def __init__(self, url: str) -> None:
        parsed = make_url(url)
        if parsed.drivername == "postgresql":
            # SQLAlchemy's default PostgreSQL driver is psycopg2; ipbx ships psycopg 3.
            parsed = parsed.set(drivername="postgresql+psycopg")
        if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        self._engine: Engine = create_engine(
            parsed, pool_pre_ping=parsed.get_backend_name() != "sqlite"
        )
        if self._engine.dialect.name == "sqlite":
            event.listen(self._engine, "connect", _sqlite_pragmas)
        self._tenant_ids: dict[str, int] = {}

    def migrate(self) -> None:
        """Bring the schema to the newest revision; a no-op when it is already there."""
        config = AlembicConfig()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self._engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def close(self) -> None:
        self._engine.dispose()

    def apply_extensions(
        self,
        wanted: Iterable[tuple[str, str, str | None]],
        realm: str,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        """Add or update extensions from (number, name, password); never deletes any.
        A None password keeps the extension's digests (and needs the extension).

        Idempotent: an extension whose name and hashes are unchanged is not written.
        """
        with self._engine.begin() as connection:
            tenant_id = self._tenant_id(connection, tenant, create=True)
            if _write_extensions(connection, tenant_id, wanted, realm):
                _bump(connection)

    def get_extension(self, number: str, tenant: str = DEFAULT_TENANT) -> ExtensionRecord | None:
        with self._engine.connect() as connection:
            rows = self._extension_rows(connection, tenant, number)
        return rows[0] if rows else None

    def list_extensions(self, tenant: str = DEFAULT_TENANT) -> list[ExtensionRecord]:
        with self._engine.connect() as connection:
            return self._extension_rows(connection, tenant, None)

    def save_bindings(
        self, changes: Mapping[str, Sequence[BindingRecord]], tenant: str = DEFAULT_TENANT
    ) -> None:
        """Replace the bindings of each AOR in `changes` (an empty list removes them all),
        in one transaction: the registrar hands over a batch of REGISTERs at a time."""
        for aor, bindings in changes.items():
            for binding in bindings:
                if binding.aor != aor:
                    raise ValueError(f"binding for {binding.aor!r} saved under {aor!r}")
        if not changes:
            return
        with self._engine.begin() as connection:
            tenant_id = self._tenant_id(connection, tenant, create=False)
            connection.execute(
                _DELETE_AOR, [{"tenant_id": tenant_id, "aor": aor} for aor in changes]
            )
            rows = [_binding_row(tenant_id, b) for bindings in changes.values() for b in bindings]
            if rows:
                connection.execute(_INSERT_BINDING, rows)

    def delete_binding(self, aor: str, contact_uri: str, tenant: str = DEFAULT_TENANT) -> None:
        with self._engine.begin() as connection:
            tenant_id = self._tenant_id(connection, tenant, create=False)
            connection.execute(
                delete(registrations).where(
                    registrations.c.tenant_id == tenant_id,
                    registrations.c.aor == aor,
                    registrations.c.contact_uri == contact_uri,
                )
            )

    def load_bindings(self, now: float, tenant: str = DEFAULT_TENANT) -> list[BindingRecord]:
        """The bindings still valid at `now` (epoch seconds); expired ones are deleted.

        Expired rows of every tenant are deleted, not only this one's: they are garbage
        wherever they are, and start-up is when nobody is waiting on them.
        """
        with self._engine.begin() as connection:
            connection.execute(delete(registrations).where(registrations.c.expires_at <= now))
            tenant_id = self._tenant_id(connection, tenant, create=False)
            rows = connection.execute(
                select(registrations)
                .where(registrations.c.tenant_id == tenant_id)
                .order_by(registrations.c.aor, registrations.c.id)
            )
            return [
                BindingRecord(
                    aor=row.aor,
                    contact_uri=row.contact_uri,
                    expires_at=row.expires_at,
                    call_id=row.call_id,
                    cseq=row.cseq,
                    transport=row.received_transport,
                    host=row.received_host,
                    port=row.received_port,
                    instance_id=row.instance_id,
                    user_agent=row.user_agent,
                    q=row.q,
                )
                for row in rows
            ]

    def save_call_records(
        self, records: Sequence[CallRecord], tenant: str = DEFAULT_TENANT
    ) -> None:
        """Write finished calls, in one transaction: the PBX hands them over in batches."""
        if not records:
            return
        with self._engine.begin() as connection:
            tenant_id = self._tenant_id(connection, tenant, create=False)
            for record in records:
                record_id = connection.execute(
                    insert(call_records)
                    .values(
                        tenant_id=tenant_id,
                        call_id=record.call_id,
                        caller=record.caller,
                        callee=record.callee,
                        started=record.started,
                        answered=record.answered,
                        ended=record.ended,
                        result=record.result,
                        digits=record.digits,
                        recording=record.recording,
                        path=record.path,
                        direction=record.direction,
                    )
                    .returning(call_records.c.id)
                ).scalar_one()
                if record.legs:
                    connection.execute(
                        insert(call_legs),
                        [_leg_row(record_id, leg) for leg in record.legs],
                    )

    def call_records(self, limit: int = 100, tenant: str = DEFAULT_TENANT) -> list[CallRecord]:
        """The latest calls, newest first, each with its legs in the order they were saved."""
        return self.search_call_records(tenant=tenant, limit=limit)[1]

    def search_call_records(
        self,
        tenant: str = DEFAULT_TENANT,
        *,
        since: float | None = None,
        until: float | None = None,
        number: str | None = None,
        result: str | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> tuple[int, list[CallRecord]]:
        """Calls started in [since, until) with `number` as caller or callee and the
        given result, newest first: how many match in all, and the page asked for."""
        conditions = _started_between(tenant, since, until)
        if number is not None:
            conditions.append(or_(call_records.c.caller == number, call_records.c.callee == number))
        if result is not None:
            conditions.append(call_records.c.result == result)
        joined = call_records.join(tenants, tenants.c.id == call_records.c.tenant_id)
        with self._engine.connect() as connection:
            total = connection.scalar(select(func.count()).select_from(joined).where(*conditions))
            rows = connection.execute(
                select(call_records)
                .select_from(joined)
                .where(*conditions)
                .order_by(call_records.c.started.desc(), call_records.c.id.desc())
                .limit(limit)
                .offset(offset)
            ).all()
            return int(total or 0), self._with_legs(connection, rows)

    def call_records_between(
        self, since: float | None, until: float | None, tenant: str = DEFAULT_TENANT
    ) -> list[CallRecord]:
        """Every call started in [since, until), oldest first (for analytics)."""
        conditions = _started_between(tenant, since, until)
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(call_records)
                .join(tenants, tenants.c.id == call_records.c.tenant_id)
                .where(*conditions)
                .order_by(call_records.c.started, call_records.c.id)
            ).all()
            return self._with_legs(connection, rows)

    def call_record(self, call_id: str, tenant: str = DEFAULT_TENANT) -> CallRecord | None:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(call_records)
                .join(tenants, tenants.c.id == call_records.c.tenant_id)
                .where(tenants.c.domain == tenant, call_records.c.call_id == call_id)
            ).all()
            found = self._with_legs(connection, rows)
        return found[0] if found else None

    def _with_legs(self, connection: Connection, rows: Sequence[Any]) -> list[CallRecord]:
        legs: dict[int, list[LegRecord]] = {row.id: [] for row in rows}
        if legs:
            for leg in connection.execute(
                select(call_legs)
                .where(call_legs.c.call_record_id.in_(list(legs)))
                .order_by(call_legs.c.id)
            ):
                legs[leg.call_record_id].append(
                    LegRecord(
                        role=leg.role,
                        peer=leg.peer,
                        codec=leg.codec,
                        packets_received=leg.packets_received,
                        packets_lost=leg.packets_lost,
                        jitter_ms=leg.jitter_ms,
                        rtt_ms=leg.rtt_ms,
                        mos=leg.mos,
                    )
                )
        return [
            CallRecord(
                call_id=row.call_id,
                caller=row.caller,
                callee=row.callee,
                started=row.started,
                answered=row.answered,
                ended=row.ended,
                result=row.result,
                digits=row.digits,
                recording=row.recording,
                path=row.path,
                direction=row.direction,
                legs=tuple(legs[row.id]),
            )
            for row in rows
        ]

    # --- API tokens and the webhook outbox --------------------------------------------------

    def save_api_token(self, token: ApiTokenRecord) -> None:
        """Store a new token's hash (its tenant is created if it is new)."""
        with self._engine.begin() as connection:
            tenant_id = self._tenant_id(connection, token.tenant, create=True)
            connection.execute(
                insert(api_tokens).values(
                    tenant_id=tenant_id,
                    key_id=token.key_id,
                    scope=token.scope,
                    salt=token.salt,
                    digest=token.digest,
                    name=token.name,
                    created=token.created,
                )
            )

    def api_token(self, key_id: str) -> ApiTokenRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(_TOKENS.where(api_tokens.c.key_id == key_id)).first()
        return None if row is None else _api_token(row)

    def api_tokens(self, tenant: str | None = None) -> list[ApiTokenRecord]:
        """The tokens of `tenant` (None: of every tenant), oldest first."""
        query = _TOKENS.order_by(api_tokens.c.created, api_tokens.c.id)
        if tenant is not None:
            query = query.where(tenants.c.domain == tenant)
        with self._engine.connect() as connection:
            return [_api_token(row) for row in connection.execute(query)]

    def delete_api_token(self, key_id: str, tenant: str | None = None) -> bool:
        """Revoke a token: its row is deleted, so the next request with it gets 401.
        With `tenant`, only a token of that tenant; False when there is no such token."""
        condition = api_tokens.c.key_id == key_id
        if tenant is not None:
            owner = select(tenants.c.id).where(tenants.c.domain == tenant).scalar_subquery()
            condition = condition & (api_tokens.c.tenant_id == owner)
        with self._engine.begin() as connection:
            deleted = connection.execute(delete(api_tokens).where(condition))
        return bool(deleted.rowcount)

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

    # --- provisioned configuration items (pbx/provisioning.py) ----------------------

    def provisioned(
        self, tenant: str | None = None, kind: str | None = None
    ) -> list[ProvisionedRecord]:
        """The items of one tenant (all tenants when None), of one kind or all, in the
        order they were first written."""
        query = (
            select(provisioned, tenants.c.domain)
            .join(tenants, tenants.c.id == provisioned.c.tenant_id)
            .order_by(provisioned.c.id)
        )
        if tenant is not None:
            query = query.where(tenants.c.domain == tenant)
        if kind is not None:
            query = query.where(provisioned.c.kind == kind)
        with self._engine.connect() as connection:
            return [
                ProvisionedRecord(row.domain, row.kind, row.key, row.body, row.updated)
                for row in connection.execute(query)
            ]

    def write_provisioned(
        self,
        tenant: str,
        put: Iterable[tuple[str, str, str]] = (),
        remove: Iterable[tuple[str, str]] = (),
        credentials: Iterable[tuple[str, str, str | None]] = (),
        realm: str = "",
    ) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]:
        """Write items (kind, key, JSON body) and remove (kind, key) ones, all in one
        transaction that also moves the configuration revision. Returns the (kind, key)
        added, changed and removed; an item whose body is unchanged is not written.

        `credentials` are extensions' (number, name, password) written as in
        apply_extensions, in the same transaction; removing an ``extensions`` item
        removes the extension with its registrations."""
        now = time.time()
        added: list[tuple[str, str]] = []
        changed: list[tuple[str, str]] = []
        removed: list[tuple[str, str]] = []
        with self._engine.begin() as connection:
            tenant_id = self._tenant_id(connection, tenant, create=True)
            existing = {
                (row.kind, row.key): row.body
                for row in connection.execute(
                    select(provisioned.c.kind, provisioned.c.key, provisioned.c.body).where(
                        provisioned.c.tenant_id == tenant_id
                    )
                )
            }
            credentials_changed = _write_extensions(connection, tenant_id, credentials, realm)
            for kind, key in remove:
                if kind == "extensions" and _delete_extension(connection, tenant_id, key):
                    credentials_changed = True
                if (kind, key) in existing:
                    connection.execute(
                        delete(provisioned).where(
                            provisioned.c.tenant_id == tenant_id,
                            provisioned.c.kind == kind,
                            provisioned.c.key == key,
                        )
                    )
                    del existing[kind, key]
                    removed.append((kind, key))
            for kind, key, body in put:
                before = existing.get((kind, key))
                if before == body:
                    continue
                if before is None:
                    connection.execute(
                        insert(provisioned).values(
                            tenant_id=tenant_id, kind=kind, key=key, body=body, updated=now
                        )
                    )
                    added.append((kind, key))
                else:
                    connection.execute(
                        update(provisioned)
                        .where(
                            provisioned.c.tenant_id == tenant_id,
                            provisioned.c.kind == kind,
                            provisioned.c.key == key,
                        )
                        .values(body=body, updated=now)
                    )
                    changed.append((kind, key))
                existing[kind, key] = body
            if added or changed or removed or credentials_changed:
                _bump(connection)
        return added, changed, removed

    def revision(self) -> int:
        """The configuration revision: it moves with every provisioning change."""
        with self._engine.connect() as connection:
            value = connection.scalar(
                select(revisions.c.value).where(revisions.c.name == _CONFIG_REVISION)
            )
        return int(value or 0)

    # --- tenants ------------------------------------------------------------------------

    def tenants(self) -> list[TenantRecord]:
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(tenants.c.domain, tenants.c.name).order_by(tenants.c.domain)
            )
            return [TenantRecord(row.domain, row.name) for row in rows]

    def tenant(self, tenant: str) -> TenantRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(
                select(tenants.c.domain, tenants.c.name).where(tenants.c.domain == tenant)
            ).first()
        return None if row is None else TenantRecord(row.domain, row.name)

    def save_tenant(self, tenant: str, name: str) -> bool:
        """Create a tenant or rename it; True when it is new."""
        with self._engine.begin() as connection:
            found = connection.scalar(select(tenants.c.id).where(tenants.c.domain == tenant))
            if found is None:
                connection.execute(insert(tenants).values(domain=tenant, name=name))
            else:
                connection.execute(update(tenants).where(tenants.c.id == found).values(name=name))
            _bump(connection)
        return found is None

    def delete_tenant(self, tenant: str) -> bool:
        """Remove a tenant that holds nothing (TenantInUse otherwise); False if none."""
        with self._engine.begin() as connection:
            found = connection.scalar(select(tenants.c.id).where(tenants.c.domain == tenant))
            if found is None:
                return False
            for table, what in (
                (extensions, "extensions"),
                (provisioned, "configuration items"),
                (call_records, "call records"),
                (api_tokens, "API tokens"),
            ):
                held = connection.scalar(
                    select(func.count()).select_from(table).where(table.c.tenant_id == found)
                )
                if held:
                    raise TenantInUse(f"tenant {tenant} still has {held} {what}")
            connection.execute(delete(tenants).where(tenants.c.id == found))
            _bump(connection)
        self._tenant_ids.pop(tenant, None)
        return True

    def _extension_rows(
        self, connection: Connection, tenant: str, number: str | None
    ) -> list[ExtensionRecord]:
        query = (
            select(
                extensions.c.number,
                extensions.c.name,
                extensions.c.ha1_md5,
                extensions.c.ha1_sha256,
            )
            .join(tenants, tenants.c.id == extensions.c.tenant_id)
            .where(tenants.c.domain == tenant)
            .order_by(extensions.c.number)
        )
        if number is not None:
            query = query.where(extensions.c.number == number)
        return [
            ExtensionRecord(
                number=row.number, name=row.name, ha1_md5=row.ha1_md5, ha1_sha256=row.ha1_sha256
            )
            for row in connection.execute(query)
        ]

    def _tenant_id(self, connection: Connection, domain: str, *, create: bool) -> int:
        # Only a tenant holding nothing is ever deleted (delete_tenant), so an id once
        # seen stays valid while anything refers to it and the hot path (save_bindings)
        # skips the lookup.
        cached = self._tenant_ids.get(domain)
        if cached is not None:
            return cached
        found: int | None = connection.scalar(
            select(tenants.c.id).where(tenants.c.domain == domain)
        )
        if found is not None:
            self._tenant_ids[domain] = found
            return found
        if not create:
            raise UnknownTenantError(domain)
        # Not cached: the transaction that creates it may still roll back.
        created: int = connection.execute(
            insert(tenants).values(domain=domain, name=domain).returning(tenants.c.id)
        ).scalar_one()
        return created


def _write_extensions(
    connection: Connection,
    tenant_id: int,
    wanted: Iterable[tuple[str, str, str | None]],
    realm: str,
) -> bool:
    """apply_extensions' work in the caller's transaction; True when it wrote."""
    now = datetime.now(UTC)
    existing = {
        row.number: (row.name, row.ha1_md5, row.ha1_sha256)
        for row in connection.execute(
            select(
                extensions.c.number, extensions.c.name, extensions.c.ha1_md5,
                extensions.c.ha1_sha256,
            ).where(extensions.c.tenant_id == tenant_id)
        )
    }  # fmt: skip
    changed = False
    for number, name, password in wanted:
        if password is None:
            if number not in existing:
                raise ValueError(f"password: extension {number} is new and needs one")
            values = (name, *existing[number][1:])
        else:
            values = (
                name,
                _ha1("md5", number, realm, password),
                _ha1("sha256", number, realm, password),
            )
        if existing.get(number) == values:
            continue
        columns = {"name": values[0], "ha1_md5": values[1], "ha1_sha256": values[2]}
        if number in existing:
            connection.execute(
                update(extensions)
                .where(extensions.c.tenant_id == tenant_id, extensions.c.number == number)
                .values(updated=now, **columns)
            )
        else:
            connection.execute(
                insert(extensions).values(
                    tenant_id=tenant_id, number=number, created=now, updated=now, **columns
                )
            )
        existing[number] = values
        changed = True
    return changed


def _delete_extension(connection: Connection, tenant_id: int, number: str) -> bool:
    """An extension and its registrations, in the caller's transaction."""
    connection.execute(
        delete(registrations).where(
            registrations.c.tenant_id == tenant_id, registrations.c.aor == number
        )
    )
    deleted = connection.execute(
        delete(extensions).where(extensions.c.tenant_id == tenant_id, extensions.c.number == number)
    )
    return deleted.rowcount > 0


_CONFIG_REVISION = "config"


def _bump(connection: Connection) -> None:
    """Move the configuration revision, in the caller's transaction."""
    moved = connection.execute(
        update(revisions)
        .where(revisions.c.name == _CONFIG_REVISION)
        .values(value=revisions.c.value + 1)
    )
    if moved.rowcount == 0:
        connection.execute(insert(revisions).values(name=_CONFIG_REVISION, value=1))


def _binding_row(tenant_id: int, binding: BindingRecord) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "aor": binding.aor,
        "contact_uri": binding.contact_uri,
        "expires_at": binding.expires_at,
        "call_id": binding.call_id,
        "cseq": binding.cseq,
        "received_transport": binding.transport,
        "received_host": binding.host,
        "received_port": binding.port,
        "instance_id": binding.instance_id,
        "user_agent": binding.user_agent,
        "q": binding.q,
    }


def _started_between(tenant: str, since: float | None, until: float | None) -> list[Any]:
    """The conditions of the tenant's calls started in [since, until)."""
    conditions: list[Any] = [tenants.c.domain == tenant]
    if since is not None:
        conditions.append(call_records.c.started >= since)
    if until is not None:
        conditions.append(call_records.c.started < until)
    return conditions


def _leg_row(record_id: int, leg: LegRecord) -> dict[str, Any]:
    return {
        "call_record_id": record_id,
        "role": leg.role,
        "peer": leg.peer,
        "codec": leg.codec,
        "packets_received": leg.packets_received,
        "packets_lost": leg.packets_lost,
        "jitter_ms": leg.jitter_ms,
        "rtt_ms": leg.rtt_ms,
        "mos": leg.mos,
    }


def _api_token(row: Any) -> ApiTokenRecord:
    return ApiTokenRecord(
        key_id=row.key_id,
        tenant=row.domain,
        scope=row.scope,
        salt=row.salt,
        digest=row.digest,
        created=row.created,
        name=row.name,
    )


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
