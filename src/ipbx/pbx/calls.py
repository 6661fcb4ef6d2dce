"""Calls between extensions, as a back-to-back user agent (B2BUA) with anchored media.

A Call has a caller Leg (the dialog with whoever sent the INVITE) and, once answered,
one callee Leg; while ringing it has a callee Leg per contact of the called extension,
all rung at once (parallel forking). Each Leg owns one media endpoint, so RTP always
flows phone -> ipbx -> phone with symmetric latching, which is what keeps NATed phones
working and what later lets recording, transcoding and DTMF detection sit in the path.

In-dialog requests (re-INVITE and UPDATE for hold/resume and session refresh, INFO,
BYE) are passed to the other leg with SDP rewritten to our own media address.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple
from urllib.parse import unquote

from ipbx import sdp
from ipbx.media.channel import ChannelPair
from ipbx.media.codecs import AUDIO_CODECS, CODECS, Codec, CodecError
from ipbx.media.dtmf import dtmf_relay_digit
from ipbx.media.endpoint import MediaEndpoint, bridge, close_pool, transcode_bridge
from ipbx.media.moh import MusicOnHold
from ipbx.media.ports import PortPool, PortPoolExhausted
from ipbx.media.quality import leg_mos
from ipbx.media.recorder import CallRecorder
from ipbx.media.srtp import (
    AES_CM_128_HMAC_SHA1_32,
    AES_CM_128_HMAC_SHA1_80,
    CryptoAttribute,
    SrtpContext,
    choose_crypto,
    new_crypto,
)
from ipbx.pbx.crm import CallerLookup
from ipbx.pbx.destination import Destination, Kind
from ipbx.pbx.dialplan import Dialplan, Forbidden, Numbers, OutboundCall, Permission
from ipbx.pbx.events import (
    CALL_ANSWERED,
    CALL_ENDED,
    CALL_MISSED,
    CALL_RINGING,
    CALL_STARTED,
    RECORDING_READY,
    EventBus,
)
from ipbx.pbx.location import Binding, Location
from ipbx.pbx.trunks import ChannelSlot, Trunk, Trunks
from ipbx.sip.dialog import Dialog, dialog_key_of
from ipbx.sip.errors import SipError
from ipbx.sip.message import Headers, Request, Response
from ipbx.sip.transaction import (
    Address,
    ClientTransaction,
    ServerTransaction,
    make_cancel,
    make_response,
    new_tag,
    random_hex,
)
from ipbx.sip.transport.endpoint import SipEndpoint
from ipbx.sip.uri import NameAddr, Uri, parse_name_addr
from ipbx.store.records import CallRecord, LegRecord

if TYPE_CHECKING:
    from ipbx.pbx.router import Router

log = logging.getLogger("ipbx.calls")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, INFO, REFER, REGISTER, SUBSCRIBE, NOTIFY"
_call_ids = itertools.count(1)


@dataclass(eq=False)
class Leg:
    """One SIP dialog (or an INVITE still ringing) plus one media endpoint."""

    call: Call
    peer: Address
    media: MediaEndpoint
    invite: Request
    server_tx: ServerTransaction | None = None
    dialog: Dialog | None = None
    other: Leg | None = None
    provisional: bool = False
    cancel_wanted: bool = False
    final: Response | None = None
    unacked_2xx: asyncio.TimerHandle | None = None
    pending_ack_cseq: int | None = None
    # The offer the caller's INVITE carried (None for a late offer).
    offer: sdp.SessionDescription | None = None
    # The ACK we sent for this leg's 2xx, re-sent for each retransmitted 2xx.
    ack: bytes | None = None
    # SDES keys (ours, theirs) when this leg's phone speaks SRTP; ipbx ends SRTP here.
    srtp: tuple[CryptoAttribute, CryptoAttribute] | None = None
    # Late offer (RFC 3264 §2): our 2xx carried the offer, the ACK brings the answer.
    awaiting_answer: Callable[[sdp.SessionDescription], None] | None = None
    # The SDES keys we offered this leg's phone (one per suite), until it answers one.
    offered_keys: tuple[CryptoAttribute, ...] = ()
    # A leg through a trunk: the trunk, the channel it holds, whether we answered its
    # digest challenge already (once per attempt).
    trunk: Trunk | None = None
    trunk_slot: ChannelSlot | None = None
    authenticated: bool = False

    def take_sdp(self, description: sdp.SessionDescription) -> None:
        """Apply the SDP this leg's phone sent (an offer or an answer): where its media
        goes, and its SDES keys when it speaks SRTP. A hold that says c=0.0.0.0 keeps the
        old address; latching still follows the phone's packets."""
        host, port = sdp.remote_address(description)
        if host not in ("0.0.0.0", "::") and port != 0:
            codec = _relay_codec(description)
            media = description.audio
            fmtp = media.format_parameters(codec.payload_type) if media else None
            # The telephone-event type too: DTMF ipbx sends this phone (a transcoded
            # bridge, the API) must carry the number the phone expects.
            dtmf = sdp.telephone_event(description, codec)
            self.media.set_remote(host, port, codec, dtmf, fmtp=fmtp)
        media = description.audio
        assert media is not None  # remote_address() found it
        if media.proto != sdp.SAVP:
            self.srtp = None
            self.media.set_srtp(None)
            return
        offered = sdp.crypto_attributes(media)
        ours = (self.srtp[0],) if self.srtp else self.offered_keys
        local, remote = next(
            ((k, c) for k in ours for c in offered if (c.tag, c.suite) == (k.tag, k.suite)),
            (None, None),
        )
        if local is None or remote is None:
            # A new offer: answer one of its keys with our own (RFC 4568 §7.1.1).
            local = choose_crypto(offered)
            if local is None:
                raise SipError(488, "no usable a=crypto in RTP/SAVP (RFC 4568)")
            remote = next(c for c in offered if (c.tag, c.suite) == (local.tag, local.suite))
        if self.srtp != (local, remote):
            self.srtp = (local, remote)
            self.media.set_srtp(SrtpContext(local, remote))


@dataclass(eq=False)
class Call:
    id: str
    # Who called whom, for the call record: the caller's extension and the number dialled.
    from_number: str = ""
    to_number: str = ""
    caller: Leg | None = None
    callee: Leg | None = None
    forks: list[Leg] = field(default_factory=list)
    b_call_id: str = field(default_factory=lambda: random_hex(10))
    b_tag: str = field(default_factory=new_tag)
    ended: bool = False
    # The call record's id, unique across restarts and nodes.
    uid: str = field(default_factory=lambda: random_hex(16))
    started: float = field(default_factory=time.time)
    answered: float | None = None
    # The final status the caller got when nobody answered; "cancelled" by the caller.
    status: int | None = None
    cancelled: bool = False
    # DTMF digits ipbx received on a leg it terminates (the echo test; apps later).
    digits: list[str] = field(default_factory=list)
    recorder: CallRecorder | None = None
    # Outbound through trunks: the route, the trunks still to try, what failed so far,
    # and the media endpoint every attempt shares. An inbound trunk call holds a channel.
    route: OutboundCall | None = None
    trunks_left: list[Trunk] = field(default_factory=list)
    failures: list[Response] = field(default_factory=list)
    far_media: MediaEndpoint | None = None
    far_body: bytes = b""
    inbound_slot: ChannelSlot | None = None
    # A call flow (IVR, voicemail ...) running on the caller's leg, ringing phones for it
    # (`dialing` resolves to the final status), and the destinations the call went
    # through, for the call record.
    app_task: asyncio.Task[None] | None = None
    dialing: asyncio.Future[int] | None = None
    # The leg a phone rung from a call flow or a transfer is bridged to on answer.
    keep: Leg | None = None
    # Music on hold playing to the held party while the other one holds.
    music: asyncio.Future[None] | None = None
    # The caller's name, from the CRM (calls from outside).
    caller_name: str | None = None
    path: list[str] = field(default_factory=list)
    # The extension being rung (its forwarding applies when nobody answers), and the
    # timer that gives up on its phones after its no-answer time.
    rang: str | None = None
    ring_timer: asyncio.TimerHandle | None = None
    timed_out: bool = False


@dataclass(frozen=True)
class Routing:
    """Calls to and from the outside (docs/trunks.md): the trunks, the outbound routes,
    the numbers calls come in on, and each extension's outbound permission."""

    trunks: Trunks
    dialplan: Dialplan
    numbers: Numbers
    permissions: Mapping[str, Permission] = field(default_factory=dict)
    # The number each extension shows on outside calls (its `caller_id`).
    caller_ids: Mapping[str, str] = field(default_factory=dict)


# RFC 3261 §16.7-style failover: a trunk that times out or fails on its side (5xx,
# 503 overloaded, 408) is no reason to give up; the next trunk may carry the call.
def _try_next_trunk(status: int) -> bool:
    return status == 408 or 500 <= status < 600


