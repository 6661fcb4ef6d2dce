"""Busy lamp field: the dialog event package (RFC 4235, application/dialog-info+xml)
over the notifier of pbx/subscription.py.

A desk phone's BLF key SUBSCRIBEs to ``Event: dialog`` for an extension and lights by
the state of that extension's calls. The states follow the call engine's events
(pbx/events.py), not its code: call.started puts a dialog in ``trying`` on the calling
extension, call.ringing an ``early`` one on each extension that rings (and the caller's
goes to ``early``), call.answered makes the answering extension's and the caller's
``confirmed`` and ends the others that rang (``terminated``), call.ended ends them all.
A parking slot (pbx/parking.py) is watched the same way, as a desk phone's park key
does: call.parked puts a ``confirmed`` dialog on the slot (the parked party as the
remote) and ends the parker's, call.unparked ends the slot's.
Every NOTIFY carries the whole state (state="full") with the subscription's version
counter (RFC 4235 §4.1): a terminated dialog is in one NOTIFY and gone from the next.

The remote party (the caller of a ringing call, the other end of a connected one) is
in the document when the watcher may see it: it is of the same tenant as the call and
the caller did not withhold its number. That is what lets a BLF key show who calls
and pick the call up with ``**EXT`` (docs/features.md).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from ipbx.pbx.events import (
    CALL_ANSWERED,
    CALL_ENDED,
    CALL_PARKED,
    CALL_RINGING,
    CALL_STARTED,
    CALL_UNPARKED,
    DEFAULT_TENANT,
    Event,
    EventBus,
)
from ipbx.pbx.subscription import Subscription, Subscriptions
from ipbx.sip.errors import SipError
from ipbx.sip.message import Request
from ipbx.sip.uri import unescape

EVENT = "dialog"
CONTENT_TYPE = "application/dialog-info+xml"
# A withheld caller (RFC 3323's anonymous From) is not shown on anyone's BLF key.
_HIDDEN = frozenset({"anonymous", "unknown", ""})


@dataclass
class DialogEntry:
    """One of an extension's calls as a dialog of RFC 4235 §4.1."""

    id: str
    call_id: str
    direction: str  # initiator (the extension called) or recipient (it was called)
    state: str  # trying, early, confirmed or terminated
    remote: str  # the other party's number
    remote_name: str | None
    tenant: str


