"""The extensions of the PBX, kept in memory: every REGISTER and INVITE looks one up, and
a database query each time cost a fifth of the registrar's time. The PBX hands it the
store's extensions at start-up and again whenever provisioning changes them."""

from __future__ import annotations

from collections.abc import Iterable

from ipbx.store.records import ExtensionRecord


class Directory:
    def __init__(self, extensions: Iterable[ExtensionRecord]) -> None:
        self._by_number: dict[str, ExtensionRecord] = {}
        self.replace(extensions)

    def replace(self, extensions: Iterable[ExtensionRecord]) -> None:
        self._by_number = {ext.number: ext for ext in extensions}

    def get(self, number: str) -> ExtensionRecord | None:
        return self._by_number.get(number)

    def __len__(self) -> int:
        return len(self._by_number)