@dataclass(frozen=True)
class CallPolicy:
    """Per-extension media rules and preferences for calls.

    Calls to or from an extension in `record_always` are recorded into `recordings`,
    one WAV channel per side or `mixed` into one. Extensions in `srtp_required` must
    offer SRTP when they call and are offered it on any transport when called (others
    are offered it when registered over TLS). `codecs` is our order of preference.
    """

    recordings: Path
    record_always: frozenset[str] = frozenset()
    mixed_recordings: bool = False
    srtp_required: frozenset[str] = frozenset()
    codecs: tuple[Codec, ...] = CODECS


def _relay_codec(description: sdp.SessionDescription) -> Codec:
    """A relay forwards bytes untouched; the endpoint only needs to know the stream's
    first payload type and clock rate, whatever the codec."""
    media = description.audio
    if media is None or not media.payload_types():
        raise SipError(488, "no audio stream")
    pt = media.payload_types()[0]
    rtpmap = media.rtpmaps().get(pt)
    if rtpmap is not None:
        return Codec(rtpmap.name, pt, rtpmap.clock_rate, rtpmap.channels)
    static = next((c for c in CODECS if c.payload_type == pt), None)
    return static or Codec(f"pt{pt}", pt, 8000)


def _dialog_response(
    request: Request, status: int, reason: str | None, to_tag: str | None
) -> Response:
    """A response that sets up the caller's dialog (18x, 2xx to the INVITE): RFC 3261
    §12.1.1 has the UAS copy the INVITE's Record-Route into it, so that a proxy on the
    path (a provider's, in front of a trunk) stays on it for the ACK, BYE and re-INVITEs."""
    out = make_response(request, status, reason, to_tag)
    for value in request.headers.get_all("Record-Route"):
        out.headers.add("Record-Route", value)
    return out


def _parse_sdp(msg: Request | Response) -> sdp.SessionDescription | None:
    if not msg.body:
        return None
    if msg.content_type != "application/sdp":
        raise SipError(415, "only application/sdp bodies are understood")
    try:
        return sdp.SessionDescription.parse(msg.body)
    except sdp.SdpError as exc:
        raise SipError(exc.status_code, str(exc)) from None


class Incoming(NamedTuple):
    """An INVITE that starts a call: the request, where it came from, its server
    transaction, and its SDP offer (None for a late offer)."""

    request: Request
    source: Address
    tx: ServerTransaction
    offer: sdp.SessionDescription | None


