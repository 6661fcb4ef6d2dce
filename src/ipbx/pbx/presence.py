"""Presence of extensions (RFC 3856, the presence event package; PIDF of RFC 3863 with
the activities of RPID, RFC 4480) over the notifier of pbx/subscription.py.

An extension's presence is made from what ipbx knows, never published by the phone:

| the extension is | basic | RPID activity | note |
| --- | --- | --- | --- |
| not registered | closed | | Offline |
| in a call (ringing, dialling or talking) | open | on-the-phone | On the phone |
| on do-not-disturb | open | busy | Do not disturb |
| registered and free | open | | Available |

Do-not-disturb is open with the busy activity rather than closed, so a watcher tells a
colleague who does not want calls from one whose phone is off. Softphones read these
elements: baresip's presence module shows ``<basic>`` as online/offline and the
``rpid:busy`` and ``rpid:on-the-phone`` activities as busy; Linphone shows the
activity and the note. A watcher is NOTIFYed when the extension registers or drops
its last contact and when its calls start and end; do-not-disturb switched with a
feature code is in the next NOTIFY (at the latest the refresh).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from xml.sax.saxutils import escape, quoteattr

from ipbx.pbx.blf import BusyLampField
from ipbx.pbx.events import REGISTRATION_CHANGED, Event, EventBus
from ipbx.pbx.location import Location
from ipbx.pbx.subscription import Subscription, Subscriptions
from ipbx.sip.message import Request

EVENT = "presence"
CONTENT_TYPE = "application/pidf+xml"
_PARTIES = ("caller", "callee", "extension")


class Presence:
    """The presence event package."""

    name = EVENT
    content_type = CONTENT_TYPE

    def __init__(
        self,
        subscriptions: Subscriptions,
        events: EventBus,
        location: Location,
        blf: BusyLampField,
        on_dnd: Callable[[str], bool],
    ) -> None:
        self.notifier = subscriptions
        self.location = location
        self.blf = blf
        self.on_dnd = on_dnd
        # What each extension's watchers were last told, so that they hear only changes.
        self._told: dict[str, tuple[str, str | None, str]] = {}
        subscriptions.serve(self)
        # After the busy lamp field's own subscriber: its dialogs are up to date here.
        events.subscribe(self.on_event)

    def resource(self, request: Request, watcher: str) -> str:
        return self.blf.resource(request, watcher)

    def on_event(self, event: Event) -> None:
        if event.type.startswith("call.") or event.type == REGISTRATION_CHANGED:
            for key in _PARTIES:
                number = event.data.get(key)
                if isinstance(number, str) and self.notifier.subscriptions(EVENT, number):
                    state = self.state(number)
                    if self._told.get(number) != state:
                        self._told[number] = state
                        self.notifier.notify(EVENT, number)

    def state(self, extension: str) -> tuple[str, str | None, str]:
        """(basic, RPID activity or None, note) of `extension` now."""
        if not self.location.bindings(extension, time.time()):
            return "closed", None, "Offline"
        if self.blf.state_of(extension):
            return "open", "on-the-phone", "On the phone"
        if self.on_dnd(extension):
            return "open", "busy", "Do not disturb"
        return "open", None, "Available"

    def body(self, subscription: Subscription) -> bytes:
        basic, activity, note = self.state(subscription.resource)
        activities = "" if activity is None else f"<rpid:{activity}/>"
        return (
            '<?xml version="1.0" encoding="UTF-8"?>\r\n'
            '<presence xmlns="urn:ietf:params:xml:ns:pidf" '
            'xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model" '
            'xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" '
            f"entity={quoteattr(subscription.entity)}>\r\n"
            f'<tuple id="phone"><status><basic>{basic}</basic></status>'
            f"<contact>{escape(subscription.entity)}</contact></tuple>\r\n"
            f'<dm:person id="person"><rpid:activities>{activities}</rpid:activities>'
            f"</dm:person>\r\n"
            f"<note>{escape(note)}</note>\r\n"
            "</presence>\r\n"
        ).encode()
