"""The four transaction state machines of RFC 3261 §17, sans-I/O.

`TransactionLayer` owns every transaction. The transport shell feeds it parsed messages
(`receive`) and the clock (`expire`); the transaction user (TU) sends requests and
responses through it. It never touches a socket or the clock: what must go on the wire
is queued and taken with `outgoing()`, and `next_deadline()` says when to call `expire`.

Deviations from RFC 3261 are those of RFC 6026: a 2xx moves an INVITE server transaction
to Accepted (absorbing retransmitted INVITEs for 64*T1) and an INVITE client transaction
to Accepted (passing retransmitted 2xx to the TU for 64*T1) instead of terminating.
"""

from __future__ import annotations

import heapq
import itertools
import os
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from ipbx.sip.counts import MessageCounts
from ipbx.sip.message import Headers, Request, Response
from ipbx.sip.uri import Via, split_quoted

MAGIC_COOKIE = "z9hG4bK"
RELIABLE = frozenset({"TCP", "TLS", "WS", "WSS"})

REASONS = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    200: "OK",
    202: "Accepted",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    413: "Request Entity Too Large",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    420: "Bad Extension",
    423: "Interval Too Brief",
    439: "First Hop Lacks Outbound Support",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    491: "Request Pending",
    500: "Server Internal Error",
    501: "Not Implemented",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    600: "Busy Everywhere",
    603: "Decline",
}


@dataclass(frozen=True, slots=True)
class Address:
    """Where a message came from or goes to. For stream transports (host, port) names the
    connection, since the peer's port is unique per connection."""

    transport: str
    host: str
    port: int

    @property
    def reliable(self) -> bool:
        return self.transport in RELIABLE


@dataclass(frozen=True, slots=True)
class Timers:
    """RFC 3261 §17.1.1.1 / Table 4 values, in seconds."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    # How long an INVITE may stay in Proceeding (ringing) before we CANCEL it. A UAC
    # has no such timer in RFC 3261 (Timer B ends with the first provisional response,
    # §17.1.1.2); a B2BUA leg whose phone never sends a final response would ring
    # forever without one. Proxies have Timer C (§16.6); Kamailio's sample
    # configurations set its tm fr_inv_timer, the same limit, to 120 s.
    c: float = 120.0


class State(Enum):
    TRYING = "trying"
    CALLING = "calling"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


class _RandomHex:
    """Cryptographically random hex strings (RFC 3261 §19.3 asks that of tags and
    branches), read from the OS a block at a time: a getrandom() call per tag was a
    measurable share of the registrar's time."""

    def __init__(self, block: int = 4096) -> None:
        self._block = block
        self._buffer = b""
        self._at = 0

    def __call__(self, nbytes: int) -> str:
        at = self._at
        if at + nbytes > len(self._buffer):
            self._buffer = os.urandom(max(self._block, nbytes))
            at = 0
        self._at = at + nbytes
        return self._buffer[at : at + nbytes].hex()


random_hex = _RandomHex()


def new_branch() -> str:
    return MAGIC_COOKIE + random_hex(8)


def new_tag() -> str:
    return random_hex(6)


def make_response(
    request: Request, status: int, reason: str | None = None, to_tag: str | None = None
) -> Response:
    """A response to `request` per RFC 3261 §8.2.6.2: Via, From, Call-ID and CSeq copied,
    To copied and given a tag unless it has one (or this is a 100)."""
    headers = Headers()
    for name, value in request.headers:
        if name in ("Via", "From", "Call-ID", "CSeq") or (name == "Timestamp" and status == 100):
            headers.add(name, value)
        elif name == "To":
            if to_tag and status != 100 and request.to.tag is None:
                value = f"{value};tag={to_tag}"
            headers.add(name, value)
    return Response(headers, b"", status, reason if reason is not None else REASONS.get(status, ""))


def _transport_error_response(request: Request, status: int) -> Response:
    return make_response(request, status)


