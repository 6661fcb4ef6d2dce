"""SIP user agents on the in-memory network, each one a test's puppet: a Phone registers,
calls, rings, answers, refuses, cancels, holds, transfers and hangs up when the test says
so; a provider's gateway is a Phone that never registers.

They run on the same sans-I/O transaction layer and dialogs as the PBX (`ipbx.sip`), so
100 Trying, retransmissions, the ACK of a failure and the matching of a CANCEL follow
RFC 3261 without the test writing them. What a real phone does on its own, these do too:
answer a digest challenge once, ACK a 2xx (with the answer, when it brought the offer),
take a BYE, NOTIFY, OPTIONS or re-INVITE with 200 (a re-INVITE's answer mirrors the
offer's direction, RFC 3264 §6.1), answer a CANCEL's INVITE with 487. Everything they
receive is kept for the test to assert on.

No phone sends RTP: their SDP points at 127.0.0.1 port 9 (discard).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from ipbx import sdp
from ipbx.media.codecs import AUDIO_CODECS
from ipbx.sip.auth import authorization
from ipbx.sip.dialog import Dialog, dialog_key_of
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
from ipbx.sip.transport.endpoint import SipEndpoint, resolve
from ipbx.sip.uri import NameAddr, Uri
from tests.support.network import Network

T = TypeVar("T")

# How long (virtual seconds) a phone waits for what the test expects: past 64*T1, the
# time any transaction of the PBX takes to fail.
WAIT = 40.0
RTP_HOST, RTP_PORT = "127.0.0.1", 9


def offer(direction: str = "sendrecv") -> bytes:
    """A phone's audio offer: G.711 and telephone-event."""
    return bytes(sdp.make_offer(RTP_HOST, RTP_PORT, AUDIO_CODECS, direction=direction))


def answer_to(offered: bytes) -> bytes:
    """A phone's answer to an offer: the first G.711 codec it lists, the mirrored
    direction (RFC 3264 §6.1)."""
    description = sdp.SessionDescription.parse(offered)
    return bytes(sdp.answer(description, RTP_HOST, RTP_PORT, AUDIO_CODECS)[0])


def direction(message: Request | Response) -> str:
    """The audio direction a message's SDP states (RFC 3264 §5.1, §8.4)."""
    return sdp.direction(sdp.SessionDescription.parse(message.body))


async def connected(
    caller: Phone, callee: Phone, number: str | None = None
) -> tuple[OutgoingCall, IncomingCall]:
    """`caller` calls `number` (the callee's own by default), `callee` rings and answers:
    the two ends of the call."""
    call = caller.call(number or callee.user)
    answered = await callee.rings()
    answered.answer()
    response = await call.final()
    assert response.status == 200, response
    return call, answered


class Inbox(Generic[T]):
    """What arrived, for a test to take in any order it likes."""

    def __init__(self) -> None:
        self.items: list[T] = []
        self._arrived = asyncio.Event()

    def put(self, item: T) -> None:
        self.items.append(item)
        self._arrived.set()

    async def take(self, match: Callable[[T], bool], what: str, timeout: float = WAIT) -> T:
        """The first item `match` says True of, waiting up to `timeout` for one."""
        try:
            async with asyncio.timeout(timeout):
                while True:
                    for index, item in enumerate(self.items):
                        if match(item):
                            return self.items.pop(index)
                    self._arrived.clear()
                    await self._arrived.wait()
        except TimeoutError:
            raise AssertionError(f"no {what} within {timeout} s; had {self.items}") from None

    async def none_within(self, seconds: float, match: Callable[[T], bool]) -> bool:
        """True when nothing `match` says True of came within `seconds`."""
        await asyncio.sleep(seconds)
        return not any(match(item) for item in self.items)


