"""Registrations in the store: the location service's bindings, written behind in
batches (pbx/location.py) and read back at start-up."""

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, delete, insert, select

from ipbx.store.database import Database
from ipbx.store.records import DEFAULT_TENANT, BindingRecord
from ipbx.store.schema import registrations

# The registrar's statements, built once: constructing a statement per call costs more
# than SQLite takes to run it.
_DELETE_AOR = delete(registrations).where(
    registrations.c.tenant_id == bindparam("tenant_id"), registrations.c.aor == bindparam("aor")
)
_INSERT_BINDING = insert(registrations)


class Registrations(Database):
    """The bindings of every address of record (RFC 3261 §10.3)."""

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
                    behind_nat=row.behind_nat,
                )
                for row in rows
            ]


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
        "behind_nat": binding.behind_nat,
    }
