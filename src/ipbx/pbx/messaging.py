"""Text messages: SIP MESSAGE (RFC 3428) between extensions, to outside numbers through
trunks that take them (`trunks[].messaging: true`) and from a trunk to a number's
extension (docs/features.md, "Messaging").

ipbx relays a MESSAGE as a proxy would, to every reachable contact of the extension;
the first 2xx delivers it and the sender gets 200. An extension with no phone reachable
has it stored: the sender gets 202 Accepted and the message goes out when a phone of
the extension registers. Every `text/plain` message is stored once (its Call-ID, CSeq
and From tag are unique) with its delivery status: pending, delivered or failed.
Is-composing indications (RFC 3994) are relayed to the phones reachable now and never
stored: they mean nothing later.

Refused before anything else, in RFC 3261 §8.2's order: a source sending more than
`FLOOD_MESSAGES` in `FLOOD_WINDOW` seconds (503 with Retry-After), a body over 64 KiB
(413, RFC 3428 §7), a content type other than those two or a charset other than UTF-8
(415 with Accept); then digest authentication as for INVITE (407), except from a
trunk's peer, which is trusted by its address.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import secrets
import time
from collections import deque
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any, Protocol

from ipbx.pbx.blacklist import BlacklistEntry
from ipbx.pbx.destination import Kind
from ipbx.pbx.dialplan import Numbers, OutboundCall
from ipbx.pbx.directory import Directory
from ipbx.pbx.events import MESSAGE_RECEIVED, MESSAGE_STATUS, EventBus
from ipbx.pbx.location import Location
from ipbx.pbx.registrar import Authenticator
from ipbx.pbx.trunks import Trunk, Trunks
from ipbx.sip.errors import SipError
from ipbx.sip.message import Headers, Request, Response
from ipbx.sip.transaction import Address, ServerTransaction
from ipbx.sip.transport.endpoint import SipEndpoint
from ipbx.sip.uri import Uri, parse_uri, unescape
from ipbx.store import MessageRecord
from ipbx.store.async_store import AsyncStore

log = logging.getLogger("ipbx.messaging")

TEXT = "text/plain"
IS_COMPOSING = "application/im-iscomposing+xml"
ACCEPT = f"{TEXT}, {IS_COMPOSING}"
# RFC 3428 §7 keeps MESSAGE bodies small on UDP and leaves larger ones to sessions
# (MSRP); 64 KiB is the largest a stream transport carries here.
MAX_BODY = 64 * 1024
# More than this many MESSAGEs from one address within the window: 503, Retry-After.
FLOOD_MESSAGES = 50
FLOOD_WINDOW = 10.0
# How long the sender waits for a phone's (or provider's) answer before it is told 202
# Accepted: well inside its own transaction time-out (Timer F, 32 s).
DELIVERY_WAIT = 8.0
# Answers that mean "not now" rather than "never": the message stays pending.
_NOT_NOW = frozenset({408, 480, 503})


class Routing(Protocol):
    """What the router answers about numbers (pbx/router.py)."""

    numbers: Numbers

    def outside(self, number: str, by: str | None, caller: str) -> tuple[OutboundCall, str]: ...

    def screen(self, caller: str, called: str) -> BlacklistEntry | None: ...


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a delivery attempt ended: `status` 200 delivered, 202 pending, else failed
    with the best failure answer."""

    status: int
    trunk: str | None = None