class BusyLampField:
    """The dialog event package: each extension's calls, NOTIFYed to its watchers."""

    name = EVENT
    content_type = CONTENT_TYPE

    def __init__(
        self,
        subscriptions: Subscriptions,
        events: EventBus,
        is_extension: Callable[[str], bool],
        is_slot: Callable[[str], bool] = lambda number: False,
    ) -> None:
        self.notifier = subscriptions
        self.is_extension = is_extension
        self.is_slot = is_slot
        self.dialogs: dict[str, dict[str, DialogEntry]] = {}
        # The extensions each call has a dialog on: an answer or an end touches those,
        # not every extension in a call.
        self._calls: dict[str, set[str]] = {}
        subscriptions.serve(self)
        events.subscribe(self.on_event)

    def resource(self, request: Request, watcher: str) -> str:
        extension = unescape(request.uri.user or request.to.uri.user or "")
        if not self.is_extension(extension) and not self.is_slot(extension):
            raise SipError(404, f"no extension or parking slot {extension!r} to watch")
        return extension

    def state_of(self, extension: str) -> list[DialogEntry]:
        return list(self.dialogs.get(extension, {}).values())

    # --- from the call engine's events ---------------------------------------------------

    def on_event(self, event: Event) -> None:
        data = event.data
        call_id = str(data.get("call_id"))
        caller, callee = str(data.get("caller") or ""), str(data.get("callee") or "")
        extension = str(data.get("extension") or "")
        changed: set[str] = set()
        if event.type == CALL_STARTED and self.is_extension(caller):
            self._set(caller, call_id, "initiator", "trying", callee, None, event, changed)
        elif event.type == CALL_RINGING:
            name = data.get("caller_name")
            named = name if isinstance(name, str) else None
            self._set(extension, call_id, "recipient", "early", caller, named, event, changed)
            self._advance(caller, call_id, "early", changed)
        elif event.type == CALL_ANSWERED:
            # The phone's own call to a pickup code or a slot, absorbed into this one.
            for number in self._calls.pop(str(data.get("joined")), ()):
                self._advance(number, str(data.get("joined")), "terminated", changed)
            for number in self._calls.get(call_id, ()):
                entry = self.dialogs.get(number, {}).get(call_id)
                if entry is not None and entry.direction == "recipient" and number != extension:
                    entry.state = "terminated"
                    changed.add(number)
            if self.is_extension(extension):
                self._set(extension, call_id, "recipient", "confirmed", caller, None, event,
                          changed)  # fmt: skip
            self._advance(caller, call_id, "confirmed", changed)
        elif event.type == CALL_PARKED:
            self._advance(extension, call_id, "terminated", changed)
            slot, party = str(data.get("slot")), str(data.get("party") or "")
            self._set(slot, call_id, "recipient", "confirmed", party, None, event, changed)
        elif event.type == CALL_UNPARKED:
            self._advance(str(data.get("slot")), call_id, "terminated", changed)
        elif event.type == CALL_ENDED:
            for number in self._calls.pop(call_id, ()):
                entry = self.dialogs.get(number, {}).get(call_id)
                if entry is not None:
                    entry.state = "terminated"
                    changed.add(number)
        for number in changed:
            self.notifier.notify(EVENT, number)
            entries = self.dialogs[number]
            for key in [k for k, e in entries.items() if e.state == "terminated"]:
                del entries[key]
            if not entries:
                del self.dialogs[number]

    def _set(
        self,
        extension: str,
        call_id: str,
        direction: str,
        state: str,
        remote: str,
        remote_name: str | None,
        event: Event,
        changed: set[str],
    ) -> None:
        entries = self.dialogs.setdefault(extension, {})
        entry = entries.get(call_id)
        if entry is None:
            self._calls.setdefault(call_id, set()).add(extension)
            entries[call_id] = DialogEntry(
                f"{call_id}-{extension}", call_id, direction, state, remote, remote_name,
                event.tenant,
            )  # fmt: skip
        else:
            entry.state = state
            entry.remote_name = entry.remote_name or remote_name
        changed.add(extension)

    def _advance(self, extension: str, call_id: str, state: str, changed: set[str]) -> None:
        entry = self.dialogs.get(extension, {}).get(call_id)
        if entry is not None and entry.state != state:
            entry.state = state
            changed.add(extension)

    # --- the document ------------------------------------------------------------------------

    def body(self, subscription: Subscription) -> bytes:
        entity = subscription.entity
        domain = entity.split("@", 1)[1]
        lines = [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" '
            f'version="{subscription.version}" state="full" entity={quoteattr(entity)}>',
        ]
        for entry in self.state_of(subscription.resource):
            lines.append(
                f"<dialog id={quoteattr(entry.id)} direction={quoteattr(entry.direction)}>"
            )
            lines.append(f"<state>{entry.state}</state>")
            if _may_see(entry):
                remote = f"sip:{entry.remote}@{domain}"
                name = entry.remote_name
                display = "" if name is None else f" display={quoteattr(name)}"
                lines.append(f"<local><identity>{escape(entity)}</identity></local>")
                lines.append(
                    f"<remote><identity{display}>{escape(remote)}</identity>"
                    f"<target uri={quoteattr(remote)}/></remote>"
                )
            lines.append("</dialog>")
        lines.append("</dialog-info>")
        return ("\r\n".join(lines) + "\r\n").encode()


def _may_see(entry: DialogEntry) -> bool:
    """Whether a watcher (an extension of the default tenant, the only one extensions
    belong to) may see the other party of `entry`."""
    return entry.tenant == DEFAULT_TENANT and entry.remote.lower() not in _HIDDEN
