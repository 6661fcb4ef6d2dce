"""Message waiting indication: the lamp on a desk phone, lit while its owner's mailbox
holds new voicemail (RFC 3842, the message-summary event package of RFC 6665).

A phone SUBSCRIBEs to ``Event: message-summary`` for its own mailbox; the subscription
is authenticated like a REGISTER (digest, 407 here as for any request but REGISTER),
answered 200 with its Expires, and followed at once by a NOTIFY with the current counts.
The phone refreshes it inside the dialog before it expires; Expires: 0 ends it with a
last NOTIFY whose Subscription-State is ``terminated``, as does expiry (reason=timeout).
Every change to the mailbox (`notify`) sends a NOTIFY on each live subscription.

Phones that never subscribe (many are configured for "unsolicited MWI") are sent an
out-of-dialog NOTIFY at each registered contact that has no subscription of its own, as
Asterisk does. NOTIFYs go to the address the SUBSCRIBE or REGISTER came from, like every
request to a phone (pbx/location.py).

The body (RFC 3842 §5.2)::

    Messages-Waiting: yes
    Message-Account: sip:1001@pbx.example.com
    Voice-Message: 2/8 (0/0)

is new/old messages, and in brackets the urgent ones, which ipbx does not mark.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ipbx.pbx.location import Location
from ipbx.pbx.nat import NatMode, dialog_target
from ipbx.pbx.registrar import Authenticator
from ipbx.sip.dialog import Dialog
from ipbx.sip.errors import SipError
from ipbx.sip.message import Headers, Request, Response
from ipbx.sip.transaction import Address, ServerTransaction
from ipbx.sip.transport.endpoint import SipEndpoint
from ipbx.sip.uri import Uri, split_quoted, unescape

log = logging.getLogger("ipbx.mwi")

EVENT = "message-summary"
CONTENT_TYPE = "application/simple-message-summary"
_ACCEPTABLE = frozenset({CONTENT_TYPE, "application/*", "*/*"})
# A NOTIFY answered with one of these needs credentials or a retry, not an end (RFC 6665
# §4.2.2 ends a subscription on the other failures: the subscriber is gone or refuses).
_KEEP_ON = frozenset({401, 407})

Counts = Callable[[str], tuple[int, int]]


def summary(account: str, new: int, old: int) -> bytes:
    """An application/simple-message-summary body (RFC 3842 §5.2)."""
    return (
        f"Messages-Waiting: {'yes' if new else 'no'}\r\n"
        f"Message-Account: {account}\r\n"
        f"Voice-Message: {new}/{old} (0/0)\r\n"
    ).encode()


@dataclass(eq=False)
class Subscription:
    mailbox: str
    account: str  # the Message-Account URI
    dialog: Dialog
    destination: Address  # where the SUBSCRIBE came from
    event: str  # the Event header value echoed back (with its id parameter, if any)
    expires_at: float  # on the event loop's clock
    # Where NOTIFYs go: the SUBSCRIBE's Contact, or its source behind NAT (pbx/nat.py).
    target: Address
    behind_nat: bool
    timer: asyncio.TimerHandle | None = field(default=None, repr=False)


class MessageWaiting:
    def __init__(
        self,
        endpoint: SipEndpoint,
        location: Location,
        auth: Authenticator,
        counts: Counts | None = None,
        *,
        domain: str | None = None,
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
    ) -> None:
        self.endpoint = endpoint
        self.location = location
        self.auth = auth
        # Where the (new, old) counts of a mailbox come from: Mailboxes.counts.
        self.counts: Counts = counts or (lambda mailbox: (0, 0))
        self.domain = domain
        # Each extension's `nat` setting; "auto" for those not listed.
        self.nat_modes: Mapping[str, NatMode] = {}
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self._by_dialog: dict[tuple[str, str, str], Subscription] = {}

    def subscriptions(self, mailbox: str) -> list[Subscription]:
        return [s for s in self._by_dialog.values() if s.mailbox == mailbox]

    def close(self) -> None:
        for subscription in self._by_dialog.values():
            if subscription.timer is not None:
                subscription.timer.cancel()
        self._by_dialog.clear()

    # --- SUBSCRIBE -----------------------------------------------------------------------

    def on_subscribe(self, request: Request, source: Address, tx: ServerTransaction) -> None:
        """A SUBSCRIBE, new or inside one of our subscription dialogs."""
        event = request.headers.get("Event") or ""
        if event.split(";", 1)[0].strip().lower() != EVENT:
            # RFC 6665 §4.2.1.1: an event package we do not serve.
            self.endpoint.reply(tx, 489, headers=[("Allow-Events", EVENT)])
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
        if accept and not _ACCEPTABLE.intersection(accept):
            self.endpoint.reply(tx, 406, headers=[("Accept", CONTENT_TYPE)])
            return
        if len(request.contacts) != 1:
            raise SipError(400, "a SUBSCRIBE needs exactly one Contact")
        expires = self._expires(request, tx)
        if expires is None:
            return
        user = self.auth.check(request, tx, time.time())
        if user is None:
            return
        mailbox = unescape(request.uri.user or request.to.uri.user or user)
        if mailbox != user:
            if self.auth.directory.get(mailbox) is not None:
                raise SipError(403, "only the owner may watch a mailbox")
            # Not an extension (a voicemail access number such as *97, or the server's
            # name): the phone means its own mailbox, as Asterisk takes it.
            mailbox = user
        dialog = Dialog.as_uas(request, tx.to_tag)
        mode = self.nat_modes.get(mailbox, "auto")
        target, nat = dialog_target(request, source, mode, self.endpoint.connected(source))
        subscription = Subscription(
            mailbox=mailbox,
            account=f"sip:{mailbox}@{self._domain(request, source)}",
            dialog=dialog,
            destination=source,
            event=event.strip(),
            expires_at=self.endpoint.loop.time() + expires,
            target=target,
            behind_nat=nat,
        )
        self._replace_older(subscription)
        self._ok(tx, source, expires)
        log.info("%s subscribed to message-summary from %s for %d s", mailbox, source, expires)
        if expires == 0:
            self._terminate(subscription, None)  # a fetch: one NOTIFY and done
            return
        self._by_dialog[dialog.key] = subscription
        self._schedule(subscription, expires)
        self._notify(subscription, *self.counts(mailbox))

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
            log.info("%s unsubscribed from message-summary", subscription.mailbox)
            self._terminate(subscription, None)
            return
        subscription.expires_at = self.endpoint.loop.time() + expires
        self._schedule(subscription, expires)
        # RFC 6665 §4.2.1.2: a refresh is answered with a NOTIFY of the current state.
        self._notify(subscription, *self.counts(subscription.mailbox))

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

    def _replace_older(self, subscription: Subscription) -> None:
        """A phone that re-subscribes outside the dialog (a new Call-ID each time, as some
        do after a restart) replaces its older subscription instead of doubling it."""
        target = subscription.dialog.remote_target.key()
        for key, old in list(self._by_dialog.items()):
            if (
                old.mailbox == subscription.mailbox
                and old.destination == subscription.destination
                and old.dialog.remote_target.key() == target
            ):
                self._forget(key, old)

    def _schedule(self, subscription: Subscription, expires: int) -> None:
        if subscription.timer is not None:
            subscription.timer.cancel()
        subscription.timer = self.endpoint.loop.call_later(expires, self._expire, subscription)

    def _expire(self, subscription: Subscription) -> None:
        subscription.timer = None
        if self._by_dialog.get(subscription.dialog.key) is subscription:
            log.info("message-summary subscription of %s expired", subscription.mailbox)
            self._terminate(subscription, "timeout")

    def _terminate(self, subscription: Subscription, reason: str | None) -> None:
        self._forget(subscription.dialog.key, subscription)
        state = "terminated" + (f";reason={reason}" if reason else "")
        self._send(subscription, state, *self.counts(subscription.mailbox))

    def _forget(self, key: tuple[str, str, str], subscription: Subscription) -> None:
        if self._by_dialog.get(key) is subscription:
            del self._by_dialog[key]
        if subscription.timer is not None:
            subscription.timer.cancel()
            subscription.timer = None

    # --- NOTIFY ---------------------------------------------------------------------------

    def notify(self, mailbox: str, new: int, old: int) -> None:
        """The counts of `mailbox` changed: tell every subscription, and every registered
        phone of that extension that has none (unsolicited NOTIFY)."""
        subscribed = set()
        for subscription in self.subscriptions(mailbox):
            subscribed.add(subscription.destination)
            self._notify(subscription, new, old)
        for binding in self.location.bindings(mailbox, time.time()):
            if binding.source not in subscribed:
                dest = binding.destination(self.endpoint.connected)
                self._unsolicited(mailbox, binding.uri, dest, new, old)

    def _notify(self, subscription: Subscription, new: int, old: int) -> None:
        remaining = max(0, round(subscription.expires_at - self.endpoint.loop.time()))
        self._send(subscription, f"active;expires={remaining}", new, old)

    def _send(self, subscription: Subscription, state: str, new: int, old: int) -> None:
        contact = self.endpoint.contact(subscription.target)
        request = subscription.dialog.create_request(
            "NOTIFY",
            summary(subscription.account, new, old),
            CONTENT_TYPE,
            extra=[
                ("Event", subscription.event),
                ("Subscription-State", state),
                ("Contact", f"<{contact}>"),
            ],
        )

        def answered(response: Response, _tx: object) -> None:
            if response.status >= 300 and response.status not in _KEEP_ON:
                log.info("NOTIFY to %s answered %d: subscription ended", subscription.mailbox,
                         response.status)  # fmt: skip
                self._forget(subscription.dialog.key, subscription)

        self.endpoint.send_request(request, subscription.target, answered)

    def _unsolicited(
        self, mailbox: str, uri: Uri, destination: Address, new: int, old: int
    ) -> None:
        local = self.endpoint.local_address(destination)
        domain = self.domain or local.host
        account = f"sip:{mailbox}@{domain}"
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<{account}>;tag={secrets.token_hex(6)}")
        headers.add("To", f"<{account}>")
        headers.add("Call-ID", f"mwi-{secrets.token_hex(10)}")
        headers.add("CSeq", "1 NOTIFY")
        headers.add("Event", EVENT)
        headers.add("Subscription-State", "active")
        headers.add("Contact", f"<{self.endpoint.contact(destination)}>")
        headers.add("Content-Type", CONTENT_TYPE)
        request = Request(headers, summary(account, new, old), "NOTIFY", uri)
        self.endpoint.send_request(request, destination)

    def _domain(self, request: Request, source: Address) -> str:
        return self.domain or request.uri.host or self.endpoint.local_address(source).host
