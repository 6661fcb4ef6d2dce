"""Configuration through the API: `/config/{kind}` for every list of the configuration
file that can be provisioned (pbx/provisioning.py), and `/tenants`.

An item is the same object as in the YAML file and in `ipbx apply`. Writes are checked
against the whole configuration before anything is written (a route naming a trunk
that does not exist, a group member that is no extension, a deletion that would leave
a destination pointing nowhere: 422 or 409 naming the field and nothing changes), then
the server takes the change up at once and other nodes within seconds.

As api/app.py says of every route: the tenant and token routes only use the store and
are plain `def` routes; the item routes work on the configuration in use and await the
store's thread.
"""

from collections.abc import Callable
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Path, Response
from pydantic import BaseModel, Field, create_model

from ipbx.api import models
from ipbx.api.models import AUTH_ERRORS
from ipbx.api.paging import Limit, Offset, page
from ipbx.api.tokens import Scope, create_token
from ipbx.pbx import provisioning
from ipbx.pbx.extension import Extension
from ipbx.pbx.provisioning import KINDS, Change, ItemKind, ProvisioningError
from ipbx.store import DEFAULT_TENANT, ApiTokenRecord, Store, TenantInUse

if TYPE_CHECKING:
    from ipbx.api.services import PbxServices

TenantId = Annotated[str, Path(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$", description="its id")]


class Tenant(BaseModel):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9.-]{0,62}$", description="what tokens name it by")
    name: str = Field(default="", max_length=255)


class NewToken(BaseModel):
    scope: Scope = "read"
    name: str = Field(default="", max_length=255)


class IssuedToken(BaseModel):
    token: str = Field(description="shown this once: only its hash is kept")
    key_id: str
    scope: str
    tenant: str


def add_configuration_routes(
    app: FastAPI, pbx: "PbxServices", admin: Callable[..., ApiTokenRecord]
) -> None:
    Admin = Annotated[ApiTokenRecord, Depends(admin)]
    for kind in KINDS.values():
        _add_kind(app, pbx, kind, Admin)

    document = create_model(  # type: ignore[call-overload]
        "Provisioning",
        __doc__="Every provisioned list, as in the configuration file.",
        **{name: (list[kind.model], []) for name, kind in KINDS.items()},  # type: ignore[name-defined]
    )

    @app.get(
        "/config",
        response_model=document,
        response_model_exclude={
            name: {"__all__": set(kind.secrets)} for name, kind in KINDS.items() if kind.secrets
        },
        responses=AUTH_ERRORS,
        tags=["config"],
    )
    async def get_configuration(token: Admin) -> Any:
        """The configuration's provisioned lists as a whole: what `ipbx apply` takes."""
        return {name: tenant_items(pbx, kind, token.tenant) for name, kind in KINDS.items()}

    def system(token: ApiTokenRecord) -> None:
        if token.tenant != DEFAULT_TENANT:
            raise HTTPException(403, "tenants are managed with a token of the default tenant")

    @app.get("/tenants", response_model=models.Page[Tenant], responses=AUTH_ERRORS, tags=["config"])
    def list_tenants(
        token: Admin,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> models.Page[Tenant]:
        """The tenants (a tenant's token sees its own)."""
        items = [
            Tenant(id=t.id, name=t.name)
            for t in pbx.store.blocking.tenants()
            if token.tenant in (DEFAULT_TENANT, t.id)
        ]
        return page(items, limit, offset)

    @app.put(
        "/tenants/{tenant}",
        response_model=Tenant,
        responses={**AUTH_ERRORS, 201: {"model": Tenant}},
        tags=["config"],
    )
    def put_tenant(tenant: TenantId, body: Tenant, token: Admin, response: Response) -> Tenant:
        """Create a tenant, or rename it."""
        system(token)
        if body.id != tenant:
            raise HTTPException(422, f"id: {body.id!r} is not the id in the path ({tenant})")
        if pbx.store.blocking.save_tenant(tenant, body.name or tenant):
            response.status_code = 201
        return Tenant(id=tenant, name=body.name or tenant)

    @app.delete(
        "/tenants/{tenant}",
        status_code=204,
        responses={**AUTH_ERRORS, 404: {"model": models.Problem}, 409: {"model": models.Problem}},
        tags=["config"],
    )
    def delete_tenant(tenant: TenantId, token: Admin) -> Response:
        """Remove a tenant that holds nothing any more (409 while it does)."""
        system(token)
        if tenant == DEFAULT_TENANT:
            raise HTTPException(409, "tenant: the default tenant cannot be removed")
        try:
            found = pbx.store.blocking.delete_tenant(tenant)
        except TenantInUse as exc:
            raise HTTPException(409, f"tenant: {exc}") from None
        if not found:
            raise HTTPException(404, f"tenant: no tenant {tenant}")
        return Response(status_code=204)

    @app.post(
        "/tenants/{tenant}/tokens",
        response_model=IssuedToken,
        status_code=201,
        responses={**AUTH_ERRORS, 404: {"model": models.Problem}},
        tags=["config"],
    )
    def issue_token(tenant: TenantId, body: NewToken, token: Admin) -> IssuedToken:
        """A new API token for a tenant (its text is in this answer only)."""
        system(token)
        if pbx.store.blocking.tenant(tenant) is None:
            raise HTTPException(404, f"tenant: no tenant {tenant}")
        text, record = create_token(pbx.store.blocking, body.scope, tenant, body.name)
        return IssuedToken(token=text, key_id=record.key_id, scope=record.scope, tenant=tenant)


async def owned_item(pbx: "PbxServices", kind: ItemKind, tenant: str, item: Any) -> Any:
    """The item to write for `tenant` (the token's): 403 for routing outside the default
    tenant, 422 for another tenant's `tenant`, or a new extension without a password."""
    if not (kind.any_tenant or tenant == DEFAULT_TENANT):
        raise HTTPException(403, f"{kind.name}: call routing is the default tenant's")
    if kind.any_tenant and "tenant" in item.model_fields_set:
        if item.tenant != tenant:
            raise HTTPException(422, f"tenant: must be this token's own ({tenant})")
    elif kind.any_tenant:
        item = item.model_copy(update={"tenant": tenant})
    new = isinstance(item, Extension) and (
        await pbx.store.run(Store.get_extension, item.number) is None
    )
    if new and item.password is None:
        raise HTTPException(422, f"password: extension {item.number} is new and needs one")
    return item


async def apply_change(pbx: "PbxServices", change: Change) -> None:
    """Check a change with the whole configuration, write it, and take it up: 422 when
    the written item is wrong, 409 when another item would break; nothing is written
    then."""
    try:
        checked = await pbx.store.run(
            lambda store: provisioning.effective(pbx.base_config, store, change)
        )
    except ProvisioningError as exc:
        raise HTTPException(422 if exc.in_item else 409, str(exc)) from None
    await pbx.store.run(provisioning.write, change, checked)
    await pbx.reload(checked)


def removable(pbx: "PbxServices", kind: ItemKind, key: str) -> None:
    """409 for an item of the configuration file: the API cannot remove it."""
    if any(kind.key(i) == key for i in getattr(pbx.base_config, kind.name)):
        raise HTTPException(
            409, f"{kind.key_field}: {kind.name} item {key} is in the configuration file; "
            "remove it there",
        )  # fmt: skip


def tenant_items(pbx: "PbxServices", kind: ItemKind, tenant: str) -> list[Any]:
    """The tenant's items of a kind in the configuration the server runs."""
    if not (kind.any_tenant or tenant == DEFAULT_TENANT):
        return []
    return [item for item in getattr(pbx.config, kind.name) if kind.tenant_of(item) == tenant]


def find_item(pbx: "PbxServices", kind: ItemKind, tenant: str, key: str) -> Any:
    """The tenant's item of a kind with this key, as the server runs it; 404 if none."""
    for item in tenant_items(pbx, kind, tenant):
        if kind.key(item) == key:
            return item
    raise HTTPException(404, f"{kind.key_field}: no {kind.name} item {key}")


async def add_item(pbx: "PbxServices", kind: ItemKind, tenant: str, item: Any) -> Any:
    """Add an item (409 when its key is taken), checked and taken up as `apply_change`
    does; the item as the server took it up."""
    item = await owned_item(pbx, kind, tenant, item)
    key = kind.key(item)
    if any(kind.key(i) == key for i in tenant_items(pbx, kind, tenant)):
        raise HTTPException(409, f"{kind.key_field}: {kind.name} item {key} exists")
    await apply_change(pbx, Change(tenant, [(kind, item)]))
    return find_item(pbx, kind, tenant, key)


async def replace_item(pbx: "PbxServices", kind: ItemKind, tenant: str, key: str, item: Any) -> Any:
    """Add or replace the item with this key (422 when the item's own key differs)."""
    item = await owned_item(pbx, kind, tenant, item)
    if kind.key(item) != key:
        raise HTTPException(
            422, f"{kind.key_field}: {kind.key(item)!r} is not the key in the path ({key})"
        )
    await apply_change(pbx, Change(tenant, [(kind, item)]))
    return find_item(pbx, kind, tenant, key)


async def remove_item(pbx: "PbxServices", kind: ItemKind, tenant: str, key: str) -> None:
    """Remove an item: 404 when there is none, 409 while others point at it or the
    configuration file has it."""
    await owned_item(pbx, kind, tenant, find_item(pbx, kind, tenant, key))
    removable(pbx, kind, key)
    await apply_change(pbx, Change(tenant, remove=[(kind, key)]))


def _add_kind(app: FastAPI, pbx: "PbxServices", kind: ItemKind, Admin: Any) -> None:
    model: Any = kind.model
    name = kind.name
    path = f"/config/{name}"
    described = {
        **AUTH_ERRORS,
        404: {"model": models.Problem, "description": f"no such item in {name}"},
        409: {"model": models.Problem, "description": "it exists, or other items need it"},
    }
    Key = Annotated[str, Path(min_length=1, max_length=2048, description=f"its {kind.key_field}")]

    @app.get(
        path,
        response_model=models.Page[model],
        response_model_exclude={"items": {"__all__": set(kind.secrets)}},
        responses=AUTH_ERRORS,
        tags=["config"],
        summary=f"List {name}",
        description=f"The `{name}:` items in use.",
    )
    async def list_items(
        token: Admin,
        limit: Limit = 50,
        offset: Offset = 0,
    ) -> Any:
        items = tenant_items(pbx, kind, token.tenant)
        return page(items, limit, offset)

    @app.get(
        path + "/{key:path}",
        response_model=model,
        response_model_exclude=set(kind.secrets),
        responses=described,
        tags=["config"],
        summary=f"Get one of {name}",
        description=f"One, by its {kind.key_field}.",
    )
    async def get_item(key: Key, token: Admin) -> Any:
        return find_item(pbx, kind, token.tenant, key)

    @app.post(
        path,
        response_model=model,
        response_model_exclude=set(kind.secrets),
        status_code=201,
        responses=described,
        tags=["config"],
        summary=f"Add to {name}",
        description="Add an item; 409 when its key is taken.",
    )
    async def create_item(item: model, token: Admin) -> Any:
        return await add_item(pbx, kind, token.tenant, item)

    @app.put(
        path + "/{key:path}",
        response_model=model,
        response_model_exclude=set(kind.secrets),
        responses=described,
        tags=["config"],
        summary=f"Put one of {name}",
        description="Add or replace the item with this key (idempotent).",
    )
    async def put_item(key: Key, item: model, token: Admin) -> Any:
        return await replace_item(pbx, kind, token.tenant, key, item)

    @app.delete(
        path + "/{key:path}",
        status_code=204,
        responses=described,
        tags=["config"],
        summary=f"Remove one of {name}",
        description="409 while other items point at it or the file has it.",
    )
    async def delete_item(key: Key, token: Admin) -> Response:
        await remove_item(pbx, kind, token.tenant, key)
        return Response(status_code=204)
