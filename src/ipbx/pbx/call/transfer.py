"""Transfers: REFER (RFC 3515), blind to a number or attended with Replaces (RFC 3891),
and the blind transfer the API asks for.

ipbx carries a transfer out itself, as a transferee would, and reports its progress to
the transferor with NOTIFY (message/sipfrag, RFC 3515 §2.4.4). A blind transfer's
target is an extension, or an outside number that goes out through the outbound routes
with the transferring extension's permission (a party on a trunk transfers to
extensions only).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from urllib.parse import unquote

from ipbx.media.bridge import connect
from ipbx.pbx.call.model import Call, Leg
from ipbx.pbx.call.trunk import TrunkDialing
from ipbx.sip.errors import SipError
from ipbx.sip.message import Request
from ipbx.sip.transaction import ServerTransaction
from ipbx.sip.transport.endpoint import reason_phrase
from ipbx.sip.uri import Uri, parse_name_addr

log = logging.getLogger("ipbx.calls")

# How long a transfer target rings before the two parties are partners again.
TRANSFER_RING_SECONDS = 30.0

# What parks a transferee (pbx/parking.py) when a blind transfer names the park number
# or a slot: called with the transferor and the transferee, it parks the transferee at
# once (SipError 403 or 503 when it cannot, and nothing changes) and returns the slot
# said to the transferor, whose phone is still up.
Park = Callable[[Leg, Leg], Awaitable[object]]


def replaces(target: Uri) -> tuple[str, str, str] | None:
    """(Call-ID, to-tag, from-tag) of a Refer-To's Replaces header (RFC 3891 §6.1),
    carried URL-escaped among the URI's headers (RFC 3261 §19.1.1)."""
    if not target.headers:
        return None
    for header in target.headers.split("&"):
        name, _, value = header.partition("=")
        if name.lower() != "replaces":
            continue
        call_id, *params = unquote(value).split(";")
        tags = dict(p.strip().partition("=")[::2] for p in params)
        return call_id.strip(), tags.get("to-tag", ""), tags.get("from-tag", "")
    return None


