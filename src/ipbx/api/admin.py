"""GET /tokens and DELETE /tokens/{key_id}: the API tokens of the caller's tenant, and
their revocation (admin scope; ``ipbx token list|revoke`` do the same for every tenant).

A listing shows what identifies a token (key id, scope, name, created), never its salt
or digest. A revoked token's row is deleted: tokens are checked against the store on
every request, so the next request with it gets 401.
"""

# No `from __future__ import annotations`: FastAPI reads the endpoints' annotations at
# run time, and the token dependency is a name local to add_token_routes.
from collections.abc import Callable
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Path
from fastapi.responses import Response
from pydantic import BaseModel, Field

from ipbx.api import models
from ipbx.api.models import AUTH_ERRORS
from ipbx.api.paging import Limit, Offset, not_found, page
from ipbx.store import ApiTokenRecord, Store


class Token(BaseModel):
    """An API token as listed: what identifies it, never its secret."""

    key_id: str = Field(description="the public part: ipbx_<key_id>_<secret>")
    scope: str = Field(description="read or admin")
    name: str = Field(description="the note given at creation")
    created: float = Field(description="epoch seconds")


def add_token_routes(
    app: FastAPI, store: Store, needs_admin: Callable[..., ApiTokenRecord]
) -> None:
    Admin = Annotated[ApiTokenRecord, Depends(needs_admin)]

    @app.get("/tokens", response_model=models.Page[Token], responses=AUTH_ERRORS, tags=["tokens"])
    def list_tokens(token: Admin, limit: Limit = 50, offset: Offset = 0) -> models.Page[Token]:
        """The tenant's API tokens, oldest first (admin)."""
        items = [
            Token(key_id=t.key_id, scope=t.scope, name=t.name, created=t.created)
            for t in store.api_tokens(token.tenant)
        ]
        return page(items, limit, offset)

    @app.delete(
        "/tokens/{key_id}",
        status_code=204,
        responses={**AUTH_ERRORS, **not_found("no token with this key id in the tenant")},
        tags=["tokens"],
    )
    def revoke_token(
        token: Admin, key_id: Annotated[str, Path(pattern=r"^[0-9a-f]{1,32}$")]
    ) -> Response:
        """Revoke a token of the tenant (admin; it may be the caller's own): from the
        next request on it gets 401."""
        if not store.delete_api_token(key_id, token.tenant):
            raise HTTPException(404, f"key_id: no token {key_id}")
        return Response(status_code=204)
