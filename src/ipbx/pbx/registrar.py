"""The registrar (RFC 3261 §10.3): REGISTER with digest authentication binds an
extension's address-of-record to the contacts a phone gives.

Steps follow §10.3's numbering: the Request-URI scheme (step 1-2), authentication and
authorisation (3-4), the address-of-record from To (5), then each Contact with its
expiry, Min-Expires (423), Call-ID/CSeq ordering and the `*` wildcard (6-7), and the
200 listing every current binding (8). A phone that registers with outbound (RFC 5626)
binds its flow instead of its Contact URI: pbx/outbound.py.
"""

from __future__ import annotations

import email.utils
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ipbx.pbx.directory import Directory
from ipbx.pbx.guard import Guard
from ipbx.pbx.location import Binding, Location
from ipbx.pbx.nat import NatMode, nat_detected
from ipbx.pbx.outbound import asks_for_outbound, check_one_flow, reg_id, response_headers
from ipbx.sip.auth import DigestAuthenticator, Verdict
from ipbx.sip.errors import SipError
from ipbx.sip.message import MAX_EXPIRES, Request
from ipbx.sip.transaction import Address, ServerTransaction
from ipbx.sip.transport.endpoint import SipEndpoint
from ipbx.sip.uri import unescape

log = logging.getLogger("ipbx.registrar")

MAX_CONTACTS = 10


@dataclass(frozen=True, slots=True)
class ExpiryPolicy:
    min_expires: int = 60
    max_expires: int = 3600
    default_expires: int = 3600


class Authenticator:
    """Digest checks against the store's HA1s, shared by the registrar and the call
    handler (401 with WWW-Authenticate for REGISTER, 407 with Proxy-Authenticate else)."""

    def __init__(
        self,
        endpoint: SipEndpoint,
        directory: Directory,
        digest: DigestAuthenticator,
        guard: Guard,
    ) -> None:
        self.endpoint = endpoint
        self.directory = directory
        self.digest = digest
        self.guard = guard

    def check(self, request: Request, tx: ServerTransaction, now: float) -> str | None:
        """The authenticated extension number, or None after sending the challenge."""
        registering = request.method == "REGISTER"
        header = "Authorization" if registering else "Proxy-Authorization"
        creds = self.digest.credentials(request.headers.get_all(header))

        def ha1_for(algorithm: str) -> str | None:
            assert creds is not None
            ext = self.directory.get(creds.username)
            if ext is None:
                return None
            return ext.ha1_sha256 if algorithm == "SHA-256" else ext.ha1_md5

        verdict = self.digest.verify(creds, request.method, ha1_for, now)
        if verdict is Verdict.OK:
            assert creds is not None
            self.guard.succeeded(tx.peer.host)
            return creds.username
        if verdict is Verdict.FAILED:
            assert creds is not None
            log.info("bad credentials for %r from %s", creds.username, tx.peer)
            self.guard.failed(tx.peer.host, self.endpoint.loop.time())
        status = 401 if registering else 407
        name = "WWW-Authenticate" if registering else "Proxy-Authenticate"
        challenges = self.digest.challenges(now, stale=verdict is Verdict.STALE)
        self.endpoint.reply(tx, status, headers=[(name, c) for c in challenges])
        return None