@dataclass(eq=False, slots=True, weakref_slot=True)
class Transaction:
    """Once it has its final response, a transaction lingers (up to 64*T1) only to absorb
    retransmissions: it keeps of its `request` the request line and the fields a response
    copies (RFC 3261 §8.2.6.2). The TU's own references to the messages are untouched."""

    request: Request
    peer: Address
    key: tuple[str, ...]
    state: State
    is_invite: bool
    last: bytes = b""
    interval: float = 0.0
    generation: int = 0

    @property
    def branch(self) -> str:
        return self.key[0]


ResponseHandler = Callable[["Response", "ClientTransaction"], None]


@dataclass(eq=False, slots=True)
class ClientTransaction(Transaction):
    on_response: ResponseHandler | None = None


@dataclass(eq=False, slots=True)
class ServerTransaction(Transaction):
    merge_key: tuple[str, str, int, str] | None = None
    # The status of the last response sent (its final one, once `status >= 200`).
    status: int = 0
    _to_tag: str = ""

    @property
    def to_tag(self) -> str:
        """The tag our responses add to To, made when first asked for: a request inside
        a dialog (most of them) already has one and never needs it."""
        if not self._to_tag:
            self._to_tag = new_tag()
        return self._to_tag


# --- events for the TU ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A new request. `transaction` is None for an ACK to a 2xx (it is end-to-end)."""

    request: Request
    source: Address
    transaction: ServerTransaction | None


@dataclass(frozen=True, slots=True)
class ResponseReceived:
    """A response for a client transaction; a time-out or transport failure arrives as a
    synthesized 408 or 503 (RFC 3261 §8.1.3.1)."""

    response: Response
    transaction: ClientTransaction


@dataclass(frozen=True, slots=True)
class CancelReceived:
    """A CANCEL matched this INVITE server transaction; it has been answered 200 already.
    The TU should answer the INVITE 487 if it has not sent a final response."""

    transaction: ServerTransaction


@dataclass(frozen=True, slots=True)
class ServerTransactionFailed:
    """No ACK ever came for a final response to an INVITE (Timer H)."""

    transaction: ServerTransaction


Event = RequestReceived | ResponseReceived | CancelReceived | ServerTransactionFailed


