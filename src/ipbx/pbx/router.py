"""The router: where every call goes. It takes each new INVITE (from a phone or a
trunk), runs Destinations (docs/architecture.md), what every number, menu option,
time-out and fallback points at, and applies each extension's own call handling
(forwarding, do-not-disturb), the blacklist and the outbound routes.

The router decides and the call engine (pbx/call/) carries out: a call to an extension
stays a plain B2BUA call as long as a phone takes it; the router steps in before ringing
(forward always, DND, no phone registered, a blacklisted caller) and after, on the
outcome the engine reports (busy, no answer). Every other destination is a call flow
(apps/) on the caller's leg, which ipbx answers itself.
"""

from __future__ import annotations

import functools
import itertools
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from ipbx import sdp
from ipbx.config import Config
from ipbx.pbx.apps import voicemail
from ipbx.pbx.apps.announcement_config import AnnouncementConfig
from ipbx.pbx.apps.group_config import GroupConfig
from ipbx.pbx.apps.ivr import run_menu
from ipbx.pbx.apps.ivr_config import IvrConfig
from ipbx.pbx.apps.mailbox import mailbox_menu
from ipbx.pbx.blacklist import Blacklist, BlacklistEntry
from ipbx.pbx.call.engine import Calls
from ipbx.pbx.call.model import Call, Incoming, Leg, new_call_id, parse_sdp
from ipbx.pbx.call.pickup import pickup
from ipbx.pbx.call_handling import CallHandling
from ipbx.pbx.conference.engine import Conferences
from ipbx.pbx.crm import CallerLookup
from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.dialplan import Dialplan, Forbidden, Numbers, OutboundCall
from ipbx.pbx.extension import Extension
from ipbx.pbx.features import (
    AGENT_CODES,
    DIRECTED_PICKUP,
    DND_OFF,
    DND_ON,
    FORWARD_OFF,
    FORWARD_ON,
    MAILBOX,
    PICKUP,
    ExtensionSettings,
    forward_target,
)
from ipbx.pbx.location import Binding
from ipbx.pbx.parking import Parking
from ipbx.pbx.prompt import Prompt
from ipbx.pbx.queue.engine import Queues
from ipbx.pbx.schedule import Schedule
from ipbx.pbx.session import Prompts, Session
from ipbx.pbx.trunks import Trunk
from ipbx.pbx.voicemail import Mailboxes
from ipbx.sip.errors import SipError
from ipbx.sip.message import Request
from ipbx.sip.transaction import Address, ServerTransaction
from ipbx.sip.transport.endpoint import reason_phrase

log = logging.getLogger("ipbx.router")

# How long a member of a group, or an extension dialled from a call flow, rings by default.
RING_SECONDS = 30