class Call:
    """A call on a phone, from either side: its dialog once answered, and the in-dialog
    requests it received (already answered by the phone)."""

    def __init__(self, phone: Phone, invite: Request) -> None:
        self.phone = phone
        self.invite = invite
        self.dialog: Dialog | None = None
        self.requests: Inbox[Request] = Inbox()
        # The status the phone gives the other party's re-offers (a re-INVITE with SDP)
        # instead of its 200 answer: 488 for an offer it cannot take.
        self.refuses_offers: int | None = None

    async def received(self, method: str, timeout: float = WAIT) -> Request:
        return await self.requests.take(lambda r: r.method == method, method, timeout)

    async def hung_up(self, timeout: float = WAIT) -> Request:
        """The BYE that ended the call (the phone answered it 200)."""
        return await self.received("BYE", timeout)

    async def hang_up(self) -> Response:
        response = await self.request("BYE")
        self.phone.forget(self)
        return response

    async def hold(self, held: str = "sendonly") -> Response:
        """Put the other party on hold (RFC 3264 §8.4): a re-INVITE saying `held`."""
        return await self.request("INVITE", offer(held), "application/sdp")

    async def resume(self) -> Response:
        return await self.request("INVITE", offer(), "application/sdp")

    async def refer(self, refer_to: str) -> Response:
        """Transfer the other party to `refer_to` (RFC 3515); the PBX answers 202."""
        return await self.request("REFER", extra=[("Refer-To", refer_to)])

    def replaces(self) -> str:
        """This dialog as a Replaces header value (RFC 3891 §6.1), for an attended
        transfer's Refer-To."""
        assert self.dialog is not None
        d = self.dialog
        return f"{d.call_id};to-tag={d.remote_tag};from-tag={d.local_tag}"

    async def request(
        self,
        method: str,
        body: bytes = b"",
        content_type: str | None = None,
        extra: list[tuple[str, str]] | None = None,
    ) -> Response:
        """Send an in-dialog request and return its final response (a 2xx to a
        re-INVITE is ACKed)."""
        assert self.dialog is not None, "no dialog yet"
        dialog = self.dialog
        contact = [("Contact", f"<{self.phone.contact}>")] if method == "INVITE" else []
        request = dialog.create_request(method, body, content_type, [*contact, *(extra or [])])
        dest = resolve(dialog.next_hop())
        response = await self.phone.transact(request, dest)
        dialog.receive_response(response)
        if method == "INVITE" and response.status < 300:
            self.phone.endpoint.send_ack(dialog.create_ack(request.cseq.number), dest)
        return response

    def on_request(self, request: Request, tx: ServerTransaction) -> None:
        """What a phone does, unasked, with a request in this call's dialog."""
        assert self.dialog is not None
        self.dialog.receive_request(request)
        if request.method == "INVITE" and request.body and self.refuses_offers is not None:
            self.phone.respond(tx, self.refuses_offers)
        elif request.method == "INVITE" and request.body:
            self.phone.respond(tx, 200, answer_to(request.body))
        else:
            self.phone.respond(tx, 200)
        if request.method == "BYE":
            self.phone.forget(self)
        self.requests.put(request)


class IncomingCall(Call):
    """An INVITE that rings this phone."""

    def __init__(self, phone: Phone, invite: Request, tx: ServerTransaction) -> None:
        super().__init__(phone, invite)
        self.tx = tx
        self.cancelled = asyncio.Event()

    @property
    def caller(self) -> str:
        return self.invite.from_.uri.user or ""

    def ring(self, status: int = 180, headers: list[tuple[str, str]] | None = None) -> None:
        self.phone.respond(self.tx, status, headers=headers)

    def answer(
        self, body: bytes | None = None, headers: list[tuple[str, str]] | None = None
    ) -> None:
        """200 with our answer to the INVITE's offer (our offer, to a late offer), or
        with `body` when given; `headers` besides."""
        if body is None:
            body = answer_to(self.invite.body) if self.invite.body else offer()
        self.phone.respond(self.tx, 200, body, headers)
        self.dialog = Dialog.as_uas(self.invite, self.tx.to_tag)
        self.phone.remember(self)

    def refuse(self, status: int, headers: list[tuple[str, str]] | None = None) -> None:
        self.phone.endpoint.reply(self.tx, status, headers=headers)

    def challenge(self, realm: str = "provider.test", nonce: str = "abc123") -> None:
        """407 with a digest challenge, as a provider's proxy asks a trunk for its
        credentials (RFC 3261 §22.3)."""
        value = f'Digest realm="{realm}", nonce="{nonce}", algorithm=MD5'
        self.refuse(407, [("Proxy-Authenticate", value)])

    async def rings_unanswered(self) -> float:
        """Ring (180) until the INVITE is cancelled: how long it rang, in seconds of the
        loop's clock (virtual in the testbed)."""
        self.ring()
        loop = asyncio.get_running_loop()
        since = loop.time()
        await self.was_cancelled()
        return loop.time() - since

    async def was_cancelled(self, timeout: float = WAIT) -> None:
        """Wait for the CANCEL of this INVITE (the phone answered it 200, and the
        INVITE 487)."""
        try:
            async with asyncio.timeout(timeout):
                await self.cancelled.wait()
        except TimeoutError:
            raise AssertionError(f"no CANCEL of {self.invite.call_id} within {timeout} s") from None