class Transfers:
    def __init__(self, trunks: TrunkDialing, is_extension: Callable[[str], str | None]) -> None:
        self.trunks = trunks
        self.dialing = trunks.dialing
        self.registry = trunks.registry
        self.is_extension = is_extension
        # The parking of a transfer to `number`, if it is the park number.
        self.park: Callable[[str], Park | None] = lambda number: None

    def extension_of(self, leg: Leg) -> str | None:
        """The extension whose phone is on `leg`; None for a party on a trunk."""
        if leg.trunk is not None:
            return None
        if leg.server_tx is not None:
            if leg.call.inbound_slot is not None:
                return None  # the caller of a call that came in on a trunk
            user = leg.invite.from_.uri.user
        else:
            user = leg.invite.to.uri.user
        return user if user and self.is_extension(user) is not None else None

    def check_target(self, number: str, transferor: Leg) -> None:
        """SipError (403, 404) when `transferor` cannot transfer to `number`: no such
        extension, or an outside number it may not call."""
        if self.is_extension(number) is not None:
            return
        by = self.extension_of(transferor)
        if by is None:
            raise SipError(403, f"a party on a trunk cannot transfer to {number}")
        self.trunks.outside(number, by, by)

    def on_refer(self, leg: Leg, request: Request, tx: ServerTransaction) -> None:
        """A phone transfers the party it talks to (its leg's other side): blind to the
        Refer-To target, or attended, replacing its consultation call with the target's
        other side."""
        transferee = leg.other
        value = request.headers.get("Refer-To")
        if value is None:
            raise SipError(400, "REFER without Refer-To")
        try:
            target = parse_name_addr(value).uri
        except SipError:
            raise SipError(400, "malformed Refer-To") from None
        if transferee is None or transferee.dialog is None:
            raise SipError(603, "nobody to transfer")
        self.registry.endpoint.reply(tx, 202)
        self.progress(leg, "100 Trying", final=False)
        consultation = replaces(target)
        if consultation is not None:
            self._attended(leg, transferee, consultation)
            return
        number = target.user or ""
        try:
            slot_said = self.begin_blind(leg, transferee, number)
        except SipError as exc:
            self.progress(leg, f"{exc.status} {reason_phrase(exc.status, '')}", final=True)
            return
        if slot_said is not None:
            self.registry.spawn_task(self.release_parker(leg, slot_said, refer=True))
        else:
            self.registry.spawn_task(self._refer_blind(leg.call, leg, transferee, number))

    def begin_blind(
        self, transferor: Leg, transferee: Leg, number: str
    ) -> Awaitable[object] | None:
        """A blind transfer's first step, the same from a REFER and from the API: the
        park number or a slot parks `transferee` at once and the slot said to the
        transferor is returned; any other number is checked (None). SipError, with
        nothing changed, when it cannot be done."""
        park = self.park(number)
        if park is None:
            self.check_target(number, transferor)
            return None
        return park(transferor, transferee)

    async def release_parker(self, parker: Leg, slot_said: Awaitable[object], refer: bool) -> None:
        """Once the parker's phone heard the slot: the 200 OK NOTIFY of its REFER (the
        API's transfer has none), then a BYE. The parker is on a call of its own."""
        alone = parker.call
        await slot_said
        if not alone.ended:
            if refer:
                self.progress(parker, "200 OK", final=True)
            self.registry.bye(parker)
            self.registry.end(alone)

    async def _refer_blind(self, call: Call, transferor: Leg, transferee: Leg, number: str) -> None:
        status = await self.blind(call, transferor, transferee, number)
        if status == 200:
            self.progress(transferor, "200 OK", final=True)
            self.registry.retire(transferor)
        elif not call.ended:
            self.progress(transferor, f"{status} Transfer Failed", final=True)

    async def blind(self, call: Call, transferor: Leg, transferee: Leg, number: str) -> int:
        """Ring extension `number` (or call the outside number, `check_target` passed)
        for `transferee`, and connect the two when it answers (200). The transferor
        steps out of the call (the two stay bridged while the target rings); if nobody
        answers in 30 s the two are partners again and the status says why. On 200 the
        transferor is still to be retired: a REFER reports the outcome on its dialog
        first, the API just hangs it up."""
        transferor.other = transferee.other = None
        call.new_far_dialog()
        status = await self._ring_target(call, transferor, transferee, number)
        if status != 200:
            log.info("%s: transfer to %s failed (%d)", call.id, number, status)
            transferor.other, transferee.other = transferee, transferor
            return status
        call.path.append(f"transfer:{number}")
        log.info("%s: %s transferred %s to %s", call.id, transferor.peer, transferee.peer, number)
        return status

    async def _ring_target(self, call: Call, transferor: Leg, transferee: Leg, number: str) -> int:
        if self.is_extension(number) is not None:
            return await self.dialing.dial(call, [number], TRANSFER_RING_SECONDS, keep=transferee)
        by = self.extension_of(transferor)
        shown = self.extension_of(transferee) or transferee.invite.from_.uri.user or ""
        try:
            assert by is not None
            route, caller_id = self.trunks.outside(number, by, shown)
        except SipError as exc:  # the routes changed since check_target
            return exc.status
        return await self.trunks.dial(call, route, caller_id, TRANSFER_RING_SECONDS, transferee)

    def _attended(
        self, transferor: Leg, transferee: Leg, consultation: tuple[str, str, str]
    ) -> None:
        """Connect the transferee with the far side of the consultation call the
        transferor names in Replaces, and take the transferor out of both calls."""
        reg = self.registry
        call_id, to_tag, from_tag = consultation
        consult = reg.dialogs.get((call_id, to_tag, from_tag)) or reg.dialogs.get(
            (call_id, from_tag, to_tag)
        )
        target = consult.other if consult is not None else None
        if consult is None or target is None or target.dialog is None or consult is transferor:
            self.progress(transferor, "481 Call Does Not Exist", final=True)
            return
        call, other_call = transferor.call, consult.call
        # The target's leg moves into the transferee's call; the consultation call ends
        # here, its record written now, while it still has its legs.
        other_call.path.append("transfer")
        for subscriber in reg.on_end:
            subscriber(other_call)
        other_call.caller = other_call.callee = None
        other_call.forks = [fork for fork in other_call.forks if fork is not target]
        other_call.far_media = None  # the target's; it goes with the target
        target.call = call
        call.caller, call.callee = transferee, target
        transferee.other, target.other = target, transferee
        connect(transferee.media, target.media)
        call.path.append(f"transfer:{target.invite.uri.user or ''}")
        log.info("%s: attended transfer: %s now talks to %s", call.id, transferee.peer, target.peer)
        self.progress(transferor, "200 OK", final=True)
        reg.retire(transferor)
        reg.retire(consult)
        reg.end(other_call)

    def progress(self, leg: Leg, status_line: str, final: bool) -> None:
        """NOTIFY the transferor of the transfer's progress (RFC 3515 §2.4.5)."""
        if leg.dialog is None:
            return
        state = "terminated;reason=noresource" if final else "active;expires=60"
        notify = leg.dialog.create_request(
            "NOTIFY",
            f"SIP/2.0 {status_line}\r\n".encode(),
            "message/sipfrag;version=2.0",
            [("Event", "refer"), ("Subscription-State", state)],
        )
        self.registry.endpoint.send_request(notify, leg.peer)
