"""Message waiting indication: the lamp on a desk phone, lit while its owner's mailbox
holds new voicemail (RFC 3842, the message-summary event package of RFC 6665).

A phone SUBSCRIBEs to ``Event: message-summary`` for its own mailbox; subscriptions,
their expiry and refresh are the notifier's (pbx/subscription.py). Every change to the
mailbox (`notify`) sends a NOTIFY on each live subscription.

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

import secrets
import time
from collections.abc import Callable

from ipbx.pbx.location import Location
from ipbx.pbx.subscription import Subscription, Subscriptions
from ipbx.sip.errors import SipError
from ipbx.sip.message import Headers, Request
from ipbx.sip.transaction import Address
from ipbx.sip.uri import Uri, unescape

EVENT = "message-summary"
CONTENT_TYPE = "application/simple-message-summary"

Counts = Callable[[str], tuple[int, int]]


def summary(account: str, new: int, old: int) -> bytes:
    """An application/simple-message-summary body (RFC 3842 §5.2)."""
    return (
        f"Messages-Waiting: {'yes' if new else 'no'}\r\n"
        f"Message-Account: {account}\r\n"
        f"Voice-Message: {new}/{old} (0/0)\r\n"
    ).encode()


class MessageWaiting:
    """The message-summary event package."""

    name = EVENT
    content_type = CONTENT_TYPE

    def __init__(
        self, subscriptions: Subscriptions, location: Location, counts: Counts | None = None
    ) -> None:
        self.notifier = subscriptions
        self.endpoint = subscriptions.endpoint
        self.location = location
        # Where the (new, old) counts of a mailbox come from: Mailboxes.counts.
        self.counts: Counts = counts or (lambda mailbox: (0, 0))
        subscriptions.serve(self)

    def subscriptions(self, mailbox: str) -> list[Subscription]:
        return self.notifier.subscriptions(EVENT, mailbox)

    def resource(self, request: Request, watcher: str) -> str:
        mailbox = unescape(request.uri.user or request.to.uri.user or watcher)
        if mailbox != watcher:
            if self.notifier.auth.directory.get(mailbox) is not None:
                raise SipError(403, "only the owner may watch a mailbox")
            # Not an extension (a voicemail access number such as *97, or the server's
            # name): the phone means its own mailbox, as Asterisk takes it.
            mailbox = watcher
        return mailbox

    def body(self, subscription: Subscription) -> bytes:
        return summary(subscription.entity, *self.counts(subscription.resource))

    def notify(self, mailbox: str, new: int, old: int) -> None:
        """The counts of `mailbox` changed: tell every subscription, and every registered
        phone of that extension that has none (unsolicited NOTIFY)."""
        subscribed = {s.destination for s in self.notifier.notify(EVENT, mailbox)}
        for binding in self.location.bindings(mailbox, time.time()):
            if binding.source not in subscribed:
                dest = binding.destination(self.endpoint.connected)
                self._unsolicited(mailbox, binding.uri, dest, new, old)

    def _unsolicited(
        self, mailbox: str, uri: Uri, destination: Address, new: int, old: int
    ) -> None:
        local = self.endpoint.local_address(destination)
        domain = self.notifier.domain or local.host
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
