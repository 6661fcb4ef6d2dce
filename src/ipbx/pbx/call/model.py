"""What a call is made of: a Call, in an explicit state, and its Legs.

A Call has a caller Leg (the dialog with whoever sent the INVITE, or the first phone a
call ipbx places answered) and, once answered, one callee Leg; while ringing it has a
callee Leg per contact rung at once (forks). Each Leg owns one media endpoint, so RTP
always flows phone -> ipbx -> phone with symmetric latching, which keeps NATed phones
working and lets recording, transcoding and DTMF detection sit in the path.
"""

from __future__ import annotations

import asyncio
import enum
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from ipbx import sdp
from ipbx.media.codecs import CODECS, Codec
from ipbx.media.endpoint import MediaEndpoint
from ipbx.media.recorder import CallRecorder
from ipbx.media.srtp import CryptoAttribute
from ipbx.pbx.dialplan import OutboundCall
from ipbx.pbx.nat import NatMode
from ipbx.pbx.trunks import ChannelSlot, Trunk
from ipbx.sip.dialog import Dialog
from ipbx.sip.errors import SipError
from ipbx.sip.invite import IncomingInvite, OutgoingInvite
from ipbx.sip.message import Request, Response
from ipbx.sip.session_timer import SessionTimer
from ipbx.sip.transaction import Address, ServerTransaction, make_response, new_tag, random_hex
from ipbx.sip.transport.alarm import Alarm

ALLOW = (
    "INVITE, ACK, CANCEL, BYE, OPTIONS, UPDATE, PRACK, INFO, REFER, REGISTER, SUBSCRIBE, NOTIFY, "
    "MESSAGE"
)
_call_ids = itertools.count(1)


def new_call_id() -> str:
    """The id of a new call in logs (`c1`, `c2` ...); records use `Call.uid`."""
    return f"c{next(_call_ids)}"


class CallState(enum.Enum):
    SETUP = "setup"  # the caller's INVITE is being handled; nothing rings yet
    RINGING = "ringing"  # phones or a trunk are being rung
    ANSWERED = "answered"  # two parties (or a party and a call flow) are connected
    ENDED = "ended"


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
    # The INVITE usage (sip/invite.py) of a leg ipbx calls: CANCEL timing, the ACK of its
    # 2xx, the digest retry. `invite` follows its INVITE (a retry replaces it).
    outgoing: OutgoingInvite | None = None
    # The INVITE or re-INVITE ipbx answered last on this leg, until its ACK comes, and the
    # timer that sends its 2xx again meanwhile.
    incoming: IncomingInvite | None = None
    alarm: Alarm | None = None
    # The offer the caller's INVITE carried (None for a late offer), and ipbx's own answer
    # to it once sent (a 183's early media: the 2xx repeats it, RFC 3261 §13.2.1).
    offer: sdp.SessionDescription | None = None
    answer: bytes = b""
    # SDES keys (ours, theirs) when this leg's phone speaks SRTP; ipbx ends SRTP here.
    srtp: tuple[CryptoAttribute, CryptoAttribute] | None = None
    # Late offer (RFC 3264 §2): our 2xx carried the offer, the ACK brings the answer.
    awaiting_answer: Callable[[sdp.SessionDescription], None] | None = None
    # The SDES keys we offered this leg's phone (one per suite), until it answers one.
    offered_keys: tuple[CryptoAttribute, ...] = ()
    # A leg through a trunk: the trunk, the channel it holds, and the outside number it
    # is an attempt at.
    trunk: Trunk | None = None
    trunk_slot: ChannelSlot | None = None
    # The audio direction in the SDP this leg's phone sent last (RFC 3264 §6.1): not
    # sendrecv while it holds the call or answers a hold.
    direction: str = "sendrecv"
    # The SDP ipbx last sent this leg's phone (a refresh re-INVITE offers it again,
    # unchanged, RFC 3264 §8); empty until then: the INVITE's own offer.
    local_sdp: bytes = b""
    # The SDP the phone sent last: an offer equal to it changes nothing (RFC 3264 §8;
    # its o= version alone is not trusted, for SIPp scenarios and some phones change
    # the SDP without raising it). Kept parsed: compared only when a re-offer comes.
    remote_sdp: sdp.SessionDescription | None = None
    # The leg's session timer (RFC 4028, session_refresh.py) and the alarm at its next
    # deadline; None while the leg has none.
    session_timer: SessionTimer | None = None
    session_alarm: Alarm | None = None
    # The phone is behind NAT: requests in its dialog go where its packets come from, not
    # to its Contact (pbx/nat.py).
    behind_nat: bool = False
    outside: OutsideCall | None = None

    @property
    def final(self) -> Response | None:
        """The final response to the INVITE ipbx sent on this leg, once it came."""
        return self.outgoing.final if self.outgoing is not None else None


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
    state: CallState = CallState.SETUP
    # The call record's id, unique across restarts and nodes.
    uid: str = field(default_factory=lambda: random_hex(16))
    started: float = field(default_factory=time.time)
    # When the caller's INVITE was answered, by a phone or by ipbx's own call flow (a
    # menu, voicemail, a group's ringback): what a trunk bills from.
    answered: float | None = None
    # When a person took the call (pbx/call/outcome.py): a phone, or an outside number.
    person_answered: float | None = None
    # The final status the caller got when nobody answered; "cancelled" by the caller.
    status: int | None = None
    cancelled: bool = False
    # DTMF digits ipbx received on a leg it terminates (the echo test, call flows).
    digits: list[str] = field(default_factory=list)
    recorder: CallRecorder | None = None
    # The recording of the conference room the caller was in while it recorded (the
    # call record names it when the call itself was not recorded).
    room_recording: Path | None = None
    # Outbound through trunks: the route (of the number dialled or forwarded to), the
    # outside numbers being called (one, or several members of a group at once), and
    # the media endpoint and offer every attempt shares. An inbound trunk call holds a
    # channel.
    route: OutboundCall | None = None
    outside: list[OutsideCall] = field(default_factory=list)
    far_media: MediaEndpoint | None = None
    far_body: bytes = b""
    inbound_slot: ChannelSlot | None = None
    # A call flow (IVR, voicemail ...) running on the caller's leg.
    app_task: asyncio.Task[None] | None = None
    # The outcome of phones rung for the caller's own INVITE (their answer is its
    # answer): 200, else the best failure (RFC 3261 §16.7), for the router to act on.
    outcome: asyncio.Future[int] | None = None
    # Phones rung by a call flow, a transfer or click-to-call (`dialing` resolves to the
    # final status), the leg the one that answers is bridged to, and who is told of the
    # answer as it is taken (pbx/call/fork.py `dial_with`).
    dialing: asyncio.Future[int] | None = None
    keep: Leg | None = None
    on_answer: Callable[[Leg], None] | None = None
    # Music on hold playing to the held party while the other one holds.
    music: asyncio.Future[None] | None = None
    # The caller's name, from the CRM (calls from outside).
    caller_name: str | None = None
    # ipbx placed the call itself (click-to-call, an invitation into a room): it has a
    # record and call.ended even when nobody answered and it never had a caller leg.
    placed: bool = False
    path: list[str] = field(default_factory=list)
    # The extension being rung, and the timer that gives up on its phones after its
    # no-answer time.
    rang: str | None = None
    ring_timer: asyncio.TimerHandle | None = None
    timed_out: bool = False
    # Why ipbx itself ended an answered call (media_timeout.py's MEDIA_TIMEOUT ...);
    # None when a party hung up or nobody answered.
    end_reason: str | None = None
    # Whose BYE ended the answered call: "caller" or "callee"; None when ipbx ended it.
    ended_by: str | None = None

    @property
    def ended(self) -> bool:
        return self.state is CallState.ENDED

    def new_far_dialog(self) -> None:
        """The next dialog toward a callee gets a new Call-ID and From tag (RFC 3261
        §8.1.1.4): a proxy in front would take a reuse for a merged request (482)."""
        self.b_call_id, self.b_tag = random_hex(10), new_tag()