class Router:
    def __init__(
        self,
        calls: Calls,
        config: Config,
        mailboxes: Mailboxes,
        dialplan: Dialplan,
        numbers: Numbers,
        queues: Queues,
        conferences: Conferences,
        crm: CallerLookup | None = None,
    ) -> None:
        self.calls = calls
        self.queues = queues
        self.conferences = conferences
        self.mailboxes = mailboxes
        self.dialplan = dialplan
        self.numbers = numbers
        # Who is calling from outside, asked of the CRM.
        self.crm = crm
        self.echo_number = config.echo_test
        self.prompts = Prompts(config.data_dir / "prompts")
        self.extensions: dict[str, Extension] = {e.number: e for e in config.extensions}
        # Each extension's outbound permission, and the number it shows outside.
        self.permissions = {e.number: e.permission for e in config.extensions}
        self.caller_ids = {e.number: e.caller_id for e in config.extensions if e.caller_id}
        self.groups: dict[str, GroupConfig] = {g.name: g for g in config.groups}
        self.ivrs: dict[str, IvrConfig] = {m.name: m for m in config.ivrs}
        self.announcements: dict[str, AnnouncementConfig] = {
            a.name: a for a in config.announcements
        }
        self.schedules = {s.name: Schedule.from_config(s) for s in config.schedules}
        self.blacklist = Blacklist.from_config(config.blacklist, config.country)
        self.settings = ExtensionSettings(config.data_dir)
        self.handling = CallHandling(self.extensions, self.blacklist, self.settings)
        # Round-robin groups start each call at the member after the last one's first.
        self._turns: dict[str, Iterator[int]] = {
            g.name: itertools.cycle(range(len(g.members))) for g in config.groups
        }
        # Transfers and click-to-call reach outside numbers through our outbound routes.
        calls.trunks.outside = self.outside
        self.parking = Parking(calls, config.parking, self.prompts, self._ring_back)
        calls.transfers.park = self.parking.park

    # --- new calls ------------------------------------------------------------------------------

    def on_invite(
        self, request: Request, source: Address, tx: ServerTransaction, caller: str
    ) -> None:
        """A call from one of our phones (`caller` is its authenticated extension)."""
        if request.max_forwards == 0:
            raise SipError(483, "Max-Forwards exhausted")
        # An INVITE without SDP is a late offer (RFC 3261 §13.2.1): we offer in the 2xx.
        offer = parse_sdp(request)
        if offer is not None:
            try:
                sdp.remote_address(offer)
            except sdp.SdpError as exc:
                raise SipError(488, str(exc)) from None
        if caller in self.calls.policy.srtp_required and (
            offer is None or offer.audio is None or offer.audio.proto != sdp.SAVP
        ):
            raise SipError(488, f"extension {caller} must offer SRTP (RTP/SAVP with a=crypto)")
        incoming = Incoming(request, source, tx, offer)
        target = request.uri.user or ""
        calls = self.calls
        if target == self.echo_number:
            calls.spawn(calls.flows.echo(incoming, caller, target), tx)
            return
        call = Call(new_call_id(), caller, target)
        call.caller_name = request.from_.name or None
        if target.startswith("*"):
            feature = self.feature(target, caller)
            if feature is None:
                raise SipError(404, f"no feature code {target}")
            calls.flows.start(call, incoming, feature)
            return
        if self.parking.is_slot(target):
            calls.flows.start(call, incoming, self.parking.retrieve(target))
            return
        if self._screened(call, incoming):
            return
        if calls.is_extension(target) is not None:
            self._ring_extension(call, incoming, target)
            return
        # Internal short numbers (500 for the main menu, say) are numbers like DIDs.
        number = self.numbers.lookup(target)
        if number is not None:
            calls.flows.start(call, incoming, self.app(number.destination))
            return
        call.route = self._outbound_route(target, caller)
        calls.spawn(self._dial_out(call, incoming), tx)

    def on_trunk_invite(
        self, request: Request, source: Address, tx: ServerTransaction, trunk: Trunk
    ) -> None:
        """A call from a provider: to the destination of the number it was made to."""
        if request.max_forwards == 0:
            raise SipError(483, "Max-Forwards exhausted")
        incoming = Incoming(request, source, tx, parse_sdp(request))
        number = self.numbers.lookup(request.uri.user, request.to.uri.user)
        if number is None:
            log.info("trunk %s: call to %s, which is none of our numbers", trunk.name,
                     request.to.uri.user or request.uri.user)  # fmt: skip
            raise SipError(404, "not one of our numbers")
        destination = number.destination
        caller = request.from_.uri.user or "anonymous"
        call = Call(new_call_id(), caller, number.number)
        call.caller_name = request.from_.name or None
        call.inbound_slot = trunk.acquire()
        if call.inbound_slot is None:
            raise SipError(503, f"trunk {trunk.name} is at its channel limit")
        log.info("%s from trunk %s: %s -> %s (%s)", call.id, trunk.name, caller,
                 number.number, destination)  # fmt: skip
        try:
            if self._screened(call, incoming):
                return
            if destination.kind is Kind.EXTENSION:
                self._ring_extension(call, incoming, destination.target)
            elif destination.kind is Kind.NUMBER:
                call.route = self._outbound_route(destination.target, None)
                self.calls.spawn(self._dial_out(call, incoming), tx)
            else:
                self.calls.flows.start(call, incoming, self.app(destination))
        except SipError:
            call.inbound_slot.release()
            raise

    def _screened(self, call: Call, incoming: Incoming) -> bool:
        """A blacklisted caller hears the entry's message and is hung up on."""
        refused = self.screen(call.from_number, call.to_number)
        if refused is None:
            return False
        log.info("%s: %s is blacklisted (%s)", call.id, call.from_number, refused.pattern)
        self.calls.flows.start(call, incoming, self.app(Destination(Kind.HANGUP), refused))
        return True

    def _ring_extension(self, call: Call, incoming: Incoming, target: str) -> None:
        if self.calls.is_extension(target) is None:
            raise SipError(404, f"no extension {target}")
        call.path.append(f"extension:{target}")
        call.rang = target
        self.calls.spawn(self.reach(target, InviteCaller(self, call, incoming)), incoming.tx)

    async def _dial_out(self, call: Call, incoming: Incoming) -> None:
        """Out through the route's trunks (failover is the engine's), for a caller whose
        INVITE nobody has answered, also after its extension's phones did not; the
        caller gets the best failure when no trunk takes the call."""
        calls = self.calls
        route = call.route
        assert route is not None
        if call.caller is None:
            if not await calls.forking.setup(call, incoming):
                return
        else:
            calls.forking.retarget(call)
        await calls.trunks.dial_out(call, self._caller_id(route, call.from_number))
        assert call.outcome is not None
        status = await call.outcome
        if status != 200 and not call.ended:
            calls.refuse(call, status)

    def outside(self, number: str, by: str | None, caller: str) -> tuple[OutboundCall, str]:
        """The route of an outside number with extension `by`'s outbound permission
        (None: the PBX's own routing, any route), and the caller ID it shows for
        `caller`; SipError 403 or 404 when it cannot go out."""
        route = self._outbound_route(number, by)
        return route, self._caller_id(route, caller)

    def _caller_id(self, route: OutboundCall, caller: str) -> str:
        return route.caller_id or self.caller_ids.get(caller) or caller

    def _outbound_route(self, dialled: str, caller: str | None) -> OutboundCall:
        """The route for a number that is no extension; `caller` None means a call
        forwarded by the PBX itself (any route)."""
        permission = "international" if caller is None else self.permissions.get(caller, "national")
        try:
            route = self.dialplan.route(dialled, permission)
        except Forbidden as exc:
            log.info("call from %s to %s refused: %s", caller, dialled, exc)
            raise SipError(403, str(exc)) from None
        if route is None:
            raise SipError(404, f"no extension or outbound route for {dialled}")
        return route

    # --- each extension's own call handling ---------------------------------------------------

    async def reach(self, extension: str, caller: Caller) -> None:
        """Ring `extension`'s phones for `caller`, as the extension's own call handling
        says: before ringing, forwarded always, busy on do-not-disturb, or elsewhere when
        no phone is registered; after, when no phone took the call, its busy or
        no-answer forwarding (or voicemail), else the caller gets the phones' refusal."""
        refused = self.handling.refused_by(extension, caller.call)
        if refused is not None:
            await caller.turn_away(refused)
            return
        bindings = self.calls.location.reachable(extension, time.time())
        instead = self.handling.before_ringing(extension, bool(bindings))
        if isinstance(instead, int):
            await caller.refuse(instead, f"{extension} does not take calls now (do not disturb)")
            return
        if instead is not None:
            await caller.follow(instead, extension)
            return
        status = await caller.ring(extension, bindings, self.handling.no_answer_seconds(extension))
        if status == 200 or caller.call.ended:
            return
        fallback = self.handling.after_failure(extension, status)
        if fallback is None:
            await caller.refuse(status)
        else:
            await caller.follow(fallback, extension)

    async def _ring_back(self, session: Session, extension: str) -> None:
        """A parked call that timed out rings its parker as a call to the extension would."""
        await self.reach(extension, SessionCaller(self, session))

    def screen(self, caller: str, called: str) -> BlacklistEntry | None:
        """The blacklist entry that refuses this caller (to this extension), if any."""
        return self.blacklist.match(caller, called if called in self.extensions else None)

    def feature(self, code: str, caller: str) -> Callable[[Leg], Awaitable[None]] | None:
        """The call flow of a feature code the extension `caller` dialled (features.py)."""
        if caller not in self.extensions:
            return None
        if code in (DND_ON, DND_OFF):
            on = code == DND_ON
            self.settings.set_dnd(caller, on)
            return self._spoken(f"Do not disturb is {'on' if on else 'off'}.", code)
        if code == FORWARD_OFF:
            self.settings.set_forward(caller, None)
            return self._spoken("Call forwarding is off.", code)
        if code.startswith(FORWARD_ON):
            return self._session_app(code, lambda session: self._forward_on(session, code))
        if code in AGENT_CODES:
            return self._spoken(self.queues.feature_code(code, caller), code)
        if code == PICKUP:
            groups = set(self.extensions[caller].pickup_groups)
            return functools.partial(
                self._pickup,
                lambda rang: _in_pickup_groups(self.extensions.get(rang), groups),
            )
        target = code[len(DIRECTED_PICKUP) :]
        if code.startswith(DIRECTED_PICKUP) and target in self.extensions:
            return functools.partial(self._pickup, lambda rang: rang == target)
        if code == MAILBOX:
            mailbox = self.mailboxes.get(caller)
            if mailbox is None:
                return None
            return self._session_app(code, lambda session: mailbox_menu(session, mailbox))
        return None

    async def _pickup(self, may_take: Callable[[str], bool], leg: Leg) -> None:
        if not pickup(self.calls.flows, leg, may_take):
            session = Session(self.calls, leg.call, leg, self.prompts)
            await session.say("There is no call to pick up.")
            await session.hangup()

    async def _forward_on(self, session: Session, code: str) -> None:
        digits = code[len(FORWARD_ON) :] or await session.collect(
            16, 8.0, "#", "Enter the number to forward your calls to, then press hash."
        )
        if (
            not digits.isdigit()
            or digits == session.caller
            or not self._may_forward(session.caller, digits)
        ):
            await session.say("That number cannot be used.")
            return
        target = forward_target(digits, digits in self.extensions)
        self.settings.set_forward(session.caller, target)
        await session.say(f"Your calls now go to {' '.join(digits)}.")

    def _may_forward(self, extension: str, digits: str) -> bool:
        """Whether `extension` may forward its calls to `digits`: an extension, or an
        outside number it may call itself."""
        if digits in self.extensions:
            return True
        try:
            self._outbound_route(digits, extension)
        except SipError:
            return False
        return True

    def _spoken(self, text: str, code: str) -> Callable[[Leg], Awaitable[None]]:
        return self._session_app(code, lambda session: session.say(text))

    def _session_app(
        self, code: str, flow: Callable[[Session], Awaitable[object]]
    ) -> Callable[[Leg], Awaitable[None]]:
        async def app(leg: Leg) -> None:
            session = Session(self.calls, leg.call, leg, self.prompts)
            leg.call.path.append(f"feature:{code}")
            await flow(session)
            await session.hangup()

        return app

    def app(self, destination: Destination, refused: BlacklistEntry | None = None) -> AppRunner:
        """A call flow that runs `destination` on the caller's leg."""
        return AppRunner(self, destination, refused)

    # --- running destinations ---------------------------------------------------------------

    async def run(self, session: Session, destination: Destination, by: str | None = None) -> None:
        """Run `destination` for the caller a call flow holds; an outside number goes
        out with extension `by`'s permission (its forwarding), else by any route (the
        PBX's own routing: numbers, menus, schedules, groups)."""
        call = session.call
        call.path.append(str(destination))
        log.info("%s -> %s", call.id, destination)
        kind, target = destination.kind, destination.target
        if kind is Kind.EXTENSION:
            await self.reach(target, SessionCaller(self, session))
        elif kind is Kind.GROUP:
            await self._group(session, self.groups[target])
        elif kind is Kind.IVR:
            await run_menu(session, self.ivrs[target], self.run, self._is_extension)
        elif kind is Kind.VOICEMAIL:
            mailbox = self.mailboxes.get(target)
            if mailbox is None:
                await session.say("This mailbox is not available.")
            else:
                await voicemail.leave_message(session, mailbox, target)
        elif kind is Kind.SCHEDULE:
            await self.run(session, self.schedules[target].destination_at(datetime.now(UTC)))
        elif kind is Kind.ANNOUNCEMENT:
            await announce(session, self.announcements[target])
        elif kind is Kind.QUEUE:
            await self.queues.run(session, target, self.run)
        elif kind is Kind.CONFERENCE:
            await self.conferences.run(session, target)
        elif kind is Kind.NUMBER:
            await self._call_out(session, target, by)
        elif kind is Kind.HANGUP:
            await session.hangup()
        else:
            # webhook: no call flow yet.
            log.info("%s: %s destinations are not available yet", call.id, kind.value)
            await session.hangup(480)

    async def _call_out(self, session: Session, number: str, by: str | None) -> None:
        try:
            route, caller_id = self.outside(number, by, session.caller)
        except SipError as exc:
            log.info("%s: %s cannot go out: %s", session.call.id, number, exc.reason)
            await session.hangup(exc.status)
            return
        status = await session.dial_out(route, caller_id, RING_SECONDS)
        if status != 200:
            log.info("%s: %s did not answer (%d)", session.call.id, number, status)
            await session.hangup(status)

    async def _group(self, session: Session, group: GroupConfig) -> None:
        """Ring the members round by round (a `+E164` member through the routes); a
        member on do-not-disturb, or whose own blacklist names the caller, is not rung."""
        status = 0
        for members in hunt(group, self._turns[group.name]):
            caller = session.caller
            phones = [
                m for m in members
                if not m.startswith("+") and not self.handling.on_dnd(m)
                and self.handling.refused_by(m, session.call) is None
            ]  # fmt: skip
            try:
                outside = [self.outside(m, None, caller) for m in members if m.startswith("+")]
            except SipError as exc:  # no route takes a member's number
                log.info("%s: group %s: %s", session.call.id, group.name, exc.reason)
                outside = []
            status = await session.dial(phones, group.ring_seconds, outside)
            if status == 200:
                return
        log.info("%s: nobody in group %s answered (%d)", session.call.id, group.name, status)
        await self.run(session, group.fallback)

    def _is_extension(self, number: str) -> bool:
        return number in self.extensions


