"""The location service: which contacts an address-of-record is reachable at.

Bindings live in memory for lookups on every call and are written behind to the store in
batches (`flush`, a few times a second and at shutdown), so registrations survive a
restart without a database transaction per REGISTER. A refresh that changes nothing but
the expiry is written only when the stored expiry would lapse before half of the newly
granted interval: after a restart every binding is still valid when its phone next
refreshes (phones refresh before half their interval, or get written every time).

Each binding remembers the address its REGISTER came from and whether that REGISTER showed
the phone behind NAT: requests to the phone go to its Contact, or to that source address
when NAT was detected or over the phone's live connection (pbx/nat.py says how).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ipbx.pbx.nat import contact_address, request_target
from ipbx.sip.transaction import Address
from ipbx.sip.uri import Uri, parse_uri
from ipbx.store import AsyncStore, BindingRecord, Store


@dataclass
class Binding:
    aor: str
    uri: Uri
    expires_at: float
    call_id: str
    cseq: int
    source: Address
    instance_id: str | None = None
    user_agent: str = ""
    q: float = 1.0
    reachable: bool = True
    behind_nat: bool = False
    missed_pings: int = field(default=0, compare=False)

    def destination(self, connected: Callable[[Address], bool]) -> Address:
        """Where requests to this contact go; `connected` tells whether a connection to an
        address is open."""
        return request_target(
            self.source, contact_address(self.uri), self.behind_nat, connected(self.source)
        )

    def record(self) -> BindingRecord:
        return BindingRecord(
            aor=self.aor,
            contact_uri=str(self.uri),
            expires_at=self.expires_at,
            call_id=self.call_id,
            cseq=self.cseq,
            transport=self.source.transport,
            host=self.source.host,
            port=self.source.port,
            instance_id=self.instance_id,
            user_agent=self.user_agent,
            q=self.q,
            behind_nat=self.behind_nat,
        )

    @classmethod
    def from_record(cls, rec: BindingRecord) -> Binding:
        return cls(
            aor=rec.aor,
            uri=parse_uri(rec.contact_uri),
            expires_at=rec.expires_at,
            call_id=rec.call_id,
            cseq=rec.cseq,
            source=Address(rec.transport, rec.host, rec.port),
            instance_id=rec.instance_id,
            user_agent=rec.user_agent,
            q=rec.q,
            behind_nat=rec.behind_nat,
        )


class Location:
    def __init__(self, store: AsyncStore) -> None:
        self._store = store
        self._bindings: dict[str, list[Binding]] = {}
        self._dirty: set[str] = set()
        # What the store holds, per AOR: contact key -> (source, instance, expires_at).
        self._stored: dict[str, dict[tuple[object, ...], _Stored]] = {}

    async def load(self, now: float) -> int:
        """Read the bindings that outlived a restart; returns how many."""
        records = await self._store.run(Store.load_bindings, now)
        self._bindings.clear()
        for rec in records:
            self._bindings.setdefault(rec.aor, []).append(Binding.from_record(rec))
        self._stored = {aor: _stored(b) for aor, b in self._bindings.items()}
        return len(records)

    def bindings(self, aor: str, now: float) -> list[Binding]:
        """Unexpired bindings of `aor`, best q first."""
        current = [b for b in self._bindings.get(aor, ()) if b.expires_at > now]
        return sorted(current, key=lambda b: -b.q)

    def reachable(self, aor: str, now: float) -> list[Binding]:
        return [b for b in self.bindings(aor, now) if b.reachable]

    def has_host(self, host: str) -> bool:
        """Whether any phone is registered from this address (any port, any expiry)."""
        return any(b.source.host == host for bindings in self._bindings.values() for b in bindings)

    def all_bindings(self, now: float) -> list[Binding]:
        return [b for aor in list(self._bindings) for b in self.bindings(aor, now)]

    def replace(self, aor: str, bindings: list[Binding], now: float) -> None:
        if bindings:
            self._bindings[aor] = bindings
        else:
            self._bindings.pop(aor, None)
        if not self._stored_enough(aor, bindings, now):
            self._dirty.add(aor)

    def _stored_enough(self, aor: str, bindings: list[Binding], now: float) -> bool:
        stored = self._stored.get(aor, {})
        if stored.keys() != {b.uri.key() for b in bindings}:
            return False
        for b in bindings:
            source, instance, expires_at = stored[b.uri.key()]
            if source != b.source or instance != b.instance_id:
                return False
            if expires_at < b.expires_at - (b.expires_at - now) / 2:
                return False
        return True

    async def flush(self) -> int:
        """Write the AORs changed since the last flush in one transaction. Registrations
        go on while it is written; an AOR that failed to be written is written with the
        next flush."""
        if not self._dirty:
            return 0
        taken = {aor: self._bindings.get(aor, []) for aor in self._dirty}
        self._dirty.clear()
        changes = {aor: [b.record() for b in bindings] for aor, bindings in taken.items()}
        written = {aor: _stored(bindings) for aor, bindings in taken.items()}
        try:
            await self._store.run(Store.save_bindings, changes)
        except Exception:
            self._dirty.update(changes)
            raise
        self._stored.update(written)
        return len(changes)

    def mark(self, binding: Binding, reachable: bool) -> None:
        binding.missed_pings = 0 if reachable else binding.missed_pings + 1
        binding.reachable = reachable

    def expire(self, now: float) -> list[str]:
        """Forget expired bindings in memory; returns the AORs that lost one."""
        changed = []
        for aor, bindings in list(self._bindings.items()):
            kept = [b for b in bindings if b.expires_at > now]
            if len(kept) != len(bindings):
                changed.append(aor)
                self.replace(aor, kept, now)
        return changed


_Stored = tuple[Address, str | None, float]


def _stored(bindings: list[Binding]) -> dict[tuple[object, ...], _Stored]:
    return {b.uri.key(): (b.source, b.instance_id, b.expires_at) for b in bindings}
