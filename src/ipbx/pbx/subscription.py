"""The notifier of RFC 6665 (SIP-specific event notification), shared by every event
package ipbx serves: message-summary (pbx/mwi.py), dialog (pbx/blf.py) and presence
(pbx/presence.py).

A phone SUBSCRIBEs to ``Event: PACKAGE`` for a resource (an extension: the user part of
the Request-URI); the subscription is authenticated like any request but REGISTER
(digest, 407), answered 200 with the granted Expires, and followed at once by a NOTIFY
with the resource's whole state. The phone refreshes it inside the dialog before it
expires (answered with a NOTIFY of the current state, §4.2.1.2); Expires: 0 ends it
with a last NOTIFY whose Subscription-State is ``terminated``, as does expiry
(reason=timeout). A package that has news for a resource calls `notify(package,
resource)`, which sends a NOTIFY on each live subscription to it.

Expires is negotiated as for registrations (`sip.min_expires` ... `sip.max_expires`,
423 Interval Too Brief below the minimum); an unknown package is 489 Bad Event with the
packages served in Allow-Events (§4.2.1.1). One extension watches at most
`sip.max_subscriptions` resources at a time (a desk phone with two sidecars of BLF keys
holds about a hundred): the next SUBSCRIBE is refused 403 until one ends, so a phone
cannot fill the server's memory with subscriptions.

NOTIFYs go to the SUBSCRIBE's Contact, or behind NAT to the address it came from, like
every request to a phone (pbx/nat.py).

The live subscriptions outlive a restart: `changes` hands the store (the PBX core
writes them behind, like registrations) each new, changed or ended one, and `restore`
takes a saved one up at start-up with a NOTIFY of the state of that moment, so a BLF
key is right again without waiting for its phone's refresh.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

from ipbx.pbx.nat import NatMode, dialog_target
from ipbx.pbx.registrar import Authenticator
from ipbx.sip.dialog import Dialog
from ipbx.sip.errors import SipError
from ipbx.sip.message import Request, Response
from ipbx.sip.transaction import Address, ServerTransaction
from ipbx.sip.transport.endpoint import SipEndpoint
from ipbx.sip.uri import parse_name_addr, parse_uri, split_quoted
from ipbx.store import SubscriptionRecord

log = logging.getLogger("ipbx.subscriptions")

# A NOTIFY answered with one of these needs credentials or a retry, not an end (RFC 6665
# §4.2.2 ends a subscription on the other failures: the subscriber is gone or refuses).
_KEEP_ON = frozenset({401, 407})


class EventPackage(Protocol):
    """What one event package adds to the notifier: its name and body type, whose
    state a SUBSCRIBE may watch, and the body of a NOTIFY."""

    name: str
    content_type: str

    def resource(self, request: Request, watcher: str) -> str:
        """The resource (an extension) that the authenticated `watcher` asks to watch;
        raises SipError (403, 404) when it may not."""
        ...

    def body(self, subscription: Subscription) -> bytes:
        """The resource's whole state now, for a NOTIFY on `subscription`."""
        ...


