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

A binding is named by its Contact URI (RFC 3261 §10.3), or by its device instance and
reg-id when the phone registered with outbound (pbx/outbound.py): then it is one flow,
and a device with several flows is rung over one of them, a live one first. Flows do not
outlive a restart (their connections close with it), so the store keeps one row per
Contact URI and a reg-id only in memory; a phone's next REGISTER over its new flow
replaces the row read back.

A browser's binding is made over its WebSocket connection, the only way to reach it (its
Contact names a host under `.invalid`, RFC 7118): it lives in memory alone and is dropped
as soon as that connection closes (`drop_connection`), since nothing else reaches the
browser; it registers again over its next connection.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ipbx.pbx.nat import contact_address, request_target
from ipbx.sip.transaction import Address
from ipbx.sip.transport.stream import WEBSOCKET
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
    reg_id: int | None = None
    missed_pings: int = field(default=0, compare=False)

    @property
    def key(self) -> tuple[object, ...]:
        """What names this binding among its AOR's: its flow (instance and reg-id, RFC
        5626 §6) when it has one, else its Contact URI (RFC 3261 §10.3)."""
        if self.reg_id is not None:
            return ("flow", self.instance_id, self.reg_id)
        return self.uri.key()

    def replaces(self, old: Binding) -> bool:
        """Whether registering this binding removes `old` beyond its key: a device (its
        instance ID) that registers anew drops its Contacts bound without a flow, and,
        registering without outbound, its flows too."""
        if not self.instance_id or old.instance_id != self.instance_id:
            return False
        return self.reg_id is None or old.reg_id is None

    @property
    def browser(self) -> bool:
        """Whether this contact is a browser: one registered over its WebSocket (RFC
        7118), which speaks WebRTC media only (ICE, DTLS-SRTP) and is offered it."""
        return self.source.transport in WEBSOCKET

    def destination(self, connected: Callable[[Address], bool]) -> Address:
        """Where requests to this contact go; `connected` tells whether a connection to an
        address is open. A UDP flow is the address and port the phone registered from."""
        udp_flow = self.reg_id is not None and not self.source.reliable
        return request_target(
            self.source,
            contact_address(self.uri),
            self.behind_nat or udp_flow,
            connected(self.source),
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
        # Whether a connection to an address is open (the SIP endpoint's, once it exists).
        self.connected: Callable[[Address], bool] = lambda address: False
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
        """The bindings to ring for `aor`, best q first: those that answer, and one flow
        per device (a live one, the latest registered)."""
        answering = [b for b in self.bindings(aor, now) if b.reachable]
        devices: dict[str | None, Binding] = {}
        for binding in answering:
            if binding.reg_id is None:
                continue
            rival = devices.get(binding.instance_id)
            if rival is None or self._rank(binding) > self._rank(rival):
                devices[binding.instance_id] = binding
        return [b for b in answering if b.reg_id is None or devices[b.instance_id] is b]

    def _rank(self, flow: Binding) -> tuple[bool, float]:
        """Live flows first (a UDP flow counts as live), then the latest registered."""
        return (not flow.source.reliable or self.connected(flow.source), flow.expires_at)

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

    def drop_connection(self, peer: Address, now: float) -> list[str]:
        """Forget the bindings made over the WebSocket connection `peer`, which has closed;
        returns the AORs that lost one."""
        if peer.transport not in WEBSOCKET:
            return []
        return self._forget(lambda b: b.source == peer, now)

    def _stored_enough(self, aor: str, bindings: list[Binding], now: float) -> bool:
        bindings = _lasting(bindings)
        stored = self._stored.get(aor, {})
        if stored.keys() != {b.key for b in bindings}:
            return False
        for b in bindings:
            source, instance, expires_at = stored[b.key]
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
        changes = {aor: _records(bindings) for aor, bindings in taken.items()}
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
        return self._forget(lambda b: b.expires_at <= now, now)

    def _forget(self, gone: Callable[[Binding], bool], now: float) -> list[str]:
        changed = []
        for aor, bindings in list(self._bindings.items()):
            kept = [b for b in bindings if not gone(b)]
            if len(kept) != len(bindings):
                changed.append(aor)
                self.replace(aor, kept, now)
        return changed


_Stored = tuple[Address, str | None, float]


def _lasting(bindings: list[Binding]) -> list[Binding]:
    """The bindings the store keeps: not those over a WebSocket (see the module docstring)."""
    return [b for b in bindings if b.source.transport not in WEBSOCKET]


def _stored(bindings: list[Binding]) -> dict[tuple[object, ...], _Stored]:
    return {b.key: (b.source, b.instance_id, b.expires_at) for b in _lasting(bindings)}


def _records(bindings: list[Binding]) -> list[BindingRecord]:
    """The rows for an AOR's bindings: one per Contact URI, the latest to expire (flows
    of one device may share a Contact URI; see the module docstring)."""
    latest: dict[tuple[object, ...], Binding] = {}
    for binding in sorted(_lasting(bindings), key=lambda b: b.expires_at):
        latest[binding.uri.key()] = binding
    return [b.record() for b in latest.values()]
