"""The API tokens page: the tenant's tokens (key id, scope, name, created; never a
secret), a new one shown once, and revocation, as GET/DELETE /tokens and `ipbx token`
do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from ipbx.api.tokens import SCOPES, Scope, create_token
from ipbx.store import Store
from ipbx.web.forms import Errors
from ipbx.web.visitor import Visitor, editor, page, visitor

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices


def add_token_pages(app: FastAPI, pbx: PbxServices) -> None:
    async def listing(request: Request, who: Visitor, issued: str = "",
                      errors: Errors | None = None, status: int = 200) -> Response:  # fmt: skip
        tokens = await pbx.store.run(Store.api_tokens, who.tenant)
        response: Response = page(
            request, "tokens.html", who, status, tokens=tokens, scopes=SCOPES, issued=issued,
            errors=errors or {},
        )  # fmt: skip
        return response

    @app.get("/admin/{tenant}/tokens", include_in_schema=False)
    async def tokens(request: Request, tenant: str) -> Response:
        return await listing(request, await visitor(pbx, request, tenant))

    @app.post("/admin/{tenant}/tokens", include_in_schema=False)
    async def issue(request: Request, tenant: str) -> Response:
        who, form = await editor(pbx, request, tenant)
        scope, name = form.get("scope", ""), form.get("name", "").strip()
        if scope not in SCOPES:
            return await listing(request, who, errors={"scope": "choose read or admin"},
                                 status=422)  # fmt: skip
        if len(name) > 255:
            return await listing(request, who, errors={"name": "at most 255 characters"},
                                 status=422)  # fmt: skip
        chosen: Scope = "admin" if scope == "admin" else "read"
        text, _ = await pbx.store.run(create_token, chosen, tenant, name)
        return await listing(request, who, issued=text, status=201)

    @app.post("/admin/{tenant}/tokens/revoke", include_in_schema=False)
    async def revoke(request: Request, tenant: str) -> Response:
        who, form = await editor(pbx, request, tenant)
        key_id = form.get("key_id", "")
        if not await pbx.store.run(Store.delete_api_token, key_id, tenant):
            return await listing(request, who, errors={"": f"no token {key_id}"}, status=404)
        return RedirectResponse(f"/admin/{tenant}/tokens", 303)