@dataclass(eq=False)
class Subscription:
    package: str
    resource: str
    watcher: str  # the extension that subscribed
    entity: str  # the resource's URI (Message-Account, dialog-info and PIDF entity)
    dialog: Dialog
    destination: Address  # where the SUBSCRIBE came from
    event: str  # the Event header value echoed back (with its id parameter, if any)
    expires_at: float  # on the event loop's clock
    # Where NOTIFYs go: the SUBSCRIBE's Contact, or its source behind NAT (pbx/nat.py).
    target: Address
    behind_nat: bool
    # How many NOTIFYs were sent (the dialog-info version of RFC 4235 §4.1).
    version: int = 0
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class Subscriptions:
    def __init__(
        self,
        endpoint: SipEndpoint,
        auth: Authenticator,
        *,
        domain: str | None = None,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        max_per_watcher: int = 100,
    ) -> None:
        self.endpoint = endpoint
        self.auth = auth
        self.domain = domain
        # Each extension's `nat` setting; "auto" for those not listed.
        self.nat_modes: Mapping[str, NatMode] = {}
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_per_watcher = max_per_watcher
        self.packages: dict[str, EventPackage] = {}
        self._by_dialog: dict[tuple[str, str, str], Subscription] = {}
        # The same by what they watch: a call's events NOTIFY its parties' watchers only.
        self._by_resource: dict[tuple[str, str], dict[tuple[str, str, str], Subscription]] = {}
        # What changed since the store last took `changes`: by ipbx's own dialog tag.
        self._changed: dict[str, Subscription | None] = {}

    def serve(self, package: EventPackage) -> None:
        self.packages[package.name] = package

    def subscriptions(self, package: str, resource: str | None = None) -> list[Subscription]:
        if resource is not None:
            return list(self._by_resource.get((package, resource), {}).values())
        return [s for s in self._by_dialog.values() if s.package == package]

    def live(self) -> list[Subscription]:
        return list(self._by_dialog.values())

    def close(self) -> None:
        for subscription in self._by_dialog.values():
            if subscription.timer is not None:
                subscription.timer.cancel()
        self._by_dialog.clear()
        self._by_resource.clear()

    # --- SUBSCRIBE -----------------------------------------------------------------------

    def on_subscribe(self, request: Request, source: Address, tx: ServerTransaction) -> None:
        """A SUBSCRIBE, new or inside one of our subscription dialogs."""
        event = request.headers.get("Event") or ""
        package = self.packages.get(event.split(";", 1)[0].strip().lower())
        if package is None:
            # RFC 6665 §4.2.1.1: an event package we do not serve.
            self.endpoint.reply(tx, 489, headers=[("Allow-Events", ", ".join(self.packages))])
            return
        if request.to.tag is not None:
            self._refresh(request, source, tx)
            return
        accept = [
            a.split(";", 1)[0].strip().lower()
            for value in request.headers.get_all("Accept")
            for a in split_quoted(value, ",")
            if a.strip()
        ]
        kind = package.content_type.split("/", 1)[0]
        if accept and not {package.content_type, f"{kind}/*", "*/*"}.intersection(accept):
            self.endpoint.reply(tx, 406, headers=[("Accept", package.content_type)])
            return
        if len(request.contacts) != 1:
            raise SipError(400, "a SUBSCRIBE needs exactly one Contact")
        expires = self._expires(request, tx)
        if expires is None:
            return
        watcher = self.auth.check(request, tx, time.time())
        if watcher is None:
            return
        resource = package.resource(request, watcher)
        dialog = Dialog.as_uas(request, tx.to_tag)
        mode = self.nat_modes.get(watcher, "auto")
        target, nat = dialog_target(request, source, mode, self.endpoint.connected(source))
        subscription = Subscription(
            package=package.name,
            resource=resource,
            watcher=watcher,
            entity=f"sip:{resource}@{self._domain(request, source)}",
            dialog=dialog,
            destination=source,
            event=event.strip(),
            expires_at=self.endpoint.loop.time() + expires,
            target=target,
            behind_nat=nat,
        )
        self._replace_older(subscription)
        if expires and self._watching(watcher) >= self.max_per_watcher:
            raise SipError(403, f"{watcher} has {self.max_per_watcher} subscriptions already")
        self._ok(tx, source, expires)
        log.info("%s subscribed to %s of %s from %s for %d s", watcher, package.name,
                 resource, source, expires)  # fmt: skip
        if expires == 0:
            self._terminate(subscription, None)  # a fetch: one NOTIFY and done
            return
        self._add(subscription)
        self._schedule(subscription, expires)
        self._notify(subscription)

    def _refresh(self, request: Request, source: Address, tx: ServerTransaction) -> None:
        key = (request.call_id, request.to.tag or "", request.from_.tag or "")
        subscription = self._by_dialog.get(key)
        if subscription is None:
            self.endpoint.reply(tx, 481)
            return
        # The dialog identifiers stand for the authentication of the first SUBSCRIBE, from
        # the host it came from (phones refresh without credentials).
        if source.host != subscription.destination.host:
            raise SipError(403, "refresh from another host")
        subscription.dialog.receive_request(request)  # CSeq order: 500 when out of order
        expires = self._expires(request, tx)
        if expires is None:
            return
        subscription.destination = source
        if subscription.behind_nat:
            subscription.target = source
        self._ok(tx, source, expires)
        if expires == 0:
            log.info("%s unsubscribed from %s of %s", subscription.watcher,
                     subscription.package, subscription.resource)  # fmt: skip
            self._terminate(subscription, None)
            return
        subscription.expires_at = self.endpoint.loop.time() + expires
        self._schedule(subscription, expires)
        # RFC 6665 §4.2.1.2: a refresh is answered with a NOTIFY of the current state.
        self._notify(subscription)

    def _expires(self, request: Request, tx: ServerTransaction) -> int | None:
        """The granted duration, or None after answering 423 (RFC 6665 §4.2.1.1)."""
        asked = request.expires
        if asked is None:
            return self.default_expires
        if 0 < asked < self.min_expires:
            self.endpoint.reply(tx, 423, headers=[("Min-Expires", str(self.min_expires))])
            return None
        return min(asked, self.max_expires)

    def _ok(self, tx: ServerTransaction, source: Address, expires: int) -> None:
        contact = self.endpoint.contact(source)
        self.endpoint.reply(
            tx, 200, headers=[("Expires", str(expires)), ("Contact", f"<{contact}>")]
        )

    def _watching(self, watcher: str) -> int:
        return sum(1 for s in self._by_dialog.values() if s.watcher == watcher)

    def _replace_older(self, subscription: Subscription) -> None:
        """A phone that re-subscribes outside the dialog (a new Call-ID each time, as some
        do after a restart) replaces its older subscription instead of doubling it."""
        target = subscription.dialog.remote_target.key()
        for key, old in list(self._by_dialog.items()):
            if (
                old.package == subscription.package
                and old.resource == subscription.resource
                and old.destination == subscription.destination
                and old.dialog.remote_target.key() == target
            ):
                self._forget(key, old)

    def _schedule(self, subscription: Subscription, expires: float) -> None:
        if subscription.timer is not None:
            subscription.timer.cancel()
        subscription.timer = self.endpoint.loop.call_later(expires, self._expire, subscription)

    def _expire(self, subscription: Subscription) -> None:
        subscription.timer = None
        if self._by_dialog.get(subscription.dialog.key) is subscription:
            log.info("%s subscription of %s to %s expired", subscription.package,
                     subscription.watcher, subscription.resource)  # fmt: skip
            self._terminate(subscription, "timeout")

    def _terminate(self, subscription: Subscription, reason: str | None) -> None:
        self._forget(subscription.dialog.key, subscription)
        self._send(subscription, "terminated" + (f";reason={reason}" if reason else ""))

    def _add(self, subscription: Subscription) -> None:
        key = subscription.dialog.key
        self._by_dialog[key] = subscription
        watched = (subscription.package, subscription.resource)
        self._by_resource.setdefault(watched, {})[key] = subscription

    def _forget(self, key: tuple[str, str, str], subscription: Subscription) -> None:
        if self._by_dialog.get(key) is subscription:
            del self._by_dialog[key]
            watched = (subscription.package, subscription.resource)
            same = self._by_resource.get(watched, {})
            same.pop(key, None)
            if not same:
                self._by_resource.pop(watched, None)
            self._changed[subscription.dialog.local_tag] = None
        if subscription.timer is not None:
            subscription.timer.cancel()
            subscription.timer = None

    # --- across restarts ---------------------------------------------------------------

    def changes(self) -> tuple[list[SubscriptionRecord], list[str]]:
        """The subscriptions new or changed since the last call, as records, and the
        local tags of those that ended."""
        now, clock = time.time(), self.endpoint.loop.time()
        saved = [as_record(s, now, clock) for s in self._changed.values() if s is not None]
        removed = [tag for tag, s in self._changed.items() if s is None]
        self._changed.clear()
        return saved, removed

    def restore(self, record: SubscriptionRecord) -> None:
        """Take up a subscription saved before a restart and NOTIFY its state now,
        which may have changed while ipbx was down."""
        subscription = from_record(record, time.time(), self.endpoint.loop.time())
        if subscription.package not in self.packages:
            return
        self._add(subscription)
        self._schedule(subscription, subscription.expires_at - self.endpoint.loop.time())
        self._notify(subscription)

    # --- NOTIFY ---------------------------------------------------------------------------

    def notify(self, package: str, resource: str) -> list[Subscription]:
        """The state of `resource` changed: NOTIFY every subscription to it; returns them."""
        subscriptions = self.subscriptions(package, resource)
        for subscription in subscriptions:
            self._notify(subscription)
        return subscriptions

    def _notify(self, subscription: Subscription) -> None:
        remaining = max(0, round(subscription.expires_at - self.endpoint.loop.time()))
        self._send(subscription, f"active;expires={remaining}")

    def _send(self, subscription: Subscription, state: str) -> None:
        package = self.packages[subscription.package]
        contact = self.endpoint.contact(subscription.target)
        body = package.body(subscription)
        subscription.version += 1
        if subscription.dialog.key in self._by_dialog:
            self._changed[subscription.dialog.local_tag] = subscription
        request = subscription.dialog.create_request(
            "NOTIFY",
            body,
            package.content_type,
            extra=[
                ("Event", subscription.event),
                ("Subscription-State", state),
                ("Contact", f"<{contact}>"),
            ],
        )

        def answered(response: Response, _tx: object) -> None:
            if response.status >= 300 and response.status not in _KEEP_ON:
                log.info("NOTIFY to %s answered %d: subscription ended", subscription.watcher,
                         response.status)  # fmt: skip
                self._forget(subscription.dialog.key, subscription)

        self.endpoint.send_request(request, subscription.target, answered)

    def _domain(self, request: Request, source: Address) -> str:
        return self.domain or request.uri.host or self.endpoint.local_address(source).host


