"""The extensions page: the list with who is registered, a form to add one, one to
change one (an empty password keeps the old), and removal. Every change goes through
the API's service layer (api/configuration.py), so it is checked with the whole
configuration; a refusal shows next to its field and changes nothing."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse

from ipbx.api.configuration import add_item, find_item, remove_item, replace_item, tenant_items
from ipbx.pbx.provisioning import KINDS
from ipbx.web.forms import Errors, attempt, build, filled
from ipbx.web.visitor import Visitor, editor, page, visitor

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices

FIELDS = {"number", "name", "password"}


def add_extension_pages(app: FastAPI, pbx: PbxServices) -> None:
    kind = KINDS["extensions"]

    def listing(
        request: Request, who: Visitor, form: dict[str, str] | None = None,
        errors: Errors | None = None, status: int = 200,
    ) -> Response:  # fmt: skip
        registered = {b.aor for b in pbx.location.all_bindings(time.time())}
        items = tenant_items(pbx, kind, who.tenant)
        response: Response = page(
            request, "extensions.html", who, status, items=items, registered=registered,
            form=form or {}, errors=errors or {},
        )  # fmt: skip
        return response

    def editing(request: Request, who: Visitor, item: Any, form: dict[str, str],
                errors: Errors, status: int = 200) -> Response:  # fmt: skip
        response: Response = page(
            request, "extension.html", who, status, item=item, form=form, errors=errors
        )
        return response

    @app.get("/admin/{tenant}/extensions", include_in_schema=False)
    async def extensions(request: Request, tenant: str) -> Response:
        return listing(request, await visitor(pbx, request, tenant))

    @app.post("/admin/{tenant}/extensions", include_in_schema=False)
    async def create(request: Request, tenant: str) -> Response:
        who, form = await editor(pbx, request, tenant)
        item, errors = build(kind, filled(form))
        if item is not None:
            _, errors = await attempt(add_item(pbx, kind, tenant, item), FIELDS)
        if errors:
            return listing(request, who, form, errors, 422)
        return RedirectResponse(f"/admin/{tenant}/extensions", 303)

    @app.get("/admin/{tenant}/extensions/{number}", include_in_schema=False)
    async def extension(request: Request, tenant: str, number: str) -> Response:
        who = await visitor(pbx, request, tenant)
        item = find_item(pbx, kind, tenant, number)
        return editing(request, who, item, {"name": item.name}, {})

    @app.post("/admin/{tenant}/extensions/{number}", include_in_schema=False)
    async def change(request: Request, tenant: str, number: str) -> Response:
        who, form = await editor(pbx, request, tenant)
        old = find_item(pbx, kind, tenant, number)
        item, errors = build(kind, {**kind.dump(old), **filled(form), "number": number})
        if item is not None:
            _, errors = await attempt(replace_item(pbx, kind, tenant, number, item), FIELDS)
        if errors:
            return editing(request, who, old, form, errors, 422)
        return RedirectResponse(f"/admin/{tenant}/extensions", 303)

    @app.post("/admin/{tenant}/extensions/{number}/delete", include_in_schema=False)
    async def delete(request: Request, tenant: str, number: str) -> Response:
        who, _ = await editor(pbx, request, tenant)
        _, errors = await attempt(remove_item(pbx, kind, tenant, number), set())
        if errors:
            return listing(request, who, None, errors, 409)
        return RedirectResponse(f"/admin/{tenant}/extensions", 303)
