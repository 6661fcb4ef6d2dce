"""`Store`: the only object that speaks SQL.

One engine per process, Core statements rather than ORM sessions: the registrar calls
`save_bindings` for every REGISTER, thousands of times a second, and the ORM's unit of
work would cost more than the SQL itself.
"""

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    delete,
    event,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url

from ipbx.store.records import (
    DEFAULT_TENANT,
    BindingRecord,
    CallRecord,
    ExtensionRecord,
    LegRecord,
)
from ipbx.store.schema import call_legs, call_records, extensions, registrations, tenants

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


# The registrar's statements, built once: constructing a statement per call costs more
# than SQLite takes to run it.
_DELETE_AOR = delete(registrations).where(
    registrations.c.tenant_id == bindparam("tenant_id"), registrations.c.aor == bindparam("aor")
)
_INSERT_BINDING = insert(registrations)


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
        wanted: Iterable[tuple[str, str, str]],
        realm: str,
        tenant: str = DEFAULT_TENANT,
    ) -> None:
        """Add or update extensions from (number, name, password); never deletes any.

        Idempotent: an extension whose name and hashes are unchanged is not written.
        """
        now = datetime.now(UTC)
        with self._engine.begin() as connection:
            tenant_id = self._tenant_id(connection, tenant, create=True)
            existing = {
                row.number: (row.name, row.ha1_md5, row.ha1_sha256)
                for row in connection.execute(
                    select(
                        extensions.c.number,
                        extensions.c.name,
                        extensions.c.ha1_md5,
                        extensions.c.ha1_sha256,
                    ).where(extensions.c.tenant_id == tenant_id)
                )
            }
            for number, name, password in wanted:
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
        with self._engine.connect() as connection:
            rows = connection.execute(
                select(call_records)
                .join(tenants, tenants.c.id == call_records.c.tenant_id)
                .where(tenants.c.domain == tenant)
                .order_by(call_records.c.started.desc(), call_records.c.id.desc())
                .limit(limit)
            ).all()
            legs: dict[int, list[LegRecord]] = {row.id: [] for row in rows}
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
                legs=tuple(legs[row.id]),
            )
            for row in rows
        ]

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
        # Tenants are never deleted through the store, so an id once seen stays valid and
        # the hot path (save_bindings) skips the lookup.
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