class TransactionLayer:
    def __init__(self, timers: Timers | None = None) -> None:
        self.timers = timers or Timers()
        self._client: dict[tuple[str, ...], ClientTransaction] = {}
        self._server: dict[tuple[str, ...], ServerTransaction] = {}
        # (Call-ID, From tag, CSeq) of requests without To tag, for merged-request
        # detection (RFC 3261 §8.2.2.2).
        self._merge: dict[tuple[str, str, int, str], ServerTransaction] = {}
        self._heap: list[_Timer] = []
        self._heap_after_purge = 0
        self._seq = itertools.count()
        self._out: list[tuple[bytes, Address]] = []
        self._events: list[Event] = []
        self.messages = MessageCounts()

    # --- I/O shell interface -------------------------------------------------------------

    def outgoing(self) -> list[tuple[bytes, Address]]:
        out, self._out = self._out, []
        return out

    def next_deadline(self) -> float | None:
        while self._heap:
            if _armed(self._heap[0]) is not None:
                return self._heap[0][0]
            heapq.heappop(self._heap)
        return None

    def expire(self, now: float) -> list[Event]:
        while self._heap and self._heap[0][0] <= now:
            timer = heapq.heappop(self._heap)
            tx = _armed(timer)
            if tx is not None:
                # The CANCEL that Timer C sends is dated from when C was due, so that its
                # timers and the INVITE's last 64*T1 run out on schedule however late
                # this call comes.
                due, name = timer[0], timer[4]
                self._fire(tx, name, due if name == "C" else now)
        return self._take_events()

    def receive(self, msg: Request | Response, source: Address, now: float) -> list[Event]:
        if isinstance(msg, Request):
            self.messages.request_received(msg.method)
            self._receive_request(msg, source, now)
        else:
            self.messages.response_received(msg.status)
            self._receive_response(msg, now)
        return self._take_events()

    def transport_failed(self, tx: ClientTransaction, now: float) -> list[Event]:
        """The transport could not send the request (RFC 3261 §8.1.3.1): report 503."""
        if tx.state is not State.TERMINATED:
            self._terminate(tx)
            self._events.append(ResponseReceived(_transport_error_response(tx.request, 503), tx))
        return self._take_events()

    @property
    def counts(self) -> tuple[int, int]:
        return len(self._client), len(self._server)

    # --- TU interface ----------------------------------------------------------------------

    def send_request(
        self,
        request: Request,
        dest: Address,
        now: float,
        on_response: ResponseHandler | None = None,
    ) -> ClientTransaction:
        """Start a client transaction. The request's top Via must carry a fresh branch.
        `on_response` is kept on the transaction for the TU's dispatch of its responses."""
        branch = request.via.branch or ""
        is_invite = request.method == "INVITE"
        tx = ClientTransaction(
            request,
            dest,
            (branch, request.method),
            State.CALLING if is_invite else State.TRYING,
            is_invite,
            on_response=on_response,
        )
        self._client[tx.key] = tx
        tx.last = request.serialize()
        self._out.append((tx.last, dest))
        self.messages.request_sent(request.method)
        t1 = self.timers.t1
        if not dest.reliable:
            tx.interval = t1
            self._arm(tx, now + t1, "A" if is_invite else "E")
        self._arm(tx, now + 64 * t1, "B" if is_invite else "F")
        if request.method == "CANCEL":
            invite = self._client.get((branch, "INVITE"))
            if invite is not None and invite.state is State.PROCEEDING:
                # RFC 3261 §9.1: without a final response to the INVITE within 64*T1 of
                # the CANCEL, the INVITE counts as cancelled and its transaction goes.
                self._arm(invite, now + 64 * t1, "B")
        return tx

    def send_ack(self, ack: Request, dest: Address) -> None:
        """An ACK for a 2xx is sent by the TU outside any transaction (RFC 3261 §13.2.2.4)."""
        self._out.append((ack.serialize(), dest))
        self.messages.request_sent("ACK")

    def respond(self, tx: ServerTransaction, response: Response, now: float) -> None:
        if tx.state in (State.COMPLETED, State.CONFIRMED, State.TERMINATED):
            return
        if tx.state is State.ACCEPTED and response.status < 300:
            # 2xx retransmissions are the UAS core's job and bypass the state machine.
            self._out.append((response.serialize(), tx.peer))
            self.messages.response_sent(response.status)
            self.messages.retransmissions += 1
            return
        if tx.state is State.ACCEPTED:
            return
        tx.last = response.serialize()
        self._out.append((tx.last, tx.peer))
        status = tx.status = response.status
        self.messages.response_sent(status)
        if status < 200:
            tx.state = State.PROCEEDING
            return
        self._unmerge(tx)
        _linger(tx)
        tx.generation += 1
        t1 = self.timers.t1
        if tx.is_invite and status < 300:
            # Accepted, retransmitted INVITEs are absorbed and the 2xx is the TU's to
            # repeat (RFC 6026 §7.1): no copy of it is kept here for 64*T1.
            tx.state = State.ACCEPTED
            tx.last = b""
            self._arm(tx, now + 64 * t1, "L")
        elif tx.is_invite:
            tx.state = State.COMPLETED
            if not tx.peer.reliable:
                tx.interval = t1
                self._arm(tx, now + t1, "G")
            self._arm(tx, now + 64 * t1, "H")
        else:
            tx.state = State.COMPLETED
            self._arm(tx, now + (0 if tx.peer.reliable else 64 * t1), "J")

    def reply(
        self, tx: ServerTransaction, status: int, now: float, reason: str | None = None
    ) -> None:
        self.respond(tx, make_response(tx.request, status, reason, tx.to_tag), now)

    def reply_stateless(self, request: Request, source: Address, status: int, reason: str) -> None:
        """Answer without a transaction (for requests too broken to match one)."""
        if request.method != "ACK":
            self._out.append(
                (make_response(request, status, reason, new_tag()).serialize(), source)
            )
            self.messages.response_sent(status)

    # --- internals ---------------------------------------------------------------------------

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _arm(self, tx: Transaction, when: float, name: str) -> None:
        heap = self._heap
        heapq.heappush(heap, (when, next(self._seq), weakref.ref(tx), tx.generation, name))
        # A timer its transaction no longer runs stays queued until due: Timer B once a
        # 1xx came, Timer C (120 s) once the INVITE was answered, H once the ACK came.
        # Under load they outnumbered the live ones several times over, so when the
        # queue has doubled since the last purge it is rebuilt without them, as
        # asyncio's event loop does with its cancelled timer handles: each purge costs
        # at most as many steps as timers were armed since the one before.
        if len(heap) > max(_PURGE_FROM, 2 * self._heap_after_purge):
            self._heap = [timer for timer in heap if _armed(timer) is not None]
            heapq.heapify(self._heap)
            self._heap_after_purge = len(self._heap)

    def _terminate(self, tx: Transaction) -> None:
        tx.state = State.TERMINATED
        tx.generation += 1
        if isinstance(tx, ClientTransaction):
            self._client.pop(tx.key, None)
        else:
            self._server.pop(tx.key, None)
            self._unmerge(tx)  # type: ignore[arg-type]

    def _unmerge(self, tx: ServerTransaction) -> None:
        if tx.merge_key is not None and self._merge.get(tx.merge_key) is tx:
            del self._merge[tx.merge_key]
        tx.merge_key = None

    @staticmethod
    def _server_key(request: Request, method: str) -> tuple[str, ...]:
        via = request.via
        branch = via.branch or ""
        sent_by = f"{via.host}:{via.port or ''}"
        if branch.startswith(MAGIC_COOKIE):
            return (branch, sent_by, method)
        # RFC 2543 peers: match on the identifying headers (RFC 3261 §17.2.3).
        to_tag = request.to.tag or ""
        return (
            f"{request.call_id}|{request.from_.tag}|{to_tag}|{request.cseq.number}|{via}",
            sent_by,
            method,
        )

    def _receive_request(self, request: Request, source: Address, now: float) -> None:
        _stamp_via(request, source)
        method = request.method
        key = self._server_key(request, "INVITE" if method == "ACK" else method)
        tx = self._server.get(key)
        if tx is not None:
            if method == "ACK":
                if tx.state is State.COMPLETED:
                    tx.state = State.CONFIRMED
                    tx.last = b""  # confirmed: the final response is not sent again
                    tx.generation += 1
                    self._arm(tx, now + (0 if source.reliable else self.timers.t4), "I")
                elif tx.state is State.ACCEPTED:
                    # An ACK to a 2xx that reused the INVITE branch (RFC 2543 style).
                    self._events.append(RequestReceived(request, source, None))
                return
            if tx.last and tx.state in (State.PROCEEDING, State.COMPLETED, State.TRYING):
                self._out.append((tx.last, tx.peer))
                self.messages.response_sent(tx.status)
                self.messages.retransmissions += 1
            return
        if method == "ACK":
            self._events.append(RequestReceived(request, source, None))
            return
        if method == "CANCEL":
            self._receive_cancel(request, source, key, now)
            return
        tx = ServerTransaction(
            request, source, key, State.PROCEEDING if method == "INVITE" else State.TRYING,
            method == "INVITE",
        )  # fmt: skip
        self._server[key] = tx
        if request.to.tag is None:
            merge_key = (request.call_id, request.from_.tag or "", request.cseq.number, method)
            if merge_key in self._merge:
                self.reply(tx, 482, now)
                return
            self._merge[merge_key] = tx
            tx.merge_key = merge_key
        if tx.is_invite:
            # RFC 3261 §17.2.1: a 100 at once spares the client its retransmissions.
            self.reply(tx, 100, now)
        self._events.append(RequestReceived(request, source, tx))

    def _receive_cancel(
        self, request: Request, source: Address, key: tuple[str, ...], now: float
    ) -> None:
        cancel_tx = ServerTransaction(request, source, key, State.TRYING, False)
        self._server[key] = cancel_tx
        invite = self._server.get((*key[:2], "INVITE"))
        if invite is None:
            self.reply(cancel_tx, 481, now)
            return
        self.respond(cancel_tx, make_response(request, 200, None, invite.to_tag), now)
        if invite.state is State.PROCEEDING:
            self._events.append(CancelReceived(invite))

    def _receive_response(self, response: Response, now: float) -> None:
        branch = response.via.branch or ""
        tx = self._client.get((branch, response.cseq.method))
        if tx is None:
            return  # stray response: a UA core discards it (RFC 3261 §17.1.3, §18.1.2)
        status = response.status
        if status < 200:
            if tx.state in (State.CALLING, State.TRYING, State.PROCEEDING):
                if tx.state is State.TRYING and not tx.peer.reliable:
                    tx.interval = self.timers.t2 / 2  # next E fires at T2 (§17.1.2.2)
                if tx.state is State.CALLING:
                    tx.generation += 1  # no more A and B in Proceeding
                    self._arm(tx, now + self.timers.c, "C")
                tx.state = State.PROCEEDING
                self._events.append(ResponseReceived(response, tx))
            return
        if tx.is_invite:
            self._invite_final(tx, response, now)
            return
        if tx.state in (State.TRYING, State.PROCEEDING):
            tx.state = State.COMPLETED
            tx.generation += 1
            _linger(tx)
            self._arm(tx, now + (0 if tx.peer.reliable else self.timers.t4), "K")
            self._events.append(ResponseReceived(response, tx))

    def _invite_final(self, tx: ClientTransaction, response: Response, now: float) -> None:
        if response.status < 300:
            if tx.state in (State.CALLING, State.PROCEEDING):
                tx.state = State.ACCEPTED
                tx.last = b""  # the INVITE is not retransmitted after a 2xx
                _linger(tx)
                tx.generation += 1
                self._arm(tx, now + 64 * self.timers.t1, "M")
            if tx.state is State.ACCEPTED:
                self._events.append(ResponseReceived(response, tx))
            return
        if tx.state in (State.CALLING, State.PROCEEDING):
            tx.state = State.COMPLETED
            tx.generation += 1
            tx.last = make_ack(tx.request, response).serialize()
            _linger(tx)
            self._out.append((tx.last, tx.peer))
            self.messages.request_sent("ACK")
            self._arm(tx, now + (0 if tx.peer.reliable else 32.0), "D")
            self._events.append(ResponseReceived(response, tx))
        elif tx.state is State.COMPLETED:
            self._out.append((tx.last, tx.peer))
            self.messages.request_sent("ACK")
            self.messages.retransmissions += 1

    def _fire(self, tx: Transaction, name: str, now: float) -> None:
        if name in ("A", "E", "G"):
            if name == "A" and tx.state is not State.CALLING:
                return
            if name == "E" and tx.state not in (State.TRYING, State.PROCEEDING):
                return
            if name == "G" and tx.state is not State.COMPLETED:
                return
            self._out.append((tx.last, tx.peer))
            if isinstance(tx, ServerTransaction):
                self.messages.response_sent(tx.status)  # G: the final response again
            else:
                self.messages.request_sent(tx.request.method)
            self.messages.retransmissions += 1
            cap = self.timers.t2 if name in ("E", "G") else float("inf")
            if name == "E" and tx.state is State.PROCEEDING:
                tx.interval = self.timers.t2
            else:
                tx.interval = min(tx.interval * 2, cap)
            self._arm(tx, now + tx.interval, name)
        elif name == "C":
            assert isinstance(tx, ClientTransaction)
            self.send_request(make_cancel(tx.request), tx.peer, now)
        elif name in ("B", "F"):
            self._terminate(tx)
            assert isinstance(tx, ClientTransaction)
            self._events.append(ResponseReceived(_transport_error_response(tx.request, 408), tx))
        elif name == "H":
            self._terminate(tx)
            assert isinstance(tx, ServerTransaction)
            self._events.append(ServerTransactionFailed(tx))
        else:  # D, I, J, K, L, M: the transaction's lingering time is over
            self._terminate(tx)
            _forget(tx)


