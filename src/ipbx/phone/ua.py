"""A SIP user agent: registration, outgoing and incoming calls, media through MediaEndpoint.

`Phone` is the transaction user on top of a `SipEndpoint`; a `Call` is one dialog plus
one media endpoint. Every request goes to the configured server, which acts as the
outbound proxy (RFC 3261 §8.1.2): a phone behind a PBX talks to nobody else.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ipbx import sdp
from ipbx.media.channel import ChannelPair
from ipbx.media.codecs import AUDIO_CODECS, Codec, Pcm
from ipbx.media.endpoint import PTIME_MS, MediaEndpoint, close_pool
from ipbx.media.ports import PortPool
from ipbx.sip.auth import answer_challenge, retry_with_credentials
from ipbx.sip.dialog import Dialog, dialog_key_of
from ipbx.sip.errors import SipError
from ipbx.sip.invite import (
    Acked,
    Answered,
    AnswerMissing,
    IncomingInvite,
    NoAck,
    OutgoingInvite,
    Provisional,
    Rejected,
    Resend,
    Respond,
)
from ipbx.sip.message import Headers, Request, Response
from ipbx.sip.transaction import (
    Address,
    ClientTransaction,
    ServerTransaction,
    make_response,
    new_tag,
)
from ipbx.sip.transport.alarm import Alarm
from ipbx.sip.transport.endpoint import SipEndpoint
from ipbx.sip.uri import NameAddr, Uri

log = logging.getLogger("ipbx.phone")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO"
USER_AGENT = "ipbx-phone"
# Audio is handed to the media endpoint in slices this long, so that a hold (RFC 3264
# §8.4: no sending on a recvonly or inactive stream) takes effect within one slice.
SLICE_FRAMES = 10
# How long a BYE or unREGISTER may take at exit before we give up on the answer.
GOODBYE_TIMEOUT = 5.0
# What a comma in the digits to send waits.
DTMF_PAUSE_SECONDS = 1.0


class CallFailed(Exception):
    """A request got a final non-2xx answer (or a synthesized 408 on timeout)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class PhoneSettings:
    server: Address
    user: str
    password: str
    local_host: str = "127.0.0.1"
    local_port: int = 0
    rtp_ports: tuple[int, int] = (40000, 40999)
    codecs: tuple[Codec, ...] = AUDIO_CODECS


@dataclass
class IncomingCall:
    """An INVITE waiting for `Phone.answer`."""

    request: Request
    source: Address
    tx: ServerTransaction
    cancelled: asyncio.Event = field(default_factory=asyncio.Event)