@dataclass(eq=False)
class OutsideCall:
    """An outside number called through its route's trunks, one after another: the
    caller ID it shows, the trunks still to try, what failed so far, and the best
    failure (`status`) once no trunk is left."""

    route: OutboundCall
    caller_id: str
    trunks_left: list[Trunk]
    failures: list[Response] = field(default_factory=list)
    status: int | None = None


class Incoming(NamedTuple):
    """An INVITE that starts a call: the request, where it came from, its server
    transaction, and its SDP offer (None for a late offer)."""

    request: Request
    source: Address
    tx: ServerTransaction
    offer: sdp.SessionDescription | None


@dataclass(frozen=True)
class CallPolicy:
    """Per-extension media rules and preferences for calls.

    Calls to or from an extension in `record_always` are recorded into `recordings`,
    one WAV channel per side or `mixed` into one. Extensions in `srtp_required` must
    offer SRTP when they call and are offered it on any transport when called (others
    are offered it when registered over TLS). `codecs` is our order of preference.
    An answered call whose RTP stops for `media_timeout` seconds is ended (0: never).
    Session timers (RFC 4028): ipbx asks for `session_expires` seconds and takes no
    less than `min_se`.
    `nat` holds each extension's `nat` setting other than "auto" (pbx/nat.py).
    """

    recordings: Path
    record_always: frozenset[str] = frozenset()
    mixed_recordings: bool = False
    srtp_required: frozenset[str] = frozenset()
    codecs: tuple[Codec, ...] = CODECS
    media_timeout: float = 60.0
    session_expires: int = 1800
    min_se: int = 90
    nat: Mapping[str, NatMode] = field(default_factory=dict)


def parse_sdp(msg: Request | Response) -> sdp.SessionDescription | None:
    if not msg.body:
        return None
    if msg.content_type != "application/sdp":
        raise SipError(415, "only application/sdp bodies are understood")
    try:
        return sdp.SessionDescription.parse(msg.body)
    except sdp.SdpError as exc:
        raise SipError(exc.status_code, str(exc)) from None


def dialog_response(
    request: Request, status: int, reason: str | None, to_tag: str | None
) -> Response:
    """A response that sets up the caller's dialog (18x, 2xx to the INVITE): RFC 3261
    §12.1.1 has the UAS copy the INVITE's Record-Route into it, so that a proxy on the
    path (a provider's, in front of a trunk) stays on it for the ACK, BYE and re-INVITEs."""
    out = make_response(request, status, reason, to_tag)
    for value in request.headers.get_all("Record-Route"):
        out.headers.add("Record-Route", value)
    return out


def best_failure(statuses: list[int]) -> int:
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
