"""The extensions of the PBX, kept in memory: every REGISTER and INVITE looks one up, and
a database query each time cost a fifth of the registrar's time. Reloaded from the store
whenever provisioning changes them."""

from __future__ import annotations

from ipbx.store.records import ExtensionRecord
from ipbx.store.store import Store


class Directory:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._by_number: dict[str, ExtensionRecord] = {}
        self.reload()

    def reload(self) -> None:
        self._by_number = {ext.number: ext for ext in self._store.list_extensions()}

    def get(self, number: str) -> ExtensionRecord | None:
        return self._by_number.get(number)

    def __len__(self) -> int:
        return len(self._by_number)
