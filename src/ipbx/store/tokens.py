"""API tokens in the store: only their salted hashes (api/tokens.py)."""

from typing import Any

from sqlalchemy import delete, insert, select

from ipbx.store.database import Database
from ipbx.store.records import ApiTokenRecord
from ipbx.store.schema import api_tokens, tenants

_TOKENS = select(api_tokens, tenants.c.domain).join(tenants, tenants.c.id == api_tokens.c.tenant_id)


class ApiTokens(Database):
    """The tokens the API is called with, by tenant."""

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