# Timers as (when, sequence, transaction, generation, timer name). An entry does not keep
# its transaction alive: a terminated one is freed at once, not when the last timer it
# had armed comes due.
_Timer = tuple[float, int, "weakref.ref[Transaction]", int, str]
# Below this many queued timers, stale ones are left to run out.
_PURGE_FROM = 1024


def _armed(timer: _Timer) -> Transaction | None:
    """The transaction of a queued timer, if the timer still counts: the transaction
    lives, is not over, and has not moved on since the timer was armed."""
    tx = timer[2]()
    if tx is None or tx.generation != timer[3] or tx.state is State.TERMINATED:
        return None
    return tx


# What a transaction reads of its request once it has its final response: the fields
# a response copies (RFC 3261 §8.2.6.2).
_LINGERING_FIELDS = frozenset({"Via", "From", "To", "Call-ID", "CSeq", "Timestamp"})


def _linger(tx: Transaction) -> None:
    """Keep of the request only what a lingering transaction reads (see Transaction):
    tens of thousands linger under load, and parsed headers, bodies and routes of
    messages nobody reads again were most of the server's memory."""
    request = tx.request
    headers = Headers([item for item in request.headers if item[0] in _LINGERING_FIELDS])
    tx.request = Request(headers, b"", request.method, request.uri)


