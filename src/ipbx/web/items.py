"""A page for every list of the configuration that can be provisioned (trunks, numbers,
outbound routes, groups, queues, IVR menus, schedules, announcements, blacklist,
webhooks, and every setting of an extension): its items, and a form per item built
from the item's model. A field that holds text, a number, a choice or a destination is
an input; a field that holds a list or a nested setting is a YAML text area, written
as in the configuration file. The checks are the model's and the API's service layer
(api/configuration.py), with the whole configuration; an error shows next to the field
it names and nothing changes."""

from __future__ import annotations

import types
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, Union, get_args, get_origin

import yaml
from fastapi import FastAPI, HTTPException, Request, Response
from fastapi.responses import RedirectResponse
from pydantic import BaseModel

from ipbx.api.configuration import add_item, find_item, remove_item, replace_item, tenant_items
from ipbx.pbx.provisioning import KINDS, ItemKind
from ipbx.web.forms import Errors, attempt, build, filled
from ipbx.web.visitor import Visitor, editor, page, visitor

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices


# Fields that hold a password in an item that keeps it (a trunk's, a webhook's secret).
SECRET_NAMES = frozenset({"password", "secret"})


@dataclass(frozen=True)
class Field:
    """One input of an item's form: `name` as the file writes it."""

    name: str
    structured: bool  # a list or nested setting: YAML in a text area
    secret: bool  # a password: never shown; left empty, the old one stays
    required: bool


def fields(kind: ItemKind) -> list[Field]:
    return [
        Field(
            name=info.alias or name,
            structured=_structured(info.annotation),
            secret=name in kind.secrets or name in SECRET_NAMES,
            required=info.is_required(),
        )
        for name, info in kind.model.model_fields.items()
    ]


def _structured(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin in (list, dict, tuple, set):
        return True
    if origin in (Union, types.UnionType, Annotated):
        return any(_structured(arg) for arg in get_args(annotation))
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def shown(kind: ItemKind, item: Any) -> dict[str, str]:
    """An item's fields as its form shows them (passwords never)."""
    values: dict[str, str] = {}
    for name, value in kind.dump(item).items():
        if name in SECRET_NAMES:
            continue
        if isinstance(value, (dict, list)):
            values[name] = yaml.safe_dump(value, sort_keys=False, allow_unicode=True).strip()
        else:
            values[name] = "" if value is None else str(value)
    return values


def parsed(kind: ItemKind, form: dict[str, str]) -> tuple[dict[str, Any], Errors]:
    """A form's filled fields as the item's data: YAML read where the field is a list
    or a nested setting (a YAML error is that field's error)."""
    data: dict[str, Any] = {}
    errors: Errors = {}
    structured = {field.name for field in fields(kind) if field.structured}
    for name, text in filled(form).items():
        if name not in structured:
            data[name] = text
            continue
        try:
            data[name] = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            errors[name] = f"not YAML: {getattr(exc, 'problem', None) or exc}"
    return data, errors


def add_item_pages(app: FastAPI, pbx: PbxServices) -> None:
    def kind_of(name: str) -> ItemKind:
        if name not in KINDS:
            raise HTTPException(404, f"kind: no configuration list {name}")
        return KINDS[name]

    def listing(request: Request, who: Visitor, kind: ItemKind, form: dict[str, str] | None = None,
                errors: Errors | None = None, status: int = 200) -> Response:  # fmt: skip
        response: Response = page(
            request, "items.html", who, status, kind=kind, fields=fields(kind),
            items=tenant_items(pbx, kind, who.tenant), form=form or {}, errors=errors or {},
        )  # fmt: skip
        return response

    def editing(request: Request, who: Visitor, kind: ItemKind, key: str, form: dict[str, str],
                errors: Errors, status: int = 200) -> Response:  # fmt: skip
        response: Response = page(
            request, "item.html", who, status, kind=kind, key=key, fields=fields(kind),
            form=form, errors=errors,
        )  # fmt: skip
        return response

    @app.get("/admin/{tenant}/config/{name}", include_in_schema=False)
    async def items(request: Request, tenant: str, name: str) -> Response:
        return listing(request, await visitor(pbx, request, tenant), kind_of(name))

    @app.post("/admin/{tenant}/config/{name}", include_in_schema=False)
    async def create(request: Request, tenant: str, name: str) -> Response:
        kind = kind_of(name)
        who, form = await editor(pbx, request, tenant)
        data, errors = parsed(kind, form)
        item, errors = build(kind, data) if not errors else (None, errors)
        if item is not None:
            names = {field.name for field in fields(kind)}
            _, errors = await attempt(add_item(pbx, kind, tenant, item), names)
        if errors:
            return listing(request, who, kind, form, errors, 422)
        return RedirectResponse(f"/admin/{tenant}/config/{name}", 303)

    @app.post("/admin/{tenant}/remove/{name}", include_in_schema=False)
    async def remove(request: Request, tenant: str, name: str) -> Response:
        kind = kind_of(name)
        who, form = await editor(pbx, request, tenant)
        _, errors = await attempt(remove_item(pbx, kind, tenant, form.get("key", "")), set())
        if errors:
            return listing(request, who, kind, None, errors, 409)
        return RedirectResponse(f"/admin/{tenant}/config/{name}", 303)

    @app.get("/admin/{tenant}/config/{name}/{key:path}", include_in_schema=False)
    async def item(request: Request, tenant: str, name: str, key: str) -> Response:
        kind = kind_of(name)
        who = await visitor(pbx, request, tenant)
        found = find_item(pbx, kind, tenant, key)
        return editing(request, who, kind, key, shown(kind, found), {})

    @app.post("/admin/{tenant}/config/{name}/{key:path}", include_in_schema=False)
    async def change(request: Request, tenant: str, name: str, key: str) -> Response:
        kind = kind_of(name)
        who, form = await editor(pbx, request, tenant)
        kept = {
            name: value
            for name, value in kind.dump(find_item(pbx, kind, tenant, key)).items()
            if name in SECRET_NAMES
        }
        data, errors = parsed(kind, {**form, kind.key_field: key})
        data = {**kept, **data}
        item, errors = build(kind, data) if not errors else (None, errors)
        if item is not None:
            names = {field.name for field in fields(kind)}
            _, errors = await attempt(replace_item(pbx, kind, tenant, key, item), names)
        if errors:
            return editing(request, who, kind, key, form, errors, 422)
        return RedirectResponse(f"/admin/{tenant}/config/{name}", 303)
