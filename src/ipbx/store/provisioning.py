"""Provisioning in the store: tenants, extensions (their digest hashes) and the
configuration items of pbx/provisioning.py, with the revision every change moves."""

import hashlib
import time
from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import Connection, delete, func, insert, select, update

from ipbx.store.database import CONFIG_REVISION, Database, bump_revision
from ipbx.store.records import DEFAULT_TENANT, ExtensionRecord, ProvisionedRecord, TenantRecord
from ipbx.store.schema import (
    api_tokens,
    call_records,
    extensions,
    provisioned,
    registrations,
    revisions,
    tenants,
)


class TenantInUse(ValueError):
    """A tenant that still has extensions, items, records or tokens is not deleted."""


def _ha1(hash_name: str, username: str, realm: str, password: str) -> str:
    # RFC 7616 §3.4.2: HA1 = H(username ":" realm ":" password).
    return hashlib.new(hash_name, f"{username}:{realm}:{password}".encode()).hexdigest()


class Provisioning(Database):
    """Tenants, extensions and provisioned configuration items."""

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
                bump_revision(connection)

    def get_extension(self, number: str, tenant: str = DEFAULT_TENANT) -> ExtensionRecord | None:
        with self._engine.connect() as connection:
            rows = self._extension_rows(connection, tenant, number)
        return rows[0] if rows else None

    def list_extensions(self, tenant: str = DEFAULT_TENANT) -> list[ExtensionRecord]:
        with self._engine.connect() as connection:
            return self._extension_rows(connection, tenant, None)

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
                bump_revision(connection)
        return added, changed, removed

    def revision(self) -> int:
        """The configuration revision: it moves with every provisioning change."""
        with self._engine.connect() as connection:
            value = connection.scalar(
                select(revisions.c.value).where(revisions.c.name == CONFIG_REVISION)
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
            bump_revision(connection)
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
            bump_revision(connection)
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
