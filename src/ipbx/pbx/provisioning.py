"""Provisioned configuration: the items of the configuration file's lists (extensions,
trunks, numbers, outbound routes, groups, menus, schedules, announcements, blacklist
entries, webhooks: every list of Items, pbx/schema.py) that the API and `ipbx apply`
write to the database.

The configuration a server runs on is the file's, with every provisioned item added,
or put in place of the file's item with the same key: the file gives the starting
point, the API changes it, and the change outlives a restart. An item is the same JSON
object in the API as in the file (docs/api.md). The whole result is validated as the
file is (references, loops), so a change that would leave a destination pointing
nowhere is refused before anything is written.

Call routing is the default tenant's: other tenants provision webhooks only.

An extension's password is never stored: the extensions table keeps its digests
(store/provisioning.py), written in the same transaction as the item, which is kept
without it. Extensions in that table without an item (the file's, synced at start) are
in the configuration with their number and name.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from ipbx.config import Config
from ipbx.pbx.extension import Extension
from ipbx.pbx.schema import Item, item_lists
from ipbx.store import DEFAULT_TENANT, ExtensionRecord, ProvisionedRecord, Store


@dataclass(frozen=True)
class ItemKind:
    """One list of the configuration file whose items can be provisioned."""

    name: str  # the list's key in the file, and the API's path /config/{name}
    model: type[Item]

    @property
    def key_field(self) -> str:
        """The field that names an item."""
        return self.model.key_field

    @property
    def any_tenant(self) -> bool:
        """False: the default tenant's only (call routing)."""
        return self.model.any_tenant

    @property
    def secrets(self) -> frozenset[str]:
        """Written, never stored in the item nor shown."""
        return self.model.secrets

    def key(self, item: Item) -> str:
        return item.key()

    def dump(self, item: Item) -> dict[str, Any]:
        """The item as the API shows it and the database keeps it."""
        return item.model_dump(
            mode="json", by_alias=True, exclude_defaults=True, exclude=set(self.secrets)
        )

    def tenant_of(self, item: Item) -> str:
        return str(getattr(item, "tenant", DEFAULT_TENANT)) if self.any_tenant else DEFAULT_TENANT


# Every list of Items in the configuration file, in the file's order: a feature's list
# is provisioned as soon as Config has it.
KINDS: dict[str, ItemKind] = {
    name: ItemKind(name, model) for name, model in item_lists(Config).items()
}


# The (kind, key) of the items a write added, changed and removed.
Written = tuple[list[tuple[str, str]], list[tuple[str, str]], list[tuple[str, str]]]


class ProvisioningError(ValueError):
    """A provisioned configuration that does not validate. The message starts with
    where: a path into the item that was written (``trunks[0]``), or into another item
    (``outbound_routes/intl.trunks[0]``) when the change broke that one (`in_item`
    False)."""

    def __init__(self, field: str, message: str, in_item: bool) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.in_item = in_item


@dataclass(frozen=True)
class Change:
    """Items to write (kind, item) and to remove (kind, key), for one tenant."""

    tenant: str = DEFAULT_TENANT
    put: Sequence[tuple[ItemKind, Item]] = ()
    remove: Sequence[tuple[ItemKind, str]] = ()


def effective(base: Config, store: Store, change: Change | None = None) -> Config:
    """The configuration `base` (the file's) with the database's items, and `change`
    on top when given (to check it before it is written). ProvisioningError when the
    result does not validate."""
    return _compose(base, store.provisioned(), store.list_extensions(), change)


def _compose(
    base: Config,
    records: Iterable[ProvisionedRecord],
    extensions: Iterable[ExtensionRecord] = (),
    change: Change | None = None,
) -> Config:
    lists: dict[str, dict[tuple[str, str], Any]] = {
        name: {(kind.tenant_of(item), kind.key(item)): item for item in getattr(base, name)}
        for name, kind in KINDS.items()
    }
    for known in extensions:
        lists["extensions"].setdefault(
            (DEFAULT_TENANT, known.number), Extension(number=known.number, name=known.name)
        )
    for record in records:
        kind = KINDS.get(record.kind)
        if kind is None or not (kind.any_tenant or record.tenant == DEFAULT_TENANT):
            continue
        try:
            item = kind.model.model_validate(json.loads(record.body))
        except (ValidationError, ValueError) as exc:
            raise ProvisioningError(
                f"{record.kind}/{record.key}", f"stored item no longer valid: {exc}", False
            ) from None
        lists[kind.name][record.tenant, record.key] = item
    changed: tuple[str, int] | None = None
    if change is not None:
        for kind, key in change.remove:
            lists[kind.name].pop((change.tenant, key), None)
        for kind, item in change.put:
            items = lists[kind.name]
            items[change.tenant, kind.key(item)] = item
            changed = (kind.name, list(items).index((change.tenant, kind.key(item))))
    numbers = {number for _, number in lists["extensions"]}
    for at, extension in lists["extensions"].items():
        forward = extension.forward.to_extensions(numbers)
        if forward is not extension.forward:
            lists["extensions"][at] = extension.model_copy(update={"forward": forward})
    data = {name: getattr(base, name) for name in Config.model_fields}
    data.update({name: list(items.values()) for name, items in lists.items()})
    try:
        return Config.model_validate(data, context={"provisioned": True})
    except ValidationError as exc:
        keys = {name: [key for _, key in items] for name, items in lists.items()}
        raise _problem(exc, changed, keys) from None


def _problem(
    exc: ValidationError, changed: tuple[str, int] | None, keys: dict[str, list[str]]
) -> ProvisioningError:
    error = exc.errors(include_url=False)[0]
    ctx = error.get("ctx") or {}
    loc = tuple(error["loc"]) + tuple(ctx.get("at", ()))
    message = str(ctx["error"]) if error["type"] == "value_error" else error["msg"]
    if changed is not None and loc[:2] == changed:
        return ProvisioningError(_path(loc[2:]), message, True)
    if len(loc) >= 2 and loc[0] in keys and isinstance(loc[1], int):
        # Another item broke: named by its key, which the API finds it by.
        inside = _path(loc[2:])
        where = f"{loc[0]}/{keys[str(loc[0])][loc[1]]}"
        return ProvisioningError(f"{where}.{inside}" if inside else where, message, False)
    return ProvisioningError(_path(loc), message, False)


def _path(loc: Sequence[int | str]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def apply(store: Store, config: Config, tenant: str = DEFAULT_TENANT) -> Written:
    """Write every item of `config`'s provisioned lists (what `ipbx apply FILE` does):
    added or changed, never removed. Checked as a whole before anything is written."""
    put = [
        (kind, item)
        for name, kind in KINDS.items()
        for item in getattr(config, name)
        if kind.any_tenant or tenant == DEFAULT_TENANT
    ]
    change = Change(tenant, put)
    return write(store, change, effective(config, store, change))


def write(store: Store, change: Change, checked: Config) -> Written:
    """Write a change as `checked` (its effective configuration) has its items; the
    (kind, key) added, changed and removed."""
    items = []
    credentials = []
    for kind, item in change.put:
        key = kind.key(item)
        final = next(i for i in getattr(checked, kind.name) if kind.key(i) == key)
        items.append((kind.name, key, json.dumps(kind.dump(final))))
        if isinstance(item, Extension):
            credentials.append((item.number, item.name, item.password))
    return store.write_provisioned(
        change.tenant,
        items,
        [(kind.name, key) for kind, key in change.remove],
        credentials,
        checked.sip.realm,
    )