class OutgoingCall(Call):
    """An INVITE this phone sent."""

    def __init__(self, phone: Phone, invite: Request, dest: Address) -> None:
        super().__init__(phone, invite)
        self.dest = dest
        self.responses: Inbox[Response] = Inbox()
        self._challenged = False
        self._ack: bytes | None = None
        self._tx: ClientTransaction | None = None

    def send(self) -> None:
        self._tx = self.phone.endpoint.send_request(self.invite, self.dest, self._on_response)

    async def provisional(self, status: int = 180) -> Response:
        return await self.responses.take(lambda r: r.status == status, f"{status} response")

    async def final(self) -> Response:
        """The final response (a 2xx is ACKed, and the call has its dialog)."""
        return await self.responses.take(lambda r: r.status >= 200, "final response")

    def cancel(self) -> None:
        """CANCEL the INVITE (RFC 3261 §9.1); its 487 comes with final()."""
        assert self._tx is not None
        self.phone.endpoint.send_cancel(make_cancel(self._tx.request), self.dest)

    def _on_response(self, response: Response, _tx: ClientTransaction) -> None:
        phone = self.phone
        if response.status in (401, 407) and not self._challenged and phone.password:
            self._challenged = True
            self.invite = phone.authorized(self.invite, response)
            self.send()
            return
        if 200 <= response.status < 300:
            if self.dialog is not None and self._ack is not None:
                # A retransmitted 2xx: our ACK again (RFC 3261 §13.2.2.4).
                phone.endpoint.send_raw(self._ack, resolve(self.dialog.next_hop()))
                return
            self.dialog = Dialog.as_uac(self.invite, response)
            if self.invite.body or not response.body:
                ack = self.dialog.create_ack(self.invite.cseq.number)
            else:
                # A late offer: the 2xx brought the offer, the ACK answers (RFC 3264 §2).
                answer = answer_to(response.body)
                ack = self.dialog.create_ack(self.invite.cseq.number, answer, "application/sdp")
            phone.endpoint.send_ack(ack, resolve(self.dialog.next_hop()))
            self._ack = ack.serialize()
            phone.remember(self)
        self.responses.put(response)