class Caller(Protocol):
    """The caller an extension is rung for (Router.reach), however it came."""

    @property
    def call(self) -> Call: ...

    async def ring(self, extension: str, bindings: list[Binding], seconds: float | None) -> int:
        """Ring these contacts of `extension` (for `seconds`, None: until the caller gives
        up); 200 when one answered, else why not."""

    async def follow(self, destination: Destination, by: str) -> None:
        """Take the caller to `destination` instead (a forward, voicemail) of extension
        `by`, whose outbound permission an outside number goes out with."""

    async def refuse(self, status: int, reason: str = "") -> None:
        """Nowhere to go: the caller gets `status`."""

    async def turn_away(self, refused: BlacklistEntry) -> None:
        """The extension's blacklist refuses the caller: its message, then a hang-up."""


class InviteCaller:
    """A caller whose INVITE nobody has answered: the extension's phones are rung with
    its offer and the one that answers answers it, a plain B2BUA call (pbx/call/fork.py);
    forwarding is a call flow that takes its leg."""

    def __init__(self, router: Router, call: Call, incoming: Incoming) -> None:
        self.router = router
        self.call = call
        self.incoming = incoming

    async def ring(self, extension: str, bindings: list[Binding], seconds: float | None) -> int:
        router, call = self.router, self.call
        if not bindings:
            await self.refuse(480, f"{extension} has no reachable contact")
            return 480
        calls = router.calls
        if not await calls.forking.setup(call, self.incoming):
            return 0  # the call ended there
        if router.crm is not None and call.inbound_slot is not None:
            call.caller_name = await router.crm.name(call.from_number) or call.caller_name
            if call.ended:
                return 0
        return await calls.forking.ring(call, extension, bindings, seconds)

    async def follow(self, destination: Destination, by: str) -> None:
        router, call = self.router, self.call
        if destination.kind is Kind.NUMBER:
            # Out through a trunk as a plain B2BUA call: the caller is answered only
            # when the outside number answers.
            call.path.append(str(destination))
            try:
                call.route = router._outbound_route(destination.target, by)
            except SipError as exc:
                await self.refuse(exc.status, exc.reason)
                return
            await router._dial_out(call, self.incoming)
            return
        await self._run(router.app(destination))

    async def turn_away(self, refused: BlacklistEntry) -> None:
        await self._run(self.router.app(Destination(Kind.HANGUP), refused))

    async def _run(self, app: AppRunner) -> None:
        flows, call = self.router.calls.flows, self.call
        if call.caller is None:
            await flows.begin(call, self.incoming, app)  # before ringing
            return
        flows.take_over(call)
        await flows.run(call, call.caller, app)

    async def refuse(self, status: int, reason: str = "") -> None:
        calls = self.router.calls
        if self.call.caller is None:
            # Nothing rang: the INVITE is refused as it came, saying why.
            calls.endpoint.reply(self.incoming.tx, status, reason_phrase(status, reason))
            calls.end(self.call)
        else:
            calls.refuse(self.call, status)