class Registrar:
    def __init__(
        self,
        endpoint: SipEndpoint,
        auth: Authenticator,
        location: Location,
        policy: ExpiryPolicy,
        flow_timer: int = 120,
    ) -> None:
        self.endpoint = endpoint
        self.auth = auth
        self.location = location
        self.policy = policy
        # The keep-alive interval asked of phones registered with outbound (Flow-Timer).
        self.flow_timer = flow_timer
        # Told (AOR, contacts now) when an AOR gains or loses a contact (not on refreshes).
        self.on_change: Callable[[str, int], None] | None = None
        # Each extension's `nat` setting; "auto" for those not listed.
        self.nat_modes: Mapping[str, NatMode] = {}

    def on_register(
        self, request: Request, source: Address, tx: ServerTransaction, now: float
    ) -> None:
        if request.uri.scheme not in ("sip", "sips") or not request.to.uri.is_sip:
            raise SipError(416, "only sip and sips addresses can register")
        wildcard = any(value.strip() == "*" for value in request.headers.get_all("Contact"))
        if not wildcard:
            request.contacts  # noqa: B018 - a malformed Contact is a 400 before any challenge
        user = self.auth.check(request, tx, now)
        if user is None:
            return
        aor = unescape(request.to.uri.user or "")
        if aor != user:
            raise SipError(403, "credentials do not match the address-of-record")
        outbound = not wildcard and asks_for_outbound(request)
        try:
            bindings = self._apply(aor, request, source, now, outbound)
        except SipError as exc:
            if exc.status != 423:
                raise
            self.endpoint.reply(tx, 423, headers=[("Min-Expires", str(self.policy.min_expires))])
            return
        contacts = [_contact_value(b, now) for b in bindings]
        headers = [("Contact", c) for c in contacts]
        headers.append(("Date", email.utils.formatdate(now, usegmt=True)))
        if outbound:
            headers += response_headers(self.flow_timer)
        self.endpoint.reply(tx, 200, headers=headers)

    def _expiry(self, request: Request, param: str | None) -> int:
        if param is not None:
            text = param.strip()
            if not text.isdigit() or len(text) > 10 or int(text) > MAX_EXPIRES:
                raise SipError(400, f"bad expires parameter {param!r}")
            value = int(text)
        else:
            header = request.expires
            value = self.policy.default_expires if header is None else header
        return min(value, self.policy.max_expires)

    def _apply(
        self, aor: str, request: Request, source: Address, now: float, outbound: bool
    ) -> list[Binding]:
        current = {b.key: b for b in self.location.bindings(aor, now)}
        before = set(current)
        sources = {b.source for b in current.values()}
        raw = request.headers.get_all("Contact")
        call_id, cseq = request.call_id, request.cseq.number
        if any(value.strip() == "*" for value in raw):
            # §10.3 step 6: '*' only alone and with Expires: 0.
            if len(raw) != 1 or request.expires != 0:
                raise SipError(400, "'*' needs Expires: 0 and no other Contact")
            for binding in current.values():
                if binding.call_id == call_id and cseq <= binding.cseq:
                    raise SipError(500, "out-of-order REGISTER")
            self.location.replace(aor, [], now)
            log.info("unregistered all of %s", aor)
            return []
        contacts = request.contacts
        nat_mode = self.nat_modes.get(aor, "auto")
        changes: list[tuple[Binding, int]] = []
        for contact in contacts:
            expires = self._expiry(request, contact.params.get("expires"))
            if 0 < expires < self.policy.min_expires:
                raise SipError(423, f"Min-Expires is {self.policy.min_expires}")
            instance = contact.params.get("+sip.instance")
            binding = Binding(
                aor=aor,
                uri=contact.uri,
                expires_at=now + expires,
                call_id=call_id,
                cseq=cseq,
                source=source,
                instance_id=instance.strip('"<>') if instance else None,
                user_agent=request.headers.get("User-Agent") or "",
                q=_q(contact.params.get("q")),
                behind_nat=nat_detected(request, contact.uri, source, nat_mode),
                reg_id=reg_id(contact) if outbound else None,
            )
            changes.append((binding, expires))
        if outbound:
            check_one_flow(contacts, [expires > 0 for _, expires in changes])
        for binding, _ in changes:
            old = current.get(binding.key)
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                raise SipError(500, "out-of-order REGISTER")
        for binding, expires in changes:
            key = binding.key
            for k, old in list(current.items()):
                if binding.replaces(old):
                    del current[k]
            if expires == 0:
                current.pop(key, None)
            else:
                current[key] = binding
        result = sorted(current.values(), key=lambda b: b.expires_at)[-MAX_CONTACTS:]
        if changes:
            self.location.replace(aor, result, now)
            # A refresh of an unchanged set is routine; a new or lost contact is news, and
            # so is a phone that moved (its NAT mapping changed).
            changed = before != {b.key for b in result}
            moved = bool(sources) and source not in sources
            how = " (behind NAT)" if any(b.behind_nat for b, _ in changes) else ""
            how += " over an outbound flow" if outbound else ""
            log.log(logging.INFO if changed or moved else logging.DEBUG, "%s registered %d "
                    "contact(s) from %s%s", aor, len(result), source, how)  # fmt: skip
            if changed and self.on_change is not None:
                self.on_change(aor, len(result))
        return result


def _contact_value(binding: Binding, now: float) -> str:
    """A binding as the 200 lists it: its expiry, and its instance ID and reg-id echoed
    back (as in RFC 5626 §9's example flow), which tells the phone that its device and
    flow were understood."""
    value = f"<{binding.uri}>;expires={max(0, round(binding.expires_at - now))}"
    if binding.instance_id:
        value += f';+sip.instance="<{binding.instance_id}>"'
    if binding.reg_id is not None:
        value += f";reg-id={binding.reg_id}"
    return value


def _q(value: str | None) -> float:
    if value is None:
        return 1.0
    try:
        return min(max(float(value), 0.0), 1.0)
    except ValueError:
        raise SipError(400, f"bad q value {value!r}") from None