def _forget(tx: Transaction) -> None:
    """Drop what a transaction that has run its course still holds: its last message and
    (a client's) response handler, with whatever the handler refers to (a call, its legs
    and media), for as long as the TU keeps the transaction object."""
    tx.last = b""
    if isinstance(tx, ClientTransaction):
        tx.on_response = None


def _stamp_via(request: Request, source: Address) -> None:
    """RFC 3261 §18.2.1 `received` and RFC 3581 `rport` on the top Via, so that responses
    routed on that Via reach a client behind NAT."""
    top = request.via
    params = dict(top.params)
    changed = False
    if top.host.strip("[]") != source.host:
        params["received"] = source.host
        changed = True
    if "rport" in params and params["rport"] is None:
        params["rport"] = str(source.port)
        changed = True
    if not changed:
        return
    parts = split_quoted(request.headers.get_all("Via")[0], ",")
    parts[0] = str(Via(top.transport, top.host, top.port, params))
    request.headers.replace_first("Via", ",".join(parts))


def _top_via(request: Request) -> str:
    return split_quoted(request.headers.get_all("Via")[0], ",")[0].strip()


def make_ack(invite: Request, response: Response) -> Request:
    """The ACK for a non-2xx final response (RFC 3261 §17.1.1.3)."""
    headers = Headers()
    headers.add("Via", _top_via(invite))
    for name in ("Max-Forwards", "From"):
        value = invite.headers.get(name)
        if value is not None:
            headers.add(name, value)
    headers.add("To", response.headers.get("To") or "")
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} ACK")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    return Request(headers, b"", "ACK", invite.uri)


def make_cancel(invite: Request) -> Request:
    """CANCEL for a pending INVITE (RFC 3261 §9.1): same branch, so it matches."""
    headers = Headers()
    headers.add("Via", _top_via(invite))
    for name in ("Max-Forwards", "From", "To"):
        value = invite.headers.get(name)
        if value is not None:
            headers.add(name, value)
    headers.add("Call-ID", invite.call_id)
    headers.add("CSeq", f"{invite.cseq.number} CANCEL")
    for route in invite.headers.get_all("Route"):
        headers.add("Route", route)
    return Request(headers, b"", "CANCEL", invite.uri)