class SessionCaller:
    """A caller a call flow holds (an IVR option, a schedule, a forward): ipbx answered
    it, the extension's phones get ipbx's own offer and the one that answers is bridged
    to it (Session.dial); forwarding runs in the same call flow."""

    def __init__(self, router: Router, session: Session) -> None:
        self.router = router
        self.session = session

    @property
    def call(self) -> Call:
        return self.session.call

    async def ring(self, extension: str, bindings: list[Binding], seconds: float | None) -> int:
        return await self.session.dial([extension], seconds or RING_SECONDS)

    async def follow(self, destination: Destination, by: str) -> None:
        await self.router.run(self.session, destination, by)

    async def refuse(self, status: int, reason: str = "") -> None:
        await self.session.hangup(status)

    async def turn_away(self, refused: BlacklistEntry) -> None:
        await turn_away(self.session, refused)


class AppRunner:
    """The call flow of a destination: a session on the caller's leg, then the
    destination (or the blacklist's message and a hang-up)."""

    def __init__(
        self, router: Router, destination: Destination, refused: BlacklistEntry | None
    ) -> None:
        self.router = router
        self.destination = destination
        self.refused = refused

    async def __call__(self, leg: Leg) -> None:
        router = self.router
        session = Session(router.calls, leg.call, leg, router.prompts)
        if self.refused is not None:
            await turn_away(session, self.refused)
            return
        await router.run(session, self.destination)