def as_record(subscription: Subscription, now: float, clock: float) -> SubscriptionRecord:
    """`subscription` for the store; its expiry from the loop's clock to epoch seconds."""
    dialog = subscription.dialog
    source, target = subscription.destination, subscription.target
    return SubscriptionRecord(
        package=subscription.package,
        resource=subscription.resource,
        watcher=subscription.watcher,
        entity=subscription.entity,
        event=subscription.event,
        call_id=dialog.call_id,
        local_tag=dialog.local_tag,
        remote_tag=dialog.remote_tag,
        local_uri=str(dialog.local_uri),
        remote_uri=str(dialog.remote_uri),
        remote_target=str(dialog.remote_target),
        local_seq=dialog.local_seq,
        remote_seq=dialog.remote_seq,
        route_set=tuple(dialog.route_set),
        source=(source.transport, source.host, source.port),
        target=(target.transport, target.host, target.port),
        behind_nat=subscription.behind_nat,
        expires_at=now + subscription.expires_at - clock,
        version=subscription.version,
    )


def from_record(record: SubscriptionRecord, now: float, clock: float) -> Subscription:
    dialog = Dialog(
        call_id=record.call_id,
        local_tag=record.local_tag,
        remote_tag=record.remote_tag,
        local_uri=parse_name_addr(record.local_uri),
        remote_uri=parse_name_addr(record.remote_uri),
        remote_target=parse_uri(record.remote_target),
        local_seq=record.local_seq,
        remote_seq=record.remote_seq,
        route_set=list(record.route_set),
    )
    return Subscription(
        package=record.package,
        resource=record.resource,
        watcher=record.watcher,
        entity=record.entity,
        dialog=dialog,
        destination=Address(*record.source),
        event=record.event,
        expires_at=clock + record.expires_at - now,
        target=Address(*record.target),
        behind_nat=record.behind_nat,
        version=record.version,
    )
