"""The web administration's users and sessions in the store (web/accounts.py decides
what is hashed, when a user is locked out and how long a session lasts)."""

from typing import Any

from sqlalchemy import delete, insert, select, update

from ipbx.store.database import Database
from ipbx.store.records import AdminSessionRecord, AdminUserRecord
from ipbx.store.schema import admin_sessions, admin_users, tenants

_USERS = select(admin_users, tenants.c.domain).join(
    tenants, tenants.c.id == admin_users.c.tenant_id
)


class AdminUsers(Database):
    """Users by their unique name, each of one tenant; their sessions by digest."""

    def save_admin_user(self, user: AdminUserRecord) -> bool:
        """Create a user (its tenant too if it is new) or replace its tenant, role and
        password (which clears a lock-out); True when it is new."""
        with self._engine.begin() as connection:
            tenant_id = self._tenant_id(connection, user.tenant, create=True)
            values = {
                "tenant_id": tenant_id,
                "role": user.role,
                "password_hash": user.password_hash,
                "failures": user.failures,
                "locked_until": user.locked_until,
                "failed_from": " ".join(sorted(user.failed_from)),
            }
            changed = connection.execute(
                update(admin_users).where(admin_users.c.name == user.name).values(**values)
            )
            if changed.rowcount:
                return False
            connection.execute(
                insert(admin_users).values(name=user.name, created=user.created, **values)
            )
        return True

    def admin_user(self, name: str) -> AdminUserRecord | None:
        with self._engine.connect() as connection:
            row = connection.execute(_USERS.where(admin_users.c.name == name)).first()
        return None if row is None else _user(row)

    def admin_users(self, tenant: str | None = None) -> list[AdminUserRecord]:
        """The users of `tenant` (None: of every tenant), by name."""
        query = _USERS.order_by(admin_users.c.name)
        if tenant is not None:
            query = query.where(tenants.c.domain == tenant)
        with self._engine.connect() as connection:
            return [_user(row) for row in connection.execute(query)]

    def delete_admin_user(self, name: str) -> bool:
        """Remove a user and its sessions; False when there is no such user."""
        with self._engine.begin() as connection:
            deleted = connection.execute(delete(admin_users).where(admin_users.c.name == name))
        return bool(deleted.rowcount)

    def set_admin_user_failures(
        self,
        name: str,
        failures: int,
        locked_until: float | None,
        failed_from: frozenset[str] = frozenset(),
    ) -> None:
        """Record a sign-in's outcome: the wrong passwords in a row, the addresses they
        came from and any lock-out."""
        with self._engine.begin() as connection:
            connection.execute(
                update(admin_users)
                .where(admin_users.c.name == name)
                .values(
                    failures=failures,
                    locked_until=locked_until,
                    failed_from=" ".join(sorted(failed_from)),
                )
            )

    def save_admin_session(self, name: str, digest: str, csrf: str, expires: float) -> None:
        with self._engine.begin() as connection:
            user_id = connection.scalar(select(admin_users.c.id).where(admin_users.c.name == name))
            if user_id is None:
                raise LookupError(f"no admin user {name}")
            connection.execute(
                insert(admin_sessions).values(
                    user_id=user_id, digest=digest, csrf=csrf, expires=expires
                )
            )

    def admin_session(self, digest: str, now: float) -> AdminSessionRecord | None:
        """The session with this digest, None when there is none or it has expired."""
        query = _USERS.add_columns(admin_sessions.c.csrf, admin_sessions.c.expires).join(
            admin_sessions, admin_sessions.c.user_id == admin_users.c.id
        )
        with self._engine.connect() as connection:
            row = connection.execute(
                query.where(admin_sessions.c.digest == digest, admin_sessions.c.expires > now)
            ).first()
        if row is None:
            return None
        return AdminSessionRecord(user=_user(row), csrf=row.csrf, expires=row.expires)

    def delete_admin_sessions(
        self, *, digest: str | None = None, before: float | None = None
    ) -> None:
        """Sign a session out (`digest`), or drop every session expired `before`."""
        condition = (
            admin_sessions.c.digest == digest
            if digest is not None
            else admin_sessions.c.expires <= (before or 0.0)
        )
        with self._engine.begin() as connection:
            connection.execute(delete(admin_sessions).where(condition))


def _user(row: Any) -> AdminUserRecord:
    return AdminUserRecord(
        name=row.name,
        tenant=row.domain,
        role=row.role,
        password_hash=row.password_hash,
        created=row.created,
        failures=row.failures,
        locked_until=row.locked_until,
        failed_from=frozenset(row.failed_from.split()),
    )