class Call:
    """An established call: its dialog, its media, and what either side does to it."""

    def __init__(
        self,
        phone: Phone,
        dialog: Dialog,
        peer: Address,
        media: MediaEndpoint,
        local_sdp: sdp.SessionDescription,
    ) -> None:
        self.phone = phone
        self.dialog = dialog
        self.peer = peer
        self.media = media
        self.local_sdp = local_sdp
        self.ended = asyncio.Event()
        self.ended_by_peer = False
        self.sending = True
        self.digits: list[str] = []
        self.on_dtmf: Callable[[str], None] | None = None
        # Our last 2xx to an INVITE of this dialog, and the timer that resends it.
        self.answering: IncomingInvite | None = None
        self.resend_timer = Alarm(phone.endpoint.loop, self._resend_2xx)
        media.on_dtmf = self._dtmf

    def _dtmf(self, digit: str) -> None:
        self.digits.append(digit)
        if self.on_dtmf is not None:
            self.on_dtmf(digit)

    def record(self, path: str | Path) -> None:
        self.media.record(path)

    async def play(self, pcm: Pcm) -> None:
        """Send mono samples at the codec's clock rate (8000 Hz for the G.711 the phone
        speaks) in real time; while held we stay silent but the clock runs on."""
        assert self.media.codec is not None
        step = self.media.codec.samples_per_frame(PTIME_MS) * SLICE_FRAMES
        loop = asyncio.get_running_loop()
        start = loop.time()
        for index, offset in enumerate(range(0, len(pcm), step)):
            # Slices are due at fixed times, so they neither overlap nor drift.
            delay = start + index * step / self.media.codec.clock_rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.ended.is_set():
                return
            if self.sending:
                await self.media.play(pcm[offset : offset + step])
        await asyncio.sleep(max(0.0, start + len(pcm) / self.media.codec.clock_rate - loop.time()))

    async def send_dtmf(self, digits: str) -> None:
        """RFC 4733 events; a comma is a pause of a second, as in a phone's dial string."""
        for index, run in enumerate(digits.split(",")):
            if index:
                await asyncio.sleep(DTMF_PAUSE_SECONDS)
            if run:
                await self.media.send_dtmf(run)

    async def hold(self) -> None:
        """RFC 3264 §8.4 / RFC 6337 §5.3: a re-INVITE offering sendonly."""
        await self._reoffer("sendonly")

    async def resume(self) -> None:
        await self._reoffer("sendrecv")

    async def _reoffer(self, direction: str) -> None:
        host, port = self.media.local_address
        origin = self.local_sdp.origin
        # RFC 3264 §8: same session id, version one higher.
        offer = sdp.make_offer(
            host,
            port,
            self.phone.settings.codecs,
            direction=direction,
            session_id=int(origin.session_id),
            version=origin.version + 1,
        )
        contact = f"<{self.phone.endpoint.contact(self.peer, self.phone.settings.user)}>"
        invite = self.dialog.create_request(
            "INVITE", bytes(offer), "application/sdp", [("Contact", contact)]
        )
        usage = OutgoingInvite(invite, self.peer, self.phone.credentials, self.dialog)
        response = await self.phone.invite(usage)
        if response.status >= 300:
            raise CallFailed(response.status, response.reason)
        self.local_sdp = offer
        self._apply_answer(_sdp_of(response))
        self.sending = direction in ("sendrecv", "sendonly")
        log.info("%s: %s", self.dialog.call_id, "on hold" if direction == "sendonly" else "resumed")

    def _apply_answer(self, answer: sdp.SessionDescription) -> None:
        codec, dtmf_pt = sdp.negotiated(answer, self.phone.settings.codecs)
        host, port = sdp.remote_address(answer)
        if host not in ("0.0.0.0", "::") and port:
            self.media.set_remote(host, port, codec, dtmf_pt)

    async def hangup(self) -> None:
        """BYE (RFC 3261 §15.1.1); the call is over whatever the answer."""
        if self.ended.is_set():
            return
        self._finish()
        bye = self.dialog.create_request("BYE")
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(GOODBYE_TIMEOUT):
                response = await self.phone.request(bye, self.peer)
                log.info("%s: BYE answered %d", self.dialog.call_id, response.status)

    def send_2xx(self, usage: IncomingInvite, response: Response) -> None:
        """Our 2xx to an INVITE of this call, resent until its ACK comes (the usage keeps
        the schedule of RFC 3261 §13.3.1.4; a later INVITE's 2xx takes over)."""
        self.answering = usage
        self._answering(usage.accept(response, self.phone.endpoint.loop.time()))

    def acked(self, ack: Request) -> None:
        if self.answering is not None:
            self._answering(self.answering.receive_ack(ack))

    def _answering(self, items: Sequence[Respond | Resend | NoAck | Acked | AnswerMissing]) -> None:
        for item in items:
            if isinstance(item, Respond | Resend):
                self.phone.endpoint.transmit(item)
            elif isinstance(item, NoAck):
                log.info("%s: no ACK for our 2xx", self.dialog.call_id)
        if self.answering is not None and not self.ended.is_set():
            self.resend_timer.set(self.answering.next_deadline())

    def _resend_2xx(self, now: float) -> None:
        if self.answering is not None:
            self._answering(self.answering.expire(now))

    def _finish(self) -> None:
        self.resend_timer.cancel()
        self.ended.set()
        self.media.close()
        self.phone.calls.pop(self.dialog.key, None)