def hunt(group: GroupConfig, turns: Iterator[int]) -> list[list[str]]:
    """The rounds of ringing a group: everyone at once, or one at a time in the
    strategy's order (`turns` gives roundrobin's first member of each call)."""
    members = list(group.members)
    if group.strategy == "ringall":
        return [members]
    if group.strategy == "random":
        random.shuffle(members)
    elif group.strategy == "roundrobin":
        first = next(turns)
        members = members[first:] + members[:first]
    return [[member] for member in members]


async def announce(session: Session, announcement: AnnouncementConfig) -> None:
    if announcement.file is not None:
        await session.play(announcement.file)
    elif announcement.text is not None:
        await session.say(announcement.text)
    await session.hangup()


async def turn_away(session: Session, refused: BlacklistEntry) -> None:
    """A blacklisted caller hears the entry's message and is hung up on."""
    session.call.path.append("blacklist")
    if refused.message is not None:
        await play_prompt(session, refused.message)
    await session.hangup()


async def play_prompt(session: Session, prompt: Prompt) -> None:
    if prompt.file is not None:
        await session.play(Path(prompt.file))
    elif prompt.text is not None:
        await session.say(prompt.text)


def _in_pickup_groups(extension: Extension | None, groups: set[str]) -> bool:
    """Whether a call ringing `extension` is one an extension in `groups` may pick up
    with *8: it shares a group with it, or neither is in any group."""
    theirs = set(extension.pickup_groups) if extension is not None else set()
    return bool(theirs & groups) if theirs or groups else True