class Messaging:
    def __init__(
        self,
        endpoint: SipEndpoint,
        location: Location,
        auth: Authenticator,
        directory: Directory,
        trunks: Trunks,
        store: AsyncStore,
        events: EventBus,
        domain: str | None,
    ) -> None:
        self.endpoint = endpoint
        self.location = location
        self.auth = auth
        self.directory = directory
        self.trunks = trunks
        self.store = store
        self.events = events
        self.domain = domain
        self.routing: Routing | None = None  # the router of the configuration in use
        self._recent: dict[str, deque[float]] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    # --- a MESSAGE arrives -----------------------------------------------------------------

    def on_message(self, request: Request, source: Address, tx: ServerTransaction) -> None:
        if self._flooding(source.host, self.endpoint.loop.time()):
            self.endpoint.reply(tx, 503, headers=[("Retry-After", str(int(FLOOD_WINDOW)))])
            return
        if len(request.body) > MAX_BODY:
            raise SipError(413, f"a message body is at most {MAX_BODY} bytes")
        content_type = request.content_type
        charset = _charset(request.headers.get("Content-Type") or "")
        if content_type not in (TEXT, IS_COMPOSING) or charset not in ("utf-8", "us-ascii"):
            self.endpoint.reply(tx, 415, headers=[("Accept", ACCEPT)])
            return
        try:
            text = request.body.decode()
        except UnicodeDecodeError:
            raise SipError(400, "the body is not UTF-8") from None
        trunk = self.trunks.trunk_for_source(source)
        if trunk is not None:
            sender = request.from_.uri.user or "anonymous"
            recipient = self._number_extension(request)
            direction = "inbound"
        else:
            authenticated = self.auth.check(request, tx, time.time())
            if authenticated is None:
                return
            sender, recipient = authenticated, unescape(request.uri.user or "")
            direction = "internal" if self.directory.get(recipient) else "outbound"
        now = time.time()
        record = MessageRecord(
            now, direction, sender, recipient, content_type, text, "pending", now,
            request.call_id, request.cseq.number, request.from_.tag or "",
            trunk.name if trunk is not None else None,
        )  # fmt: skip
        route = None
        if direction == "outbound":
            route = self._route(recipient, sender)
            record = replace(record, recipient=route[0].number)
        if content_type == IS_COMPOSING:
            if route is not None:
                raise SipError(488, "is-composing goes to extensions only")
            self._spawn(self._indicate(record, tx))
            return
        self._spawn(self._take(record, route, tx))

    def _number_extension(self, request: Request) -> str:
        """The extension of the number (DID) a trunk's MESSAGE is addressed to."""
        assert self.routing is not None
        number = self.routing.numbers.lookup(request.uri.user, request.to.uri.user)
        if number is None or number.destination.kind is not Kind.EXTENSION:
            raise SipError(404, "not one of our numbers, or not an extension's")
        sender = request.from_.uri.user or "anonymous"
        if self.routing.screen(sender, number.destination.target) is not None:
            log.info("message from %s to %s refused: blacklisted", sender, number.number)
            raise SipError(403, "blacklisted")
        return number.destination.target

    def _route(self, number: str, sender: str) -> tuple[OutboundCall, str]:
        """The outbound route to `number` and the caller ID `sender` shows there; 404
        when none of the route's trunks takes messages."""
        assert self.routing is not None
        route, caller_id = self.routing.outside(number, sender, sender)
        named = (self.trunks.get(name) for name in route.trunks)
        if not any(trunk is not None and trunk.config.messaging for trunk in named):
            raise SipError(404, f"no trunk of route {route.route} takes messages")
        return route, caller_id

    def _messaging_trunks(self, route: OutboundCall) -> list[Trunk]:
        """The route's trunks that take messages and are up, in failover order."""
        return [t for t in self.trunks.candidates(route.trunks) if t.config.messaging]

    def _flooding(self, host: str, now: float) -> bool:
        recent = self._recent.setdefault(host, deque())
        while recent and recent[0] <= now - FLOOD_WINDOW:
            recent.popleft()
        if len(recent) >= FLOOD_MESSAGES:
            log.debug("MESSAGE flood from %s: refused with 503", host)
            return True
        recent.append(now)
        if len(self._recent) > 10_000:  # bounded: forget the sources gone quiet
            since = now - FLOOD_WINDOW
            self._recent = {h: r for h, r in self._recent.items() if r and r[-1] > since}
        return False

    async def _take(
        self,
        record: MessageRecord,
        route: tuple[OutboundCall, str] | None,
        tx: ServerTransaction | None,
    ) -> None:
        """Store `record` (once), deliver it, answer the sender when the delivery ends
        or after DELIVERY_WAIT with 202."""
        try:
            stored, created = await self.store.run(lambda store: store.save_message(record))
        except Exception:
            # The database is locked or gone: the sender may try again (RFC 3261 §21.5.1).
            log.warning("message %s from %s could not be stored: answered 500", record.call_id,
                        record.sender, exc_info=True)  # fmt: skip
            if tx is not None:
                self.endpoint.reply(tx, 500, headers=[("Retry-After", "5")])
            return
        if not created:
            log.info("MESSAGE %s/%d sent again: not stored twice", record.call_id, record.cseq)
            if tx is not None:
                self.endpoint.reply(tx, _answer(stored.status))
            return
        await self._relay(stored, route, tx)

    async def _relay(
        self,
        record: MessageRecord,
        route: tuple[OutboundCall, str] | None,
        tx: ServerTransaction | None,
    ) -> None:
        if route is None:
            self._publish(MESSAGE_RECEIVED, record)
        attempt = asyncio.ensure_future(self._deliver(record, route))
        done, _ = await asyncio.wait({attempt}, timeout=DELIVERY_WAIT)
        if tx is not None:
            self.endpoint.reply(tx, attempt.result().status if done else 202)
        await attempt

    async def _deliver(
        self, record: MessageRecord, route: tuple[OutboundCall, str] | None
    ) -> Outcome:
        if route is None:
            outcome = await self._to_phones(record)
        else:
            outcome = await self._to_trunks(record, *route)
        if outcome.status != 202:
            status = "delivered" if outcome.status < 300 else "failed"
            await self._set_status(replace(record, trunk=outcome.trunk or record.trunk), status)
        return outcome

    async def _set_status(self, record: MessageRecord, status: str) -> None:
        now = time.time()
        await self.store.run(
            lambda store: store.set_message_status(record.id, status, now, record.trunk)
        )
        self._publish(MESSAGE_STATUS, replace(record, status=status, status_time=now))

    def _publish(self, type: str, record: MessageRecord) -> None:
        extension = record.sender if record.direction == "outbound" else record.recipient
        self.events.publish(
            type,
            {
                "message_id": record.id,
                "caller": record.sender,
                "callee": record.recipient,
                "extension": extension,
                "direction": record.direction,
                "status": record.status,
                "content_type": record.content_type,
                "body": record.body,
            },
        )

    async def _indicate(self, record: MessageRecord, tx: ServerTransaction) -> None:
        outcome = await self._to_phones(record)
        self.endpoint.reply(tx, 480 if outcome.status == 202 else outcome.status)

    # --- to an extension's phones --------------------------------------------------------

    async def _to_phones(self, record: MessageRecord) -> Outcome:
        """To every reachable contact of the recipient at once, as a forking proxy
        does (RFC 3261 §16.7): the first 2xx delivers it."""
        bindings = self.location.reachable(record.recipient, time.time())
        if not bindings:
            return Outcome(202)
        answers: asyncio.Queue[int] = asyncio.Queue()
        for binding in bindings:
            dest = binding.destination(self.endpoint.connected)
            request = self._request(record, binding.uri, dest)
            self.endpoint.send_request(request, dest, _final_to(answers))
        statuses = []
        for _ in bindings:
            status = await answers.get()
            if 200 <= status < 300:
                return Outcome(200)
            statuses.append(status)
        if all(status in _NOT_NOW for status in statuses):
            return Outcome(202)
        return Outcome(min(s for s in statuses if s not in _NOT_NOW))

    def _request(self, record: MessageRecord, uri: Uri, dest: Address) -> Request:
        domain = self.domain or self.endpoint.local_address(dest).host
        headers = Headers()
        headers.add("Max-Forwards", "70")
        headers.add("From", f"<sip:{record.sender}@{domain}>;tag={secrets.token_hex(6)}")
        headers.add("To", f"<sip:{record.recipient}@{domain}>")
        headers.add("Call-ID", f"msg-{secrets.token_hex(10)}")
        headers.add("CSeq", "1 MESSAGE")
        # RFC 3428 §10: when the message was sent (it may reach the phone much later).
        headers.add("Date", email.utils.formatdate(record.time, usegmt=True))
        headers.add("Content-Type", _content_type(record.content_type))
        return Request(headers, record.body.encode(), "MESSAGE", uri)

    def registered(self, extension: str) -> None:
        """A phone of `extension` registered, or answers again after it did not: the
        messages waiting for it go out."""
        self._spawn(self._deliver_pending(extension))

    async def _deliver_pending(self, extension: str) -> None:
        waiting = await self.store.run(lambda store: store.pending_messages(extension))
        for record in waiting:
            if (await self._deliver(record, None)).status == 202:
                return  # the phone went away again; the rest wait for the next time

    # --- to an outside number ------------------------------------------------------------

    async def _to_trunks(
        self, record: MessageRecord, route: OutboundCall, caller_id: str
    ) -> Outcome:
        """Through the route's trunks that take messages, in failover order; a
        provider's 401/407 is answered with the trunk's credentials as for INVITE."""
        best = 503
        for trunk in self._messaging_trunks(route):
            targets = await trunk.targets()
            if not targets:
                continue
            request = self._trunk_request(record, trunk, route.number, caller_id)
            response = await trunk.transact(request, targets[0])
            if response.status in (401, 407):
                answer = trunk.answer_challenge(response, "MESSAGE", str(request.uri))
                if answer is not None:
                    request = _again(request, answer)
                    response = await trunk.transact(request, targets[0])
            if response.status < 300:
                return Outcome(200, trunk.name)
            log.info("trunk %s refused a message to %s: %d", trunk.name, route.number,
                     response.status)  # fmt: skip
            best = min(best, response.status) if response.status not in _NOT_NOW else best
        return Outcome(best)

    def _trunk_request(
        self, record: MessageRecord, trunk: Trunk, number: str, caller_id: str
    ) -> Request:
        uri = trunk.request_uri(number)
        headers = Headers()
        headers.add("Max-Forwards", "70")
        for name, value in trunk.caller_headers(caller_id):
            headers.add(name, f"{value};tag={secrets.token_hex(6)}" if name == "From" else value)
        headers.add("To", f"<{parse_uri(f'sip:{number}@{trunk.domain}')}>")
        headers.add("Call-ID", f"msg-{secrets.token_hex(10)}")
        headers.add("CSeq", "1 MESSAGE")
        headers.add("Content-Type", _content_type(record.content_type))
        return Request(headers, record.body.encode(), "MESSAGE", uri)

    # --- the API's -----------------------------------------------------------------------

    async def send(self, sender: str, to: str, text: str) -> MessageRecord:
        """A message from extension `sender` to `to` (an extension or an outside
        number), as POST /messages sends it; ValueError names what is wrong."""
        if self.directory.get(sender) is None:
            raise ValueError(f"from: no extension {sender}")
        if len(text.encode()) > MAX_BODY:
            raise ValueError(f"text: at most {MAX_BODY} bytes")
        route = None
        recipient = to
        if self.directory.get(to) is None:
            try:
                route = self._route(to, sender)
            except SipError as exc:
                raise ValueError(f"to: {exc.reason}") from None
            recipient = route[0].number
        now = time.time()
        record = MessageRecord(
            now, "internal" if route is None else "outbound", sender, recipient, TEXT, text,
            "pending", now, f"api-{secrets.token_hex(12)}", 0, "",
        )  # fmt: skip
        stored, _ = await self.store.run(lambda store: store.save_message(record))
        self._spawn(self._relay(stored, route, None))
        return stored

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("message delivery failed", exc_info=task.exception())

    def close(self) -> None:
        for task in self._tasks:
            task.cancel()


def _charset(content_type: str) -> str:
    """The charset parameter, lower case; UTF-8 when absent (RFC 3428 §9 allows no
    other default for text/plain here)."""
    for param in content_type.split(";")[1:]:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset":
            return value.strip().strip('"').lower()
    return "utf-8"


def _content_type(content_type: str) -> str:
    return f"{content_type};charset=utf-8" if content_type == TEXT else content_type


def _answer(status: str) -> int:
    return {"delivered": 200, "pending": 202}.get(status, 480)


def _final_to(answers: asyncio.Queue[int]) -> Callable[[Response, object], None]:
    """A response handler that puts each final status into `answers`."""

    def answered(response: Response, _tx: object) -> None:
        if response.status >= 200:
            answers.put_nowait(response.status)

    return answered


def _again(request: Request, answer: tuple[str, str]) -> Request:
    """`request` with credentials (RFC 3261 §22.2): CSeq one higher, same Call-ID."""
    retry = Request(request.headers.copy(), request.body, request.method, request.uri)
    retry.headers.remove("Via")
    retry.headers.set("CSeq", f"{request.cseq.number + 1} {request.method}")
    retry.headers.set(*answer)
    return retry