class Phone:
    """A SIP phone (or a provider's gateway) at `address`, for `user` with `password`,
    whose server is `server`. Requests it did not expect are answered 200 and kept in
    `requests` (the PBX's OPTIONS pings, message-waiting NOTIFYs)."""

    def __init__(
        self,
        network: Network,
        address: Address,
        server: Address,
        user: str,
        password: str | None = None,
    ) -> None:
        self.address = address
        self.server = server
        self.user = user
        self.password = password
        self.endpoint = SipEndpoint(self, user_agent=f"in-memory phone {user}")
        network.attach(self.endpoint, address)
        self.contact = Uri("sip", user, None, address.host, address.port)
        # The display name its From shows (RFC 3261 §20.20), none by default.
        self.display: str | None = None
        self.calls: Inbox[IncomingCall] = Inbox()
        self.requests: Inbox[Request] = Inbox()
        self._dialogs: dict[tuple[str, str, str], Call] = {}
        self._ringing: dict[int, IncomingCall] = {}

    def __repr__(self) -> str:
        return f"<Phone {self.user} at {self.address.host}:{self.address.port}>"

    # --- what a test does -----------------------------------------------------------------

    async def register(self, expires: int = 3600) -> Response:
        uri = Uri("sip", None, None, self.server.host, self.server.port)
        request = self._request("REGISTER", uri, self._aor())
        request.headers.add("Expires", str(expires))
        response = await self.transact(request, self.server)
        if response.status in (401, 407):
            response = await self.transact(self.authorized(request, response), self.server)
        return response

    def call(
        self,
        number: str,
        body: bytes | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> OutgoingCall:
        """INVITE `number` at the server, with our offer (`body` b"" for a late offer)
        and `headers` besides."""
        body = offer() if body is None else body
        to = NameAddr(Uri("sip", number, None, self.server.host, None))
        invite = self._request("INVITE", to.uri, to, body)
        for name, value in headers or []:
            invite.headers.add(name, value)
        call = OutgoingCall(self, invite, self.server)
        call.send()
        return call

    async def subscribe(self, number: str, event: str, expires: int = 600) -> tuple[Call, Response]:
        """SUBSCRIBE to `event` of `number` (RFC 6665), answering one digest challenge;
        the subscription's dialog (its NOTIFYs in `requests`, answered 200) and the final
        response. The dialog is kept before the response returns: its first NOTIFY may
        follow the 200 at once."""
        to = NameAddr(Uri("sip", number, None, self.server.host, None))
        request = self._request("SUBSCRIBE", to.uri, to)
        request.headers.add("Event", event)
        request.headers.add("Expires", str(expires))
        subscription = Call(self, request)

        def keep(response: Response) -> None:
            if 200 <= response.status < 300 and subscription.dialog is None:
                subscription.dialog = Dialog.as_uac(subscription.invite, response)
                self.remember(subscription)

        response = await self.transact(request, self.server, keep)
        if response.status in (401, 407):
            subscription.invite = self.authorized(request, response)
            response = await self.transact(subscription.invite, self.server, keep)
        return subscription, response

    async def rings(self, timeout: float = WAIT) -> IncomingCall:
        """The next INVITE to ring this phone."""
        return await self.calls.take(lambda call: True, f"INVITE to {self}", timeout)

    async def rings_not(self, seconds: float = 2.0) -> bool:
        """True when no INVITE rings this phone within `seconds`."""
        return await self.calls.none_within(seconds, lambda call: True)

    async def close(self) -> None:
        await self.endpoint.close()

    # --- what the phone does itself ----------------------------------------------------------

    def _aor(self) -> NameAddr:
        return NameAddr(Uri("sip", self.user, None, self.server.host, None), self.display)

    def _request(self, method: str, uri: Uri, to: NameAddr, body: bytes = b"") -> Request:
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", str(self._aor().with_tag(new_tag())))
        headers.add("To", str(to))
        headers.add("Call-ID", f"{random_hex(8)}@{self.address.host}")
        headers.add("CSeq", f"1 {method}")
        headers.add("Contact", f"<{self.contact}>")
        if body:
            headers.add("Content-Type", "application/sdp")
        return Request(headers, body, method, uri)

    def authorized(self, request: Request, challenge: Response) -> Request:
        """`request` again, with credentials for `challenge` (RFC 3261 §22.2): a new
        transaction, CSeq one higher, same Call-ID and tags (§8.1.3.5)."""
        assert self.password is not None
        asked, answer = (
            ("WWW-Authenticate", "Authorization")
            if challenge.status == 401
            else ("Proxy-Authenticate", "Proxy-Authorization")
        )
        retry = Request(request.headers.copy(), request.body, request.method, request.uri)
        retry.headers.remove("Via")
        retry.headers.set("CSeq", f"{request.cseq.number + 1} {request.method}")
        credentials = authorization(
            challenge.headers.get_all(asked)[0],
            request.method,
            str(request.uri),
            self.user,
            self.password,
        )
        retry.headers.set(answer, credentials)
        return retry

    async def transact(
        self,
        request: Request,
        dest: Address,
        on_arrival: Callable[[Response], None] | None = None,
    ) -> Response:
        """Send `request` in a client transaction; its final response. `on_arrival` sees
        each response as it arrives, before anything else reaches the phone."""
        final: asyncio.Future[Response] = asyncio.get_running_loop().create_future()

        def on_response(response: Response, _tx: ClientTransaction) -> None:
            if on_arrival is not None:
                on_arrival(response)
            if response.status >= 200 and not final.done():
                final.set_result(response)

        self.endpoint.send_request(request, dest, on_response)
        async with asyncio.timeout(WAIT):
            return await final

    def respond(
        self,
        tx: ServerTransaction,
        status: int,
        body: bytes = b"",
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        """`status` to `tx`, with our Contact (a dialog's target) on 1xx and 2xx."""
        response = make_response(tx.request, status, None, tx.to_tag)
        if status < 300:
            response.headers.add("Contact", f"<{self.contact}>")
        for name, value in headers or []:
            response.headers.add(name, value)
        if body:
            response.body = body
            response.headers.add("Content-Type", "application/sdp")
        self.endpoint.respond(tx, response)

    def remember(self, call: Call) -> None:
        assert call.dialog is not None
        self._dialogs[call.dialog.key] = call

    def forget(self, call: Call) -> None:
        if call.dialog is not None:
            self._dialogs.pop(call.dialog.key, None)

    # --- TransactionUser -----------------------------------------------------------------

    def on_request(self, request: Request, source: Address, tx: ServerTransaction | None) -> None:
        call = self._dialogs.get(dialog_key_of(request))
        if tx is None:  # the ACK of a 2xx we sent
            if call is not None:
                call.requests.put(request)
            return
        if request.to.tag is not None:
            if call is None:
                self.endpoint.reply(tx, 481)
            else:
                call.on_request(request, tx)
            return
        if request.method == "INVITE":
            incoming = IncomingCall(self, request, tx)
            self._ringing[id(tx)] = incoming
            self.calls.put(incoming)
            return
        self.endpoint.reply(tx, 200)
        self.requests.put(request)

    def on_cancel(self, tx: ServerTransaction) -> None:
        incoming = self._ringing.pop(id(tx), None)
        self.endpoint.reply(tx, 487)
        if incoming is not None:
            incoming.cancelled.set()

    def on_no_ack(self, tx: ServerTransaction) -> None:
        """A final response of ours was never ACKed: the test will see what is missing."""
