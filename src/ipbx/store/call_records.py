"""Call detail records in the store: one row per call, one per leg with its media
quality, written in batches as calls end and searched by the API and `ipbx calls`."""

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Connection, func, insert, or_, select

from ipbx.store.database import Database
from ipbx.store.records import DEFAULT_TENANT, CallRecord, LegRecord
from ipbx.store.schema import call_legs, call_records, tenants

# The write-behind's statements, built once; the records of a batch go in one statement
# (with their ids back in the order given) and their legs in another.
_INSERT_RECORDS = insert(call_records).returning(call_records.c.id, sort_by_parameter_order=True)
_INSERT_LEGS = insert(call_legs)


class CallRecords(Database):
    """Finished calls, searchable by start time, number and result."""

    def save_call_records(
        self, records: Sequence[CallRecord], tenant: str = DEFAULT_TENANT
    ) -> None:
        """Write finished calls, in one transaction: the PBX hands them over in batches."""
        if not records:
            return
        with self._engine.begin() as connection:
            tenant_id = self._tenant_id(connection, tenant, create=False)
            ids = connection.execute(
                _INSERT_RECORDS, [_record_row(tenant_id, record) for record in records]
            ).scalars()
            legs = [
                _leg_row(record_id, leg)
                for record_id, record in zip(ids, records, strict=True)
                for leg in record.legs
            ]
            if legs:
                connection.execute(_INSERT_LEGS, legs)

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
                person_answered=row.person_answered,
                end_reason=row.end_reason,
                legs=tuple(legs[row.id]),
            )
            for row in rows
        ]


def _started_between(tenant: str, since: float | None, until: float | None) -> list[Any]:
    """The conditions of the tenant's calls started in [since, until)."""
    conditions: list[Any] = [tenants.c.domain == tenant]
    if since is not None:
        conditions.append(call_records.c.started >= since)
    if until is not None:
        conditions.append(call_records.c.started < until)
    return conditions


def _record_row(tenant_id: int, record: CallRecord) -> dict[str, Any]:
    return {
        "tenant_id": tenant_id,
        "call_id": record.call_id,
        "caller": record.caller,
        "callee": record.callee,
        "started": record.started,
        "answered": record.answered,
        "ended": record.ended,
        "result": record.result,
        "digits": record.digits,
        "recording": record.recording,
        "path": record.path,
        "direction": record.direction,
        "person_answered": record.person_answered,
        "end_reason": record.end_reason,
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