class Calls:
    def __init__(
        self,
        endpoint: SipEndpoint,
        location: Location,
        ports: PortPool[ChannelPair],
        media_address: str,
        is_extension: Callable[[str], str | None],
        echo_number: str,
        policy: CallPolicy,
        routing: Routing | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.policy = policy
        self.routing = routing
        # Music on hold: the audio files of DATA_DIR/moh (set by the PBX core).
        self.moh: MusicOnHold | None = None
        # Who is calling from outside, asked of the CRM (set by the PBX core when configured).
        self.crm: CallerLookup | None = None
        # Set by the PBX core once it has built the router (router.py imports this module).
        self.router: Router | None = None
        # Where call.* events go (pbx/events.py documents their data).
        self.events = EventBus()
        # Records of finished calls, waiting for the store (see take_records()).
        self.records: list[CallRecord] = []
        self.location = location
        self.ports = ports
        self.media_address = media_address
        self.is_extension = is_extension
        self.echo_number = echo_number
        self.calls: dict[str, Call] = {}
        self.dialogs: dict[tuple[str, str, str], Leg] = {}
        self._by_invite: dict[int, Call] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- entry points from the PBX core ---------------------------------------------------

    def on_invite(
        self, request: Request, source: Address, tx: ServerTransaction, caller: str
    ) -> None:
        if request.max_forwards == 0:
            raise SipError(483, "Max-Forwards exhausted")
        # An INVITE without SDP is a late offer (RFC 3261 §13.2.1): we offer in the 2xx.
        offer = _parse_sdp(request)
        if offer is not None:
            try:
                sdp.remote_address(offer)
            except sdp.SdpError as exc:
                raise SipError(488, str(exc)) from None
        if caller in self.policy.srtp_required and (
            offer is None or offer.audio is None or offer.audio.proto != sdp.SAVP
        ):
            raise SipError(488, f"extension {caller} must offer SRTP (RTP/SAVP with a=crypto)")
        incoming = Incoming(request, source, tx, offer)
        target = request.uri.user or ""
        if target == self.echo_number:
            self._spawn(self._echo(incoming, caller), tx)
            return
        call = Call(f"c{next(_call_ids)}", caller, target)
        if target.startswith("*") and self.router is not None:
            feature = self.router.feature(target, caller)
            if feature is None:
                raise SipError(404, f"no feature code {target}")
            self.start_app(call, incoming, feature)
            return
        if self._screened(call, incoming):
            return
        if self.is_extension(target) is not None:
            self._ring_extension(call, incoming)
            return
        # Internal short numbers (500 for the main menu, say) are numbers like DIDs.
        number = self.routing.numbers.lookup(target) if self.routing is not None else None
        if number is not None and self.router is not None:
            self.start_app(call, incoming, self.router.app(number.destination))
            return
        call.route = self._outbound_route(target, caller)
        self._spawn(self._dial_out(call, incoming), tx)

    def _screened(
        self,
        call: Call,
        incoming: Incoming,
    ) -> bool:
        """A blacklisted caller hears the entry's message and is hung up on."""
        refused = self.router.screen(call.from_number, call.to_number) if self.router else None
        if refused is None or self.router is None:
            return False
        log.info("%s: %s is blacklisted (%s)", call.id, call.from_number, refused.pattern)
        self.start_app(call, incoming, self.router.app(Destination(Kind.HANGUP), refused))
        return True

    def on_trunk_invite(
        self, request: Request, source: Address, tx: ServerTransaction, trunk: Trunk
    ) -> None:
        """A call from a provider: to the destination of the number it was made to."""
        if request.max_forwards == 0:
            raise SipError(483, "Max-Forwards exhausted")
        assert self.routing is not None
        incoming = Incoming(request, source, tx, _parse_sdp(request))
        number = self.routing.numbers.lookup(request.uri.user, request.to.uri.user)
        if number is None:
            log.info("trunk %s: call to %s, which is none of our numbers", trunk.name,
                     request.to.uri.user or request.uri.user)  # fmt: skip
            raise SipError(404, "not one of our numbers")
        destination = number.destination
        caller = request.from_.uri.user or "anonymous"
        call = Call(f"c{next(_call_ids)}", caller, number.number)
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
                self._spawn(self._dial_out(call, incoming), tx)
            elif self.router is not None:
                self.start_app(call, incoming, self.router.app(destination))
            else:
                raise SipError(480, f"{destination.kind.value} destinations are not available")
        except SipError:
            call.inbound_slot.release()
            raise

    def _ring_extension(
        self,
        call: Call,
        incoming: Incoming,
        target: str | None = None,
    ) -> None:
        tx = incoming.tx
        target = target or call.to_number
        if self.is_extension(target) is None:
            raise SipError(404, f"no extension {target}")
        call.path.append(f"extension:{target}")
        call.rang = target
        bindings = self.location.reachable(target, time.time())
        instead = self.router.before_ringing(target, bool(bindings)) if self.router else None
        if isinstance(instead, int):
            raise SipError(instead, f"{target} does not take calls now (do not disturb)")
        if instead is not None and self.router is not None:
            self.start_app(call, incoming, self.router.app(instead))
            return
        if not bindings:
            raise SipError(480, f"{target} has no reachable contact")
        self._spawn(self._dial(call, incoming, target, bindings), tx)

    def _outbound_route(self, dialled: str, caller: str | None) -> OutboundCall:
        """The route for a number that is no extension; `caller` None means a call
        forwarded by the PBX itself (any route)."""
        if self.routing is None:
            raise SipError(404, f"no extension {dialled}")
        permission = (
            "international" if caller is None else self.routing.permissions.get(caller, "national")
        )
        try:
            route = self.routing.dialplan.route(dialled, permission)
        except Forbidden as exc:
            log.info("call from %s to %s refused: %s", caller, dialled, exc)
            raise SipError(403, str(exc)) from None
        if route is None:
            raise SipError(404, f"no extension or outbound route for {dialled}")
        return route

    def on_cancel(self, tx: ServerTransaction) -> bool:
        call = self._by_invite.get(id(tx))
        if call is None or call.callee is not None:
            return False
        log.info("%s cancelled by the caller", call.id)
        call.cancelled = True
        self.endpoint.reply(tx, 487)
        for fork in call.forks:
            self._cancel_fork(fork)
        self._end(call)
        return True

    def on_in_dialog(self, request: Request, tx: ServerTransaction | None) -> bool:
        """Handle a request with a To tag; False if it belongs to no dialog of ours."""
        leg = self.dialogs.get(dialog_key_of(request))
        if leg is None or leg.dialog is None:
            return False
        if request.method == "ACK":
            if leg.pending_ack_cseq == request.cseq.number:
                self._stop_2xx(leg)
                if leg.awaiting_answer is not None:
                    self._late_answer(leg, request)
            return True
        assert tx is not None
        leg.dialog.receive_request(request)
        if request.method == "BYE":
            self.endpoint.reply(tx, 200)
            log.info("%s hung up by %s", leg.call.id, leg.peer)
            other = leg.other
            if other is not None and other.dialog is not None:
                self.endpoint.send_request(other.dialog.create_request("BYE"), other.peer)
            self._end(leg.call)
            return True
        if request.method == "REFER":
            self._on_refer(leg, request, tx)
            return True
        self._relay_request(leg, request, tx)
        return True

    # --- transfers (RFC 3515 REFER, RFC 3891 Replaces) ---------------------------------------

    def _on_refer(self, leg: Leg, request: Request, tx: ServerTransaction) -> None:
        """A phone transfers the party it talks to (its leg's other side): blind to the
        Refer-To target, or attended, replacing its consultation call with the target's
        other side. ipbx carries the transfer out itself and reports on it with NOTIFY
        (message/sipfrag), as a transferee would (RFC 3515 §2.4.4)."""
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
        self.endpoint.reply(tx, 202)
        self._refer_progress(leg, "100 Trying", final=False)
        replaces = _replaces(target)
        if replaces is not None:
            self._attended_transfer(leg, transferee, replaces)
            return
        number = target.user or ""
        if self.is_extension(number) is None:
            self._refer_progress(leg, "404 Not Found", final=True)
            return
        call = leg.call
        self._spawn_task(self._refer_blind(call, leg, transferee, number))

    async def _refer_blind(self, call: Call, transferor: Leg, transferee: Leg, number: str) -> None:
        status = await self.blind_transfer(call, transferor, transferee, number)
        if status == 200:
            self._refer_progress(transferor, "200 OK", final=True)
            self.retire(transferor)
        elif not call.ended:
            self._refer_progress(transferor, f"{status} Transfer Failed", final=True)

    async def blind_transfer(
        self, call: Call, transferor: Leg, transferee: Leg, number: str
    ) -> int:
        """Ring extension `number` for `transferee`, and connect the two when it answers
        (200). The transferor steps out of the call (the two stay bridged while the
        target rings); if nobody answers in 30 s the two are partners again and the
        status says why. On 200 the transferor is still to be retired: a REFER reports
        the outcome on its dialog first, the API just hangs it up."""
        transferor.other = transferee.other = None
        call.b_call_id, call.b_tag = random_hex(10), new_tag()
        status = await self.dial_from_app(call, [number], 30.0, keep=transferee)
        if status != 200:
            log.info("%s: transfer to %s failed (%d)", call.id, number, status)
            transferor.other, transferee.other = transferee, transferor
            return status
        call.path.append(f"transfer:{number}")
        log.info("%s: %s transferred %s to %s", call.id, transferor.peer, transferee.peer, number)
        return status

    def _attended_transfer(
        self, transferor: Leg, transferee: Leg, replaces: tuple[str, str, str]
    ) -> None:
        """Connect the transferee with the far side of the consultation call the
        transferor names in Replaces, and take the transferor out of both calls."""
        call_id, to_tag, from_tag = replaces
        consult = self.dialogs.get((call_id, to_tag, from_tag)) or self.dialogs.get(
            (call_id, from_tag, to_tag)
        )
        target = consult.other if consult is not None else None
        if consult is None or target is None or target.dialog is None or consult is transferor:
            self._refer_progress(transferor, "481 Call Does Not Exist", final=True)
            return
        call, other_call = transferor.call, consult.call
        # The target's leg moves into the transferee's call; the consultation call ends
        # here, its record written now, while it still has its legs.
        other_call.path.append("transfer")
        self.records.append(self._call_record(other_call))
        other_call.caller = other_call.callee = None
        other_call.forks = [fork for fork in other_call.forks if fork is not target]
        other_call.far_media = None  # the target's; it goes with the target
        target.call = call
        call.caller, call.callee = transferee, target
        transferee.other, target.other = target, transferee
        a, b = transferee.media, target.media
        if (
            a.codec is not None
            and b.codec is not None
            and (a.codec.name, a.codec.clock_rate) != (b.codec.name, b.codec.clock_rate)
        ):
            transcode_bridge(a, b)
        else:
            bridge(a, b)
        call.path.append(f"transfer:{target.invite.uri.user or ''}")
        log.info("%s: attended transfer: %s now talks to %s", call.id, transferee.peer, target.peer)
        self._refer_progress(transferor, "200 OK", final=True)
        self.retire(transferor)
        self.retire(consult)
        self._end(other_call)

    def _refer_progress(self, leg: Leg, status_line: str, final: bool) -> None:
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
        self.endpoint.send_request(notify, leg.peer)

    def retire(self, leg: Leg) -> None:
        """Take a leg out of its call: BYE its phone and free its media (and the trunk
        channel it held)."""
        if leg.dialog is not None:
            self.endpoint.send_request(leg.dialog.create_request("BYE"), leg.peer)
            self.dialogs.pop(leg.dialog.key, None)
        self._stop_2xx(leg)
        leg.other = None
        leg.media.close()
        if leg.trunk_slot is not None:
            leg.trunk_slot.release()

    def _publish(self, kind: str, call: Call, **data: object) -> None:
        self.events.publish(
            kind,
            {
                "call_id": call.uid,
                "caller": call.from_number,
                "callee": call.to_number,
                "direction": _direction(call),
                **data,
            },
        )

    def _publish_answer(self, call: Call, fork: Leg) -> None:
        wait = (call.answered or time.time()) - call.started
        extension = fork.invite.to.uri.user or call.to_number
        self._publish(CALL_ANSWERED, call, extension=extension, wait=round(wait, 3))

    def _spawn_task(self, coro: Coroutine[object, object, None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @property
    def active(self) -> int:
        return len(self.calls)

    def take_records(self) -> list[CallRecord]:
        """The records of calls finished since the last call, for the store."""
        records, self.records = self.records, []
        return records

    def close(self) -> None:
        """End every call from our side and close the media sockets (at shutdown)."""
        for call in list(self.calls.values()):
            self._hangup(call)
        close_pool(self.ports)

    # --- the echo test --------------------------------------------------------------------

    async def _echo(
        self,
        incoming: Incoming,
        caller: str,
    ) -> None:
        request, source, tx, offer = incoming
        try:
            media = await MediaEndpoint.open(self.ports)
        except PortPoolExhausted:
            self._no_ports(tx)
            return
        call = Call(f"c{next(_call_ids)}", caller, self.echo_number)
        leg = Leg(call, source, media, request, server_tx=tx, offer=offer)
        media.on_dtmf = call.digits.append
        call.caller = leg
        self.calls[call.id] = call
        if self.answer_locally(leg, echo=True):
            log.info("%s echo test for %s", call.id, source)

    def answer_locally(self, leg: Leg, echo: bool = False) -> bool:
        """Answer the caller's INVITE ourselves (an app or the echo test): our answer to
        its offer, or our offer in the 2xx for a late offer (the ACK answers). False when
        its offer is unusable (the INVITE got the error and the call ended)."""
        call, tx = leg.call, leg.server_tx
        assert tx is not None
        port = leg.media.local_address[1]
        if leg.offer is None:
            body = sdp.make_offer(self.media_address, port, AUDIO_CODECS)
            leg.awaiting_answer = lambda answer: self._media_to(
                leg, answer, body, *sdp.negotiated(answer, AUDIO_CODECS), echo
            )
        else:
            try:
                body, codec, dtmf = sdp.answer(leg.offer, self.media_address, port, AUDIO_CODECS)
            except sdp.SdpError as exc:
                self.endpoint.reply(tx, exc.status_code)
                self._end(call)
                return False
            self._media_to(leg, leg.offer, body, codec, dtmf, echo)
        leg.dialog = Dialog.as_uas(leg.invite, tx.to_tag)
        self._by_invite.pop(id(tx), None)
        self._register(call, leg)
        call.answered = time.time()
        self._answer(leg, 200, bytes(body))
        return True

    def _media_to(
        self,
        leg: Leg,
        remote: sdp.SessionDescription,
        ours: sdp.SessionDescription,
        codec: Codec,
        dtmf: int | None,
        echo: bool,
    ) -> None:
        host, port = sdp.remote_address(remote)
        if host not in ("0.0.0.0", "::") and port:
            leg.media.set_remote(host, port, codec, dtmf)
        keys = sdp.srtp_keys(ours, remote)
        leg.srtp = keys
        leg.media.set_srtp(SrtpContext(*keys) if keys else None)
        if echo:
            leg.media.echo()

    # --- call flows (apps) ------------------------------------------------------------------

    def start_app(
        self,
        call: Call,
        incoming: Incoming,
        app: Callable[[Leg], Awaitable[None]],
    ) -> None:
        """Run a call flow for a new call: its leg gets a media endpoint, the app
        answers it (or not) with the verbs of session.py."""
        request, source, tx, offer = incoming

        async def run() -> None:
            try:
                media = await MediaEndpoint.open(self.ports)
            except PortPoolExhausted:
                self._no_ports(tx)
                return
            leg = Leg(call, source, media, request, server_tx=tx, offer=offer)
            call.caller = leg
            self.calls[call.id] = call
            self._by_invite[id(tx)] = call
            self._publish(CALL_STARTED, call)
            await self._run_app(call, leg, app)

        self._spawn(run(), tx)

    async def _run_app(self, call: Call, leg: Leg, app: Callable[[Leg], Awaitable[None]]) -> None:
        call.app_task = asyncio.current_task()
        try:
            await app(leg)
        finally:
            call.app_task = None
        if not call.ended and call.callee is None:
            self.hangup_app(call, 603)

    def hangup_app(self, call: Call, status: int) -> None:
        """The app is done with the caller: BYE once answered, `status` before."""
        if call.ended:
            return
        a = call.caller
        if a is not None and a.dialog is None and a.server_tx is not None:
            call.status = status
            self.endpoint.reply(a.server_tx, status)
            self._end(call)
        else:
            self._hangup(call)

    async def dial_from_app(
        self, call: Call, extensions: list[str], timeout: float, keep: Leg | None = None
    ) -> int:
        """Ring every reachable contact of `extensions` with our own offer; on answer,
        bridge the phone to `keep` (the caller, whom we answered, unless told otherwise).
        The final status (200 answered)."""
        a = keep or call.caller
        call.keep = a
        now = time.time()
        bindings = [(n, b) for n in extensions for b in self.location.reachable(n, now)]
        if not bindings:
            return 480
        try:
            media = await MediaEndpoint.open(self.ports)
        except PortPoolExhausted:
            return 503
        call.far_media = media
        call.forks = []
        body = bytes(sdp.make_offer(self.media_address, media.local_address[1], self.policy.codecs))
        dialing = call.dialing = asyncio.get_running_loop().create_future()
        for number in dict.fromkeys(n for n, _ in bindings):
            self._publish(CALL_RINGING, call, extension=number)
        for number, binding in bindings:
            max_forwards = a.invite.max_forwards if a is not None else None
            invite = self._callee_invite(
                call, max_forwards, _identity(call, a), number, binding, body
            )
            fork = Leg(call, binding.source, media, invite)
            call.forks.append(fork)
            self.endpoint.send_request(invite, binding.source, self._fork_handler(fork))
        try:
            return await asyncio.wait_for(asyncio.shield(dialing), timeout)
        except TimeoutError:
            for fork in call.forks:
                self._cancel_fork(fork)
            return 480
        finally:
            call.dialing = None
            call.keep = None
            if call.far_media is media:
                media.close()
                call.far_media = None
                # A new dial gets a new dialog: another Call-ID and From tag.
                call.b_call_id, call.b_tag = random_hex(10), new_tag()

    def _app_answered(self, fork: Leg, response: Response) -> None:
        """A phone an app rang answered: bridge it to the leg it was rung for (or, for
        a call ipbx originates, it becomes the call's first party)."""
        call, a = fork.call, fork.call.keep or fork.call.caller
        assert fork.dialog is not None and call.dialing is not None
        self._ack(fork, b"")
        description = _parse_sdp(response)
        if a is None:
            self._first_party(fork, description)
            return
        if description is None or a.media.codec is None:
            self.endpoint.send_request(fork.dialog.create_request("BYE"), fork.peer)
            call.dialing.set_result(488)
            return
        codec, dtmf = sdp.negotiated(description, self.policy.codecs)
        host, port = sdp.remote_address(description)
        fork.media.set_remote(host, port, codec, dtmf)
        call.caller, call.callee = a, fork
        for other in call.forks:
            if other is not fork:
                self._cancel_fork(other)
        a.other, fork.other = fork, a
        self._register(call, fork)
        if codec.name == a.media.codec.name and codec.clock_rate == a.media.codec.clock_rate:
            self._bridge(a, fork)
        else:
            transcode_bridge(a.media, fork.media)
        call.far_media = None  # the callee leg owns it now
        self._publish_answer(call, fork)
        log.info("%s answered by %s (from a call flow)", call.id, fork.peer)
        call.dialing.set_result(200)

    def _first_party(self, fork: Leg, description: sdp.SessionDescription | None) -> None:
        call = fork.call
        assert fork.dialog is not None and call.dialing is not None
        if description is None:
            self.endpoint.send_request(fork.dialog.create_request("BYE"), fork.peer)
            call.dialing.set_result(488)
            return
        codec, dtmf = sdp.negotiated(description, self.policy.codecs)
        host, port = sdp.remote_address(description)
        fork.media.set_remote(host, port, codec, dtmf)
        call.caller = fork
        call.far_media = None
        for other in call.forks:
            if other is not fork:
                self._cancel_fork(other)
        call.forks = []
        self._register(call, fork)
        log.info("%s: %s answered; calling %s", call.id, fork.peer, call.to_number)
        call.dialing.set_result(200)

    # --- call pickup (*8) --------------------------------------------------------------------

    def pickup(self, leg: Leg) -> bool:
        """Answer, on `leg` (a phone that dialled the pickup code), the call that has been
        ringing longest: its phones stop ringing and its caller is connected to `leg`.
        False when nothing rings."""
        ringing = [
            call
            for call in self.calls.values()
            if call is not leg.call
            and not call.ended
            and call.callee is None
            and call.rang is not None
            and call.caller is not None
            and call.caller.dialog is None
        ]
        if not ringing:
            return False
        target = min(ringing, key=lambda c: c.started)
        caller = target.caller
        assert caller is not None
        self._stop_ring_timer(target)
        for fork in target.forks:
            self._cancel_fork(fork)
        target.forks = []
        if target.far_media is not None:
            target.far_media.close()
            target.far_media = None
        if not self.answer_locally(caller):
            return False
        if leg.dialog is None and not self.answer_locally(leg):
            self._hangup(target)
            return True
        own = leg.call
        own.caller = None  # the pickup call is absorbed; it leaves no record of its own
        leg.call = target
        target.callee, caller.other, leg.other = leg, caller, leg
        target.path.append(f"pickup:{own.from_number}")
        self.rejoin(caller, leg)
        self._end(own)
        self._publish_answer(target, leg)
        log.info("%s picked up by %s", target.id, own.from_number)
        return True

    # --- calls ipbx places (click-to-call) -------------------------------------------------

    def originate(self, agent: str, number: str, timeout: float = 30.0) -> Call:
        """Click-to-call: ring `agent`'s phones; when one answers, ring `number` and
        connect the two. Raises LookupError for a number that is no extension."""
        for extension in (agent, number):
            if self.is_extension(extension) is None:
                raise LookupError(f"no extension {extension}")
        call = Call(f"c{next(_call_ids)}", agent, number)
        call.path.append(f"originate:{agent}")
        self.calls[call.id] = call
        self._publish(CALL_STARTED, call)
        self._spawn_task(self._originate(call, agent, number, timeout))
        return call

    async def _originate(self, call: Call, agent: str, number: str, timeout: float) -> None:
        status = await self.dial_from_app(call, [agent], timeout)
        if status != 200 or call.ended:
            log.info("%s: click-to-call: %s did not answer (%d)", call.id, agent, status)
            call.status = status
            self._end(call)
            return
        agent_leg = call.caller
        assert agent_leg is not None
        status = await self.dial_from_app(call, [number], timeout, keep=agent_leg)
        if status != 200:
            log.info("%s: click-to-call: %s did not answer (%d)", call.id, number, status)
            call.status = status
            self._hangup(call)
            return
        call.answered = time.time()

    # --- setting up a call ------------------------------------------------------------------

    async def _setup(
        self,
        call: Call,
        incoming: Incoming,
    ) -> tuple[MediaEndpoint, bytes] | None:
        """The caller's leg and the media endpoint of the far side, with the offer for
        the far side (empty for a late offer); None when the call ended here."""
        request, source, tx, offer = incoming
        try:
            caller_media = await MediaEndpoint.open(self.ports)
        except PortPoolExhausted:
            self._no_ports(tx)
            return None
        try:
            callee_media = await MediaEndpoint.open(self.ports)
        except PortPoolExhausted:
            caller_media.close()
            self._no_ports(tx)
            return None
        if tx.response is not None and tx.response.status >= 200:
            caller_media.close()
            callee_media.close()
            return None  # cancelled while the ports were being opened
        a = Leg(call, source, caller_media, request, server_tx=tx, offer=offer)
        call.caller = a
        call.far_media = callee_media
        self.calls[call.id] = call
        self._publish(CALL_STARTED, call)
        self._by_invite[id(tx)] = call
        body = b""
        if offer is not None:
            try:
                a.take_sdp(offer)
            except SipError as exc:
                self.endpoint.reply(tx, exc.status)
                self._end(call)
                return None
            # The callees get every codec we can transcode to, after the caller's own,
            # and plain RTP unless they get SRTP of their own: SRTP ends on each leg.
            body = self._anchor(sdp.with_codecs(offer, self.policy.codecs), callee_media, None)
        return callee_media, body

    async def _dial(
        self,
        call: Call,
        incoming: Incoming,
        target: str,
        bindings: list[Binding],
    ) -> None:
        request = incoming.request
        ready = await self._setup(call, incoming)
        if ready is None:
            return
        callee_media, body = ready
        from_ = request.from_
        if self.crm is not None and call.inbound_slot is not None:
            call.caller_name = await self.crm.name(call.from_number)
            if call.ended:
                return
            if call.caller_name:
                from_ = NameAddr(from_.uri, call.caller_name, from_.params)
        log.debug("%s %s -> %s: ringing %d contact(s)", call.id, call.from_number, target,
                  len(bindings))  # fmt: skip
        keys = (new_crypto(1, AES_CM_128_HMAC_SHA1_80), new_crypto(2, AES_CM_128_HMAC_SHA1_32))
        secure_body = b""
        for binding in bindings:
            secure = body and (
                target in self.policy.srtp_required or binding.source.transport == "TLS"
            )
            if secure and not secure_body:
                description = sdp.SessionDescription.parse(body)
                secure_body = self._anchor(description, callee_media, None, keys)
            invite = self._callee_invite(
                call, request.max_forwards, from_, target, binding, secure_body if secure else body
            )
            fork = Leg(
                call, binding.source, callee_media, invite, offered_keys=keys if secure else ()
            )
            call.forks.append(fork)
            # The fork keeps its INVITE, not the transaction: the transaction's handler
            # refers to the fork, and a cycle would outlive the call until a full GC.
            self.endpoint.send_request(invite, binding.source, self._fork_handler(fork))
        named = {"caller_name": call.caller_name} if call.caller_name else {}
        self._publish(CALL_RINGING, call, extension=target, **named)
        seconds = self.router.no_answer_seconds(target) if self.router else None
        if seconds is not None:
            call.ring_timer = self.endpoint.loop.call_later(seconds, self._ring_timeout, call)

    def _ring_timeout(self, call: Call) -> None:
        """Nobody answered in time: cancel the ringing phones; their 487s end the
        attempt as unanswered, and the no-answer forwarding takes over."""
        call.ring_timer = None
        if call.ended or call.callee is not None:
            return
        log.info("%s: no answer from %s", call.id, call.rang)
        call.timed_out = True
        for fork in call.forks:
            self._cancel_fork(fork)

    async def _dial_out(
        self,
        call: Call,
        incoming: Incoming,
    ) -> None:
        """Out through the route's trunks, one at a time, in order (failover)."""
        assert self.routing is not None and call.route is not None
        ready = await self._setup(call, incoming)
        if ready is None:
            return
        call.far_body = ready[1]
        call.trunks_left = self.routing.trunks.candidates(call.route.trunks)
        await self._next_trunk(call)

    async def _next_trunk(self, call: Call) -> None:
        route = call.route
        a = call.caller
        assert route is not None and a is not None and call.far_media is not None
        while call.trunks_left and not call.ended:
            trunk = call.trunks_left.pop(0)
            slot = trunk.acquire()
            if slot is None:
                log.info("%s: trunk %s is at its channel limit", call.id, trunk.name)
                continue
            targets = await trunk.targets()
            if call.ended or not targets:
                slot.release()
                continue
            if call.forks:
                # Each attempt is a new dialog (RFC 3261 §8.1.1.4): a proxy in front of
                # several trunks would otherwise take the retry for a merged request (482).
                call.b_call_id, call.b_tag = random_hex(10), new_tag()
            invite = self._trunk_invite(call, a.invite, trunk, targets[0], route)
            fork = Leg(call, targets[0], call.far_media, invite, trunk=trunk, trunk_slot=slot)
            call.forks.append(fork)
            log.info("%s: %s -> %s via trunk %s", call.id, call.from_number, route.number,
                     trunk.name)  # fmt: skip
            self.endpoint.send_request(invite, fork.peer, self._fork_handler(fork))
            return
        if call.ended:
            return
        if call.failures:
            self._fail(call, call.failures)
            return
        log.info("%s: no trunk of route %s can take the call", call.id, route.route)
        assert a.server_tx is not None
        self.endpoint.reply(a.server_tx, 503)
        call.status = 503
        self._end(call)

    def _trunk_invite(
        self,
        call: Call,
        request: Request,
        trunk: Trunk,
        dest: Address,
        route: OutboundCall,
        cseq: int = 1,
        credentials: tuple[str, str] | None = None,
    ) -> Request:
        uri = trunk.request_uri(route.number)
        caller_ids = self.routing.caller_ids if self.routing is not None else {}
        caller_id = route.caller_id or caller_ids.get(call.from_number) or call.from_number
        identity = trunk.caller_headers(caller_id, request.from_.display)
        from_ = f"{identity[0][1]};tag={call.b_tag}"
        to = f"<sip:{route.number}@{trunk.domain}>"
        extra = [*identity[1:], *([credentials] if credentials else [])]
        return self._outgoing_invite(
            call, request.max_forwards, uri, from_, to, dest, call.far_body, extra, cseq
        )

    def _on_trunk_failure(self, fork: Leg, response: Response) -> None:
        """A trunk refused: answer its challenge once, else try the next trunk when the
        failure is on the provider's side, else give the caller the refusal."""
        call, trunk = fork.call, fork.trunk
        assert trunk is not None and fork.trunk_slot is not None
        status = response.status
        if status in (401, 407) and not fork.authenticated and not call.ended:
            credentials = trunk.answer_challenge(response, "INVITE", str(fork.invite.uri))
            a = call.caller
            if credentials is not None and a is not None and call.route is not None:
                fork.authenticated = True
                fork.provisional = False
                fork.invite = self._trunk_invite(
                    call, a.invite, trunk, fork.peer, call.route,
                    fork.invite.cseq.number + 1, credentials,
                )  # fmt: skip
                self.endpoint.send_request(fork.invite, fork.peer, self._fork_handler(fork))
                return
        fork.final = response
        fork.trunk_slot.release()
        if call.ended or call.callee is not None:
            return
        if status in (401, 407):
            # The provider refused the trunk's credentials (or wants some it has none
            # of): the trunk's fault, so try the next one. Relayed, the challenge would
            # ask the caller for credentials it cannot have, and without the
            # Proxy-Authenticate RFC 3261 §21.4.8 requires of a 407.
            log.warning("%s: trunk %s refused its credentials (%d %s)", call.id, trunk.name,
                        status, response.reason)  # fmt: skip
            status = 503
            response = Response(Headers(), b"", status, "Trunk authentication failed")
        call.failures.append(response)
        if _try_next_trunk(status) and call.trunks_left:
            log.info("%s: trunk %s answered %d; trying the next", call.id, trunk.name, status)
            a = call.caller
            assert a is not None and a.server_tx is not None
            self._spawn(self._next_trunk(call), a.server_tx)
            return
        log.info("%s: trunk %s answered %d", call.id, trunk.name, status)
        self._fail(call, call.failures)

    def _no_ports(self, tx: ServerTransaction) -> None:
        log.warning("RTP port range exhausted: call refused")
        self.endpoint.reply(tx, 503, headers=[("Retry-After", "5")])

    def _fork_handler(self, fork: Leg) -> Callable[[Response, ClientTransaction], None]:
        return lambda response, _tx: self._on_fork_response(fork, response)

    def _callee_invite(
        self,
        call: Call,
        max_forwards: int | None,
        from_: NameAddr,
        target: str,
        binding: Binding,
        body: bytes,
    ) -> Request:
        dest = binding.source
        local = self.endpoint.local_address(dest)
        caller_uri = Uri("sip", from_.uri.user, None, local.host, local.port)
        from_value = str(NameAddr(caller_uri, from_.display, {"tag": call.b_tag}))
        to = str(NameAddr(Uri("sip", target, None, local.host, local.port)))
        return self._outgoing_invite(call, max_forwards, binding.uri, from_value, to, dest, body)

    def _outgoing_invite(
        self,
        call: Call,
        max_forwards: int | None,
        uri: Uri,
        from_: str,
        to: str,
        dest: Address,
        body: bytes,
        extra: Sequence[tuple[str, str]] = (),
        cseq: int = 1,
    ) -> Request:
        """The INVITE of the far side's dialog (one Call-ID and From tag per call)."""
        headers = Headers()
        headers.add("Max-Forwards", str((max_forwards or 70) - 1))
        headers.add("From", from_)
        headers.add("To", to)
        headers.add("Call-ID", call.b_call_id)
        headers.add("CSeq", f"{cseq} INVITE")
        headers.add("Contact", f"<{self.endpoint.contact(dest)}>")
        headers.add("Allow", ALLOW)
        for name, value in extra:
            headers.add(name, value)
        if body:
            headers.add("Content-Type", "application/sdp")
        return Request(headers, body, "INVITE", uri)

    def _on_fork_response(self, fork: Leg, response: Response) -> None:
        call = fork.call
        status = response.status
        if status < 200:
            fork.provisional = True
            if fork.cancel_wanted:
                self._cancel_fork(fork)
            elif status > 100 and not call.ended and call.callee is None and not call.dialing:
                self._relay_provisional(fork, response)
            return
        if status < 300:
            self._on_fork_answered(fork, response)
            return
        if fork.trunk is not None:
            self._on_trunk_failure(fork, response)
            return
        fork.final = response
        if call.ended or call.callee is not None:
            return
        if all(f.final is not None for f in call.forks):
            finals = [f.final.status for f in call.forks if f.final is not None]
            if call.dialing is not None:
                if not call.dialing.done():
                    call.dialing.set_result(_best_failure(finals))
                return
            self._fail(call, [f.final for f in call.forks if f.final is not None])

    def _relay_provisional(self, fork: Leg, response: Response) -> None:
        a = fork.call.caller
        if a is None or a.server_tx is None:
            return
        out = _dialog_response(a.invite, response.status, response.reason, a.server_tx.to_tag)
        description = _parse_sdp(response)
        if description is not None and description.audio is not None:
            # Early media (183 with SDP): the callee's media flows to the caller now.
            fork.take_sdp(description)
            self._bridge(a, fork)
            out.body = self._sdp_for(a, description)
            out.headers.add("Content-Type", "application/sdp")
        out.headers.add("Contact", f"<{self.endpoint.contact(a.peer)}>")
        self.endpoint.respond(a.server_tx, out)

    def _on_fork_answered(self, fork: Leg, response: Response) -> None:
        call = fork.call
        if fork.dialog is None:
            fork.dialog = Dialog.as_uac(fork.invite, response)
        if fork.ack is not None:
            # Every retransmission of the 2xx gets the same ACK (RFC 3261 §13.2.2.4).
            self.endpoint.send_raw(fork.ack, fork.peer)
            return
        if call.dialing is not None and not call.dialing.done() and not call.ended:
            # Rung by a call flow or a transfer, while the call already has its parties.
            self._app_answered(fork, response)
            return
        description = _parse_sdp(response)
        late_offer = not fork.invite.body
        if call.ended or (call.callee is not None and call.callee is not fork):
            # A second phone answered too late: ACK (with an answer to its offer, if it
            # made one) and hang it up at once.
            self._ack(fork, self._refusal(fork, description) if late_offer else b"")
            self.endpoint.send_request(fork.dialog.create_request("BYE"), fork.peer)
            return
        if call.callee is fork:
            return  # a late offer: the ACK waits for the caller's answer
        a = call.caller
        assert a is not None and a.server_tx is not None
        call.callee = fork
        call.far_media = None  # the callee leg owns it now
        self._stop_ring_timer(call)
        for other in call.forks:
            if other is not fork:
                self._cancel_fork(other)
        self._by_invite.pop(id(a.server_tx), None)
        body = b""
        if description is not None:
            fork.take_sdp(description)
            if fork.offered_keys and fork.srtp is None:
                # RFC 3264 §6: an answer keeps the offer's transport; plain RTP to our
                # RTP/SAVP offer would put the media in the clear.
                log.info("%s: %s answered RTP/SAVP with plain RTP", call.id, fork.peer)
                self._ack(fork, b"")
                self.endpoint.send_request(fork.dialog.create_request("BYE"), fork.peer)
                self.endpoint.reply(a.server_tx, 488)
                self._end(call)
                return
        if late_offer and description is None:
            log.info("%s: neither the INVITE nor the 2xx carried an offer", call.id)
            self._ack(fork, b"")
            self.endpoint.send_request(fork.dialog.create_request("BYE"), fork.peer)
            self.endpoint.reply(a.server_tx, 488)
            self._end(call)
            return
        if late_offer:
            a.awaiting_answer = lambda answer: self._relay_answer(a, fork, answer)
        else:
            self._ack(fork, b"")
        a.dialog = Dialog.as_uas(a.invite, a.server_tx.to_tag)
        a.other, fork.other = fork, a
        self._register(call, a)
        self._register(call, fork)
        if description is not None and not late_offer:
            body = self._join(a, fork, description)
        else:
            self._bridge(a, fork)
            if description is not None:
                body = self._sdp_for(a, description)
        self._answer(a, 200, body)
        call.answered = time.time()
        self._publish_answer(call, fork)
        log.info("%s answered by %s", call.id, fork.peer)
        if self.policy.record_always & {call.from_number, call.to_number}:
            self.record(call)

    def _join(self, a: Leg, b: Leg, answer: sdp.SessionDescription) -> bytes:
        """Bridge the caller to the callee that answered and return the caller's 2xx body:
        the callee's answer anchored for the caller when the caller offered that codec;
        otherwise our own answer to the caller's offer, with the legs transcoded."""
        offer = a.offer
        chosen = b.media.codec
        if offer is None or chosen is None or sdp.offers(offer, chosen):
            # A relay: both directions carry what the callee's answer chose.
            if chosen is not None:
                a.media.set_codec(chosen, b.media.dtmf_pt)
            self._bridge(a, b)
            return self._sdp_for(a, answer)
        ours, codec, dtmf = sdp.answer(
            offer, self.media_address, a.media.local_address[1], self.policy.codecs
        )
        keys = sdp.srtp_keys(ours, offer)
        a.srtp = keys
        a.media.set_srtp(SrtpContext(*keys) if keys else None)
        host, port = sdp.remote_address(offer)
        assert offer.audio is not None  # answer() accepted its audio stream
        a.media.set_remote(
            host, port, codec, dtmf, fmtp=offer.audio.format_parameters(codec.payload_type)
        )
        transcode_bridge(a.media, b.media)
        log.info("%s transcoding %s <-> %s", a.call.id, codec.name, chosen.name)
        return bytes(ours)

    def _ack(self, leg: Leg, body: bytes) -> None:
        assert leg.dialog is not None
        ack = leg.dialog.create_ack(leg.invite.cseq.number, body, "application/sdp")
        self.endpoint.send_ack(ack, leg.peer)
        leg.ack = ack.serialize()

    def _late_answer(self, leg: Leg, ack: Request) -> None:
        """The ACK that completes a late offer must carry the answer (RFC 3264 §2); without
        one, or with one we cannot use, the session cannot start: hang up."""
        hook, leg.awaiting_answer = leg.awaiting_answer, None
        assert hook is not None
        try:
            answer = _parse_sdp(ack)
            if answer is None:
                raise SipError(400, "ACK without the answer to our offer")
            hook(answer)
        except (SipError, sdp.SdpError) as exc:
            log.info("%s: %s; hanging up", leg.call.id, exc)
            self._hangup(leg.call)

    def _relay_answer(self, a: Leg, b: Leg, answer: sdp.SessionDescription) -> None:
        a.take_sdp(answer)
        self._ack(b, self._sdp_for(b, answer))

    def _sdp_for(self, leg: Leg, description: sdp.SessionDescription) -> bytes:
        """SDP from the other side, anchored on `leg`'s media endpoint for its phone."""
        return self._anchor(description, leg.media, leg.srtp[0] if leg.srtp else None)

    def _anchor(
        self,
        description: sdp.SessionDescription,
        media: MediaEndpoint,
        key: CryptoAttribute | None,
        offered: tuple[CryptoAttribute, ...] = (),
    ) -> bytes:
        crypto = [key] if key is not None else list(offered)
        return bytes(
            sdp.anchor(description, self.media_address, media.local_address[1], None, crypto)
        )

    def _refusal(self, fork: Leg, offer: sdp.SessionDescription | None) -> bytes:
        """A valid answer for a late-offer 2xx we are about to hang up (RFC 3261 §13.2.2.4:
        the ACK must still complete the offer/answer)."""
        if offer is None:
            return b""
        try:
            answer, _, _ = sdp.answer(
                offer, self.media_address, fork.media.local_address[1], AUDIO_CODECS
            )
        except sdp.SdpError:
            return b""
        return bytes(answer)

    def _fail(self, call: Call, finals: list[Response]) -> None:
        a = call.caller
        assert a is not None and a.server_tx is not None
        status = 480 if call.timed_out else _best_failure([r.status for r in finals])
        instead = (
            self.router.after_failure(call.rang, status)
            if self.router is not None and call.rang is not None
            else None
        )
        if instead is not None and self.router is not None:
            self._failover(call, self.router.app(instead))
            return
        log.info("%s failed: %d", call.id, status)
        call.status = status
        self.endpoint.reply(a.server_tx, status)
        self._end(call)

    def _failover(self, call: Call, app: Callable[[Leg], Coroutine[object, object, None]]) -> None:
        """The phones did not take the call: a call flow takes the caller's leg instead
        (voicemail, a forward), on the media endpoint it already has."""
        a = call.caller
        assert a is not None and a.server_tx is not None
        self._stop_ring_timer(call)
        if call.far_media is not None:
            call.far_media.close()
            call.far_media = None
        call.forks = []
        call.rang = None
        call.b_call_id, call.b_tag = random_hex(10), new_tag()
        a.media.detach()
        self._spawn(self._run_app(call, a, app), a.server_tx)

    def _stop_ring_timer(self, call: Call) -> None:
        if call.ring_timer is not None:
            call.ring_timer.cancel()
            call.ring_timer = None

    def _cancel_fork(self, fork: Leg) -> None:
        if fork.final is not None or fork.dialog is not None:
            return
        if not fork.provisional:
            # RFC 3261 §9.1: no CANCEL before a provisional response; send it on the first.
            fork.cancel_wanted = True
            return
        fork.cancel_wanted = False
        self.endpoint.send_cancel(make_cancel(fork.invite), fork.peer)

    # --- in-dialog requests ---------------------------------------------------------------

    def _relay_request(self, leg: Leg, request: Request, tx: ServerTransaction) -> None:
        other = leg.other
        if other is None or other.dialog is None:
            if request.method in ("INVITE", "UPDATE") and leg.call.callee is None:
                # A leg we answered ourselves: a refresh or hold gets our own answer.
                self._local_refresh(leg, request, tx)
                return
            if request.method == "INFO":
                self._on_info(leg, request)
            self.endpoint.reply(tx, 200 if request.method == "INFO" else 405)
            return
        # Only INVITE and UPDATE carry offers to anchor; any other body (INFO's
        # application/dtmf-relay, say) passes through as it is.
        body, content_type = request.body, request.headers.get("Content-Type")
        if request.method in ("INVITE", "UPDATE"):
            description = _parse_sdp(request)
            if description is not None and self._music_on_hold(leg, other, description, tx):
                return
            body, content_type = b"", "application/sdp"
            if description is not None:
                leg.take_sdp(description)
                body = self._sdp_for(other, description)
        extra = [("Contact", f"<{self.endpoint.contact(other.peer)}>")]
        out = other.dialog.create_request(request.method, body, content_type, extra)
        self.endpoint.send_request(
            out, other.peer, lambda r, t: self._relay_response(leg, tx, other, out, r)
        )

    def _music_on_hold(
        self, leg: Leg, other: Leg, offer: sdp.SessionDescription, tx: ServerTransaction
    ) -> bool:
        """Hold with music (RFC 3264 §8.4 hold, answered by the PBX): when a phone puts
        the call on hold and `DATA_DIR/moh` holds music, ipbx answers the hold itself
        and plays the music to the other party; resuming re-joins the two. Without music
        the hold is passed to the other phone as any re-offer. True when handled here."""
        call = leg.call
        holding = sdp.direction(offer) in ("sendonly", "inactive")
        if not holding and call.music is None:
            return False
        if holding and (self.moh is None or not self.moh.files()):
            return False
        codec = leg.media.codec
        if codec is None or leg.srtp is not None:
            return False  # (an SRTP leg's hold is passed through: its keys stay end to end)
        try:
            answer, _, _ = sdp.answer(
                offer, self.media_address, leg.media.local_address[1], [codec]
            )
        except sdp.SdpError:
            return False
        leg.take_sdp(offer)
        if holding and answer.audio is not None:
            answer.audio.set_direction(
                "recvonly" if sdp.direction(offer) == "sendonly" else "inactive"
            )
            if call.music is None:
                leg.media.detach()
                assert self.moh is not None
                call.music = asyncio.ensure_future(self.moh.play(other.media))
                call.path.append("hold")
                log.info("%s: %s holds; music to %s", call.id, leg.peer, other.peer)
        else:
            music, call.music = call.music, None
            if music is not None:
                music.cancel()
            self.rejoin(leg, other)
            log.info("%s: %s resumes", call.id, leg.peer)
        out = make_response(tx.request, 200, None, tx.to_tag)
        out.body = bytes(answer)
        out.headers.add("Content-Type", "application/sdp")
        out.headers.add("Contact", f"<{self.endpoint.contact(leg.peer)}>")
        if tx.is_invite:
            self._send_2xx(leg, tx, out)
        else:
            self.endpoint.respond(tx, out)
        return True

    def rejoin(self, a: Leg, b: Leg) -> None:
        """Bridge two legs again: relayed when they share a codec, transcoded otherwise."""
        x, y = a.media.codec, b.media.codec
        if x is not None and y is not None and (x.name, x.clock_rate) != (y.name, y.clock_rate):
            transcode_bridge(a.media, b.media)
        else:
            bridge(a.media, b.media)

    def _relay_response(
        self, leg: Leg, tx: ServerTransaction, other: Leg, sent: Request, response: Response
    ) -> None:
        if response.status == 100:
            return
        if other.dialog is not None:
            other.dialog.receive_response(response)
        if sent.method == "INVITE" and 200 <= response.status < 300 and other.dialog is not None:
            self.endpoint.send_ack(other.dialog.create_ack(sent.cseq.number), other.peer)
        out = make_response(tx.request, response.status, response.reason, tx.to_tag)
        description = _parse_sdp(response) if sent.method in ("INVITE", "UPDATE") else None
        if description is not None:
            other.take_sdp(description)
            out.body = self._sdp_for(leg, description)
            out.headers.add("Content-Type", "application/sdp")
        if response.status < 300:
            out.headers.add("Contact", f"<{self.endpoint.contact(leg.peer)}>")
        if tx.is_invite and 200 <= response.status < 300:
            self._send_2xx(leg, tx, out)
        else:
            self.endpoint.respond(tx, out)

    def _on_info(self, leg: Leg, request: Request) -> None:
        """SIP INFO with application/dtmf-relay (the Cisco format most phones send) on a
        leg ipbx terminates: the same digit event as RFC 4733 and in-band tones."""
        content_type = request.headers.get("Content-Type") or ""
        if content_type.split(";")[0].strip().lower() != "application/dtmf-relay":
            return
        digit = dtmf_relay_digit(request.body)
        if digit is not None and leg.media.on_dtmf is not None:
            leg.media.on_dtmf(digit)

    def _local_refresh(self, leg: Leg, request: Request, tx: ServerTransaction) -> None:
        description = _parse_sdp(request)
        body = b""
        if description is not None:
            answer, codec, dtmf = sdp.answer(
                description, self.media_address, leg.media.local_address[1], AUDIO_CODECS
            )
            # The echo test keeps echoing; a call flow keeps its leg terminated here.
            echo = leg.call.app_task is None
            self._media_to(leg, description, answer, codec, dtmf, echo)
            body = bytes(answer)
        out = make_response(request, 200, None, tx.to_tag)
        out.body = body
        if body:
            out.headers.add("Content-Type", "application/sdp")
        out.headers.add("Contact", f"<{self.endpoint.contact(leg.peer)}>")
        if tx.is_invite:
            self._send_2xx(leg, tx, out)
        else:
            self.endpoint.respond(tx, out)

    # --- answering, 2xx reliability, teardown ----------------------------------------------

    def _answer(self, leg: Leg, status: int, body: bytes) -> None:
        assert leg.server_tx is not None
        out = _dialog_response(leg.invite, status, None, leg.server_tx.to_tag)
        out.headers.add("Contact", f"<{self.endpoint.contact(leg.peer)}>")
        out.headers.add("Allow", ALLOW)
        if body:
            out.body = body
            out.headers.add("Content-Type", "application/sdp")
        self._send_2xx(leg, leg.server_tx, out)

    def _send_2xx(self, leg: Leg, tx: ServerTransaction, response: Response) -> None:
        """Send a 2xx to an INVITE and, over UDP, repeat it until the ACK comes
        (RFC 3261 §13.3.1.4: T1 doubling up to T2, giving up after 64*T1)."""
        self.endpoint.respond(tx, response)
        self._stop_2xx(leg)
        leg.pending_ack_cseq = tx.request.cseq.number
        if leg.peer.reliable:
            return
        timers = self.endpoint.layer.timers
        data = response.serialize()
        started = self.endpoint.loop.time()

        def again(interval: float) -> None:
            if self.endpoint.loop.time() - started >= 64 * timers.t1:
                leg.unacked_2xx = None
                log.info("%s: no ACK for 2xx from %s", leg.call.id, leg.peer)
                self._hangup(leg.call)
                return
            self.endpoint.send_raw(data, leg.peer)
            nxt = min(interval * 2, timers.t2)
            leg.unacked_2xx = self.endpoint.loop.call_later(nxt, again, nxt)

        leg.unacked_2xx = self.endpoint.loop.call_later(timers.t1, again, timers.t1)

    def _stop_2xx(self, leg: Leg) -> None:
        if leg.unacked_2xx is not None:
            leg.unacked_2xx.cancel()
            leg.unacked_2xx = None
        leg.pending_ack_cseq = None

    def _bridge(self, a: Leg, b: Leg) -> None:
        bridge(a.media, b.media)

    def record(self, call: Call) -> bool:
        """Record the call from now on, into `recordings/DAY/UID.wav`: caller on the left
        channel, callee on the right (or mixed). False when the file cannot be made (the
        reason is logged)."""
        a, b = call.caller, call.callee
        assert a is not None and b is not None
        codecs = [a.media.codec, b.media.codec]
        day = time.strftime("%Y-%m-%d", time.gmtime(call.started))
        path = self.policy.recordings / day / f"{call.uid}.wav"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            call.recorder = CallRecorder(
                path, [c for c in codecs if c is not None], self.policy.mixed_recordings
            )
        except (OSError, CodecError, ValueError) as exc:
            log.warning("%s: cannot record: %s", call.id, exc)
            return False
        a.media.set_tap(call.recorder.sides[0].receive)
        b.media.set_tap(call.recorder.sides[1].receive)
        log.info("%s recording to %s", call.id, path)
        return True

    def stop_recording(self, call: Call) -> str | None:
        """Stop the call's recording and close its file (the call record still names
        it); publishes recording.ready. The file's name under `recordings`, or None
        when nothing was being recorded."""
        recorder = call.recorder
        if recorder is None or not recorder.recording:
            return None
        for leg in (call.caller, call.callee):
            if leg is not None:
                leg.media.set_tap(None)
        path = recorder.stop()
        name = str(path.relative_to(self.policy.recordings))
        log.info("%s recording stopped: %s", call.id, path)
        self._publish(RECORDING_READY, call, recording=name, seconds=round(recorder.seconds, 3))
        return name

    def _register(self, call: Call, leg: Leg) -> None:
        assert leg.dialog is not None
        self.calls[call.id] = call
        self.dialogs[leg.dialog.key] = leg

    def hang_up(self, call: Call) -> None:
        """End a call from our side in whatever state it is: BYE to the legs that
        answered, CANCEL to phones still ringing, 487 to a caller not yet answered."""
        if call.dialing is not None and not call.dialing.done():
            call.dialing.set_result(487)  # a click-to-call or a transfer stops dialling
        if call.answered is None:
            call.status = 487  # the record says no_answer, not failed
        self.hangup_app(call, 487)

    def _hangup(self, call: Call) -> None:
        """End an established call from our side: BYE to every leg with a dialog."""
        for leg in (call.caller, call.callee):
            if leg is not None and leg.dialog is not None:
                self.endpoint.send_request(leg.dialog.create_request("BYE"), leg.peer)
        self._end(call)

    def _end(self, call: Call) -> None:
        if call.ended:
            return
        call.ended = True
        self._stop_ring_timer(call)
        if call.music is not None:
            call.music.cancel()
            call.music = None
        if call.app_task is not None and call.app_task is not asyncio.current_task():
            call.app_task.cancel()
        for fork in call.forks:
            if fork is not call.callee:
                self._cancel_fork(fork)
        self.calls.pop(call.id, None)
        if call.caller is not None:
            record = self._call_record(call)
            self.records.append(record)
            talked = record.ended - record.answered if record.answered is not None else 0.0
            self._publish(CALL_ENDED, call, result=record.result, duration=round(talked, 3))
            if record.result != "answered":
                self._publish(CALL_MISSED, call, extension=call.to_number, result=record.result)
        closed: set[int] = set()
        for leg in (call.caller, call.callee, *call.forks):
            if leg is None:
                continue
            self._stop_2xx(leg)
            if leg.dialog is not None:
                self.dialogs.pop(leg.dialog.key, None)
            if leg.server_tx is not None:
                self._by_invite.pop(id(leg.server_tx), None)
            if id(leg.media) not in closed:
                closed.add(id(leg.media))
                leg.media.close()
            if leg.trunk_slot is not None:
                leg.trunk_slot.release()
            leg.other = None
            leg.awaiting_answer = None
        if call.far_media is not None:
            call.far_media.close()  # opened for a trunk attempt that never came
        if call.inbound_slot is not None:
            call.inbound_slot.release()
        # Legs point at their call: drop the references back so that the call is freed
        # by reference counting, not left for the cyclic collector.
        call.caller = call.callee = None
        call.forks = []
        call.far_media = None

    def _spawn(self, coro: Coroutine[object, object, None], tx: ServerTransaction) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._task_done(done, tx))

    def _task_done(self, task: asyncio.Task[None], tx: ServerTransaction) -> None:
        """A call-setup task that failed must still answer its caller (500), or the
        caller would ring until its own time-out."""
        self._tasks.discard(task)
        if task.cancelled() or task.exception() is None:
            return
        log.error("call set-up failed", exc_info=task.exception())
        call = self._by_invite.get(id(tx))
        if tx.response is None or tx.response.status < 200:
            self.endpoint.reply(tx, 500)
        if call is not None:
            self._hangup(call)

    def _call_record(self, call: Call) -> CallRecord:
        recording = None
        if call.recorder is not None:
            self.stop_recording(call)
            recording = str(call.recorder.path.relative_to(self.policy.recordings))
        legs = [(role, leg) for role, leg in (("caller", call.caller), ("callee", call.callee))]
        return CallRecord(
            call_id=call.uid,
            caller=call.from_number,
            callee=call.to_number,
            started=call.started,
            answered=call.answered,
            ended=time.time(),
            result=_result(call),
            digits="".join(call.digits),
            recording=recording,
            path=",".join(call.path),
            direction=_direction(call),
            legs=tuple(_leg_record(role, leg) for role, leg in legs if leg is not None),
        )


def _leg_record(role: str, leg: Leg) -> LegRecord:
    reading = leg.media.meter.reading()
    codec = leg.media.codec.name if leg.media.codec is not None else ""
    rtt = leg.media.round_trip.rtt_ms
    mos = None
    if reading.packets_received:
        mos = round(leg_mos(codec, reading.loss_percent, reading.jitter_ms, rtt), 2)
    return LegRecord(
        role=role,
        peer=f"{leg.peer.transport}:{leg.peer.host}:{leg.peer.port}",
        codec=codec,
        packets_received=reading.packets_received,
        packets_lost=reading.packets_lost,
        jitter_ms=round(reading.jitter_ms, 2),
        rtt_ms=None if rtt is None else round(rtt, 2),
        mos=mos,
    )


def _result(call: Call) -> str:
    if call.answered is not None:
        return "answered"
    if call.cancelled:
        return "cancelled"
    if call.status in (486, 600):
        return "busy"
    if call.status in (408, 480, 487):
        return "no_answer"
    return "failed"


def _direction(call: Call) -> str:
    if call.inbound_slot is not None:
        return "inbound"
    return "outbound" if call.route is not None else "internal"


def _identity(call: Call, leg: Leg | None) -> NameAddr:
    """Who a phone rung for `leg` sees calling: the caller, the party a transfer hands
    over (the called number, for a callee); for a call ipbx places, the other party."""
    if leg is None:
        return NameAddr(Uri("sip", call.to_number, None, "ipbx", None))
    if leg is call.caller and leg.server_tx is not None:
        return leg.invite.from_
    if leg is call.caller:
        return NameAddr(Uri("sip", call.from_number, None, "ipbx", None))
    return NameAddr(Uri("sip", call.to_number, None, leg.invite.uri.host, None))


def _replaces(target: Uri) -> tuple[str, str, str] | None:
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


def _best_failure(statuses: list[int]) -> int:
    """The response the caller gets when no phone answered (after RFC 3261 §16.7 step 6:
    a 6xx wins; busy beats unavailable; time-outs read as unavailable)."""
    for status in statuses:
        if status >= 600:
            return status
    if 486 in statuses:
        return 486
    real = [s for s in statuses if s not in (408, 503)]
    if not real:
        return 480
    return min(real, key=lambda s: s // 100)