class Phone:
    """The transaction user. Use `await Phone.start(settings)`, then register, call or
    answer, and `await close()`."""

    def __init__(self, settings: PhoneSettings) -> None:
        self.settings = settings
        self.endpoint = SipEndpoint(self, user_agent=USER_AGENT)
        self.pool: PortPool[ChannelPair] = PortPool(settings.local_host, *settings.rtp_ports)
        self.calls: dict[tuple[str, str, str], Call] = {}
        self.incoming: asyncio.Queue[IncomingCall] = asyncio.Queue()
        self._pending: dict[int, IncomingCall] = {}
        self._registration_id = secrets.token_hex(10)
        self._registration_seq = 0
        self._refresh: asyncio.Task[None] | None = None
        self.registered_expires = 0
        # Incoming INVITEs are queued for answer() only when someone will take them.
        self.accepting = False

    @classmethod
    async def start(cls, settings: PhoneSettings) -> Phone:
        phone = cls(settings)
        transport = settings.server.transport
        await phone.endpoint.listen(transport, settings.local_host, settings.local_port)
        return phone

    async def close(self) -> None:
        """Hang up, unregister if registered, close the sockets; each step is bounded."""
        for call in list(self.calls.values()):
            await call.hangup()
        if self._refresh is not None or self.registered_expires:
            with contextlib.suppress(TimeoutError):
                await self.unregister()
        await self.endpoint.close()
        close_pool(self.pool)

    # --- requests with digest authentication ----------------------------------------------

    def _aor(self, user: str) -> NameAddr:
        host, port = self.settings.server.host, self.settings.server.port
        return NameAddr(Uri("sip", user, None, host, port))

    def _new_request(self, method: str, uri: Uri, to: NameAddr, call_id: str, seq: int) -> Request:
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", str(self._aor(self.settings.user).with_tag(new_tag())))
        headers.add("To", str(to))
        headers.add("Call-ID", call_id)
        headers.add("CSeq", f"{seq} {method}")
        contact = self.endpoint.contact(self.settings.server, self.settings.user)
        headers.add("Contact", f"<{contact}>")
        return Request(headers, b"", method, uri)

    def credentials(self, response: Response, method: str, uri: str) -> tuple[str, str] | None:
        """Our answer to a 401/407 (RFC 3261 §22.2, §22.3)."""
        return answer_challenge(response, method, uri, self.settings.user, self.settings.password)

    async def request(self, request: Request, dest: Address) -> Response:
        """Send a request other than INVITE in a client transaction and return its final
        response, after answering a challenge (sip/auth.py says when)."""
        answered = 0
        while True:
            response = await self._transact(request, dest)
            retry = retry_with_credentials(request, response, answered, self.credentials)
            if retry is None:
                return response
            request = retry
            answered += 1

    async def _transact(self, request: Request, dest: Address) -> Response:
        final: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

        def on_response(response: Response, tx: ClientTransaction) -> None:
            if response.status >= 200 and not final.done():
                final.set_result(response)

        self.endpoint.send_request(request, dest, on_response)
        # The transaction's own timer F ends this with a synthesized 408 (64*T1).
        return await final

    async def invite(
        self, usage: OutgoingInvite, on_provisional: Callable[[Response], None] | None = None
    ) -> Response:
        """Send the INVITE of `usage` and return its final response. The usage answers a
        challenge, ACKs the 2xx (and every copy of it that follows), and if we stop
        waiting (--timeout) sends the CANCEL when RFC 3261 §9.1 allows it."""
        final: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

        def on_response(response: Response, tx: ClientTransaction) -> None:
            for item in usage.receive(response):
                if isinstance(item, Provisional):
                    if on_provisional is not None:
                        on_provisional(item.response)
                elif isinstance(item, Answered | Rejected):
                    if not final.done():
                        final.set_result(item.response)
                else:
                    self.endpoint.transmit(item, on_response)

        self.endpoint.send_request(usage.invite, usage.dest, on_response)
        try:
            # The transaction's own timer B ends this with a synthesized 408 (64*T1).
            return await final
        except asyncio.CancelledError:
            for cancel in usage.cancel():
                self.endpoint.transmit(cancel)
            raise

    # --- registration -------------------------------------------------------------------

    async def register(self, expires: int = 300) -> Response:
        """REGISTER our contact (RFC 3261 §10.2) and keep refreshing it at half its life."""
        response = await self._register(expires)
        if response.status < 300 and expires > 0 and self._refresh is None:
            self._refresh = asyncio.create_task(self._keep_registered(expires))
        return response

    async def unregister(self) -> Response:
        if self._refresh is not None:
            self._refresh.cancel()
            self._refresh = None
        async with asyncio.timeout(GOODBYE_TIMEOUT):
            return await self._register(0)

    async def _register(self, expires: int) -> Response:
        self._registration_seq += 1
        aor = self._aor(self.settings.user)
        registrar = Uri("sip", None, None, self.settings.server.host, self.settings.server.port)
        request = self._new_request(
            "REGISTER", registrar, aor, self._registration_id, self._registration_seq
        )
        request.headers.add("Expires", str(expires))
        request.headers.add("Allow", ALLOW)
        response = await self.request(request, self.settings.server)
        min_expires = response.headers.get("Min-Expires")
        if response.status == 423 and min_expires is not None and min_expires.isdigit():
            # §10.2.8: too brief an interval; ask again for the registrar's minimum.
            self._registration_seq = response.cseq.number
            return await self._register(int(min_expires))
        # The retry may have used a higher CSeq; the next REGISTER must go above it.
        self._registration_seq = response.cseq.number
        ours = self.endpoint.contact(self.settings.server, self.settings.user)
        self.registered_expires = _granted(response, ours, expires) if response.status < 300 else 0
        log.info(
            "REGISTER %s (expires %d): %d %s",
            aor.uri,
            expires,
            response.status,
            response.reason,
        )
        return response

    async def _keep_registered(self, expires: int) -> None:
        while True:
            await asyncio.sleep(max(1.0, (self.registered_expires or expires) / 2))
            await self._register(expires)

    # --- outgoing calls -------------------------------------------------------------------

    async def call(
        self, number: str, on_provisional: Callable[[Response], None] | None = None
    ) -> Call:
        """INVITE sip:number@server with an offer; raises CallFailed unless answered."""
        media = await MediaEndpoint.open(self.pool, latching=False)
        try:
            return await self._invite(number, media, on_provisional)
        except BaseException:
            media.close()
            raise

    async def _invite(
        self,
        number: str,
        media: MediaEndpoint,
        on_provisional: Callable[[Response], None] | None,
    ) -> Call:
        host, port = media.local_address
        offer = sdp.make_offer(host, port, self.settings.codecs)
        target = self._aor(number)
        invite = self._new_request("INVITE", target.uri, target, secrets.token_hex(10), 1)
        invite.headers.add("Allow", ALLOW)
        invite.headers.add("Content-Type", "application/sdp")
        invite.body = bytes(offer)
        log.info("calling %s", target.uri)
        usage = OutgoingInvite(invite, self.settings.server, self.credentials)
        response = await self.invite(usage, on_provisional)
        if response.status >= 300:
            raise CallFailed(response.status, response.reason)
        dialog = usage.dialog
        assert dialog is not None  # made from the 2xx
        call = Call(self, dialog, self.settings.server, media, offer)
        self.calls[dialog.key] = call
        try:
            call._apply_answer(_sdp_of(response))
        except (SipError, sdp.SdpError):
            await call.hangup()
            raise CallFailed(488, "the 2xx carried no usable SDP answer") from None
        log.info("%s: answered, %s", dialog.call_id, _codec_name(media))
        return call

    # --- incoming calls --------------------------------------------------------------------

    async def answer(self, incoming: IncomingCall, ring: float = 0.2) -> Call:
        """180 Ringing, then 200 OK with our SDP answer (RFC 3264 §6)."""
        request, tx = incoming.request, incoming.tx
        self.endpoint.reply(tx, 180, headers=[("Contact", self._contact_for(incoming.source))])
        await asyncio.sleep(ring)
        if incoming.cancelled.is_set():
            raise CallFailed(487, "Request Terminated")
        self._pending.pop(id(tx), None)
        offer = _sdp_of(request)
        media = await MediaEndpoint.open(self.pool, latching=False)
        host, port = media.local_address
        try:
            answer, codec, dtmf_pt = sdp.answer(offer, host, port, self.settings.codecs)
        except sdp.SdpError as exc:
            media.close()
            self.endpoint.reply(tx, exc.status_code)
            raise CallFailed(exc.status_code, str(exc)) from None
        dialog = Dialog.as_uas(request, tx.to_tag)
        call = Call(self, dialog, incoming.source, media, answer)
        remote_host, remote_port = sdp.remote_address(offer)
        media.set_remote(remote_host, remote_port, codec, dtmf_pt)
        call.sending = sdp.direction(answer) in ("sendrecv", "sendonly")
        self.calls[dialog.key] = call
        self._send_2xx(call, tx, answer)
        log.info("%s: answered from %s, %s", dialog.call_id, request.from_.uri, codec.name)
        return call

    def _contact_for(self, dest: Address) -> str:
        return f"<{self.endpoint.contact(dest, self.settings.user)}>"

    def _send_2xx(self, call: Call, tx: ServerTransaction, body: sdp.SessionDescription) -> None:
        response = make_response(tx.request, 200, None, tx.to_tag)
        response.headers.add("Contact", self._contact_for(call.peer))
        response.headers.add("Allow", ALLOW)
        response.headers.add("Content-Type", "application/sdp")
        response.body = bytes(body)
        call.send_2xx(IncomingInvite(tx, self.endpoint.layer.timers), response)

    # --- TransactionUser ---------------------------------------------------------------------

    def on_request(self, request: Request, source: Address, tx: ServerTransaction | None) -> None:
        if tx is None:
            call = self.calls.get(dialog_key_of(request))
            if call is not None:
                call.acked(request)
            return
        if request.to.tag is not None:
            self._in_dialog(request, tx)
        elif request.method == "INVITE" and not self.accepting:
            self.endpoint.reply(tx, 486)
        elif request.method == "INVITE":
            incoming = IncomingCall(request, source, tx)
            self._pending[id(tx)] = incoming
            log.info("incoming call from %s", request.from_.uri)
            self.incoming.put_nowait(incoming)
        elif request.method == "OPTIONS":
            # The PBX's qualify pings (and anyone's capability query, RFC 3261 §11.2).
            self.endpoint.reply(tx, 200, headers=[("Allow", ALLOW)])
        elif request.method in ("BYE", "CANCEL", "INFO"):
            self.endpoint.reply(tx, 481)
        else:
            self.endpoint.reply(tx, 405, headers=[("Allow", ALLOW)])

    def _in_dialog(self, request: Request, tx: ServerTransaction) -> None:
        call = self.calls.get(dialog_key_of(request))
        if call is None:
            self.endpoint.reply(tx, 481)  # RFC 3261 §12.2.2
            return
        call.dialog.receive_request(request)
        if request.method == "BYE":
            self.endpoint.reply(tx, 200)
            log.info("%s: hung up by the far end", call.dialog.call_id)
            call.ended_by_peer = True
            call._finish()
        elif request.method == "INVITE":
            self._reinvited(call, request, tx)
        elif request.method == "INFO":
            self.endpoint.reply(tx, 200)
        else:
            self.endpoint.reply(tx, 405, headers=[("Allow", ALLOW)])

    def _reinvited(self, call: Call, request: Request, tx: ServerTransaction) -> None:
        """Answer a re-INVITE (hold or resume) with the mirrored direction (RFC 3264 §6.1)."""
        offer = _sdp_of(request)
        host, port = call.media.local_address
        origin = call.local_sdp.origin
        try:
            answer, codec, dtmf_pt = sdp.answer(
                offer,
                host,
                port,
                self.settings.codecs,
                session_id=int(origin.session_id),
                version=origin.version + 1,
            )
        except sdp.SdpError as exc:
            self.endpoint.reply(tx, exc.status_code)
            return
        remote_host, remote_port = sdp.remote_address(offer)
        if remote_host not in ("0.0.0.0", "::") and remote_port:
            call.media.set_remote(remote_host, remote_port, codec, dtmf_pt)
        call.local_sdp = answer
        direction = sdp.direction(answer)
        call.sending = direction in ("sendrecv", "sendonly")
        log.info("%s: re-INVITE, we are now %s", call.dialog.call_id, direction)
        self._send_2xx(call, tx, answer)

    def on_cancel(self, tx: ServerTransaction) -> None:
        incoming = self._pending.pop(id(tx), None)
        if incoming is None:
            return
        log.info("incoming call from %s cancelled", incoming.request.from_.uri)
        incoming.cancelled.set()
        self.endpoint.reply(tx, 487)

    def on_no_ack(self, tx: ServerTransaction) -> None:
        log.info("no ACK for our final response to %s", tx.request.call_id)


def _codec_name(media: MediaEndpoint) -> str:
    return media.codec.name if media.codec is not None else "no codec"


def _granted(response: Response, ours: Uri, asked: int) -> int:
    """The expiry the registrar granted: our Contact's expires, else Expires (§10.2.4)."""
    for contact in response.contacts:
        value = contact.params.get("expires")
        if contact.uri.key() != ours.key():
            continue
        if value is not None and value.isdigit():
            return int(value)
    return response.expires if response.expires is not None else asked


def _sdp_of(msg: Request | Response) -> sdp.SessionDescription:
    if not msg.body or msg.content_type != "application/sdp":
        raise SipError(488, "no SDP body")
    try:
        return sdp.SessionDescription.parse(msg.body)
    except sdp.SdpError as exc:
        raise SipError(exc.status_code, str(exc)) from None
