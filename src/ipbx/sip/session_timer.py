"""Session timers (RFC 4028), sans-I/O: how long a dialog's session lasts unless it is
refreshed, who refreshes it, and when to refresh or give up.

A session whose BYE was lost (a phone that lost power, a NAT that forgot the mapping)
would otherwise stay up for ever. Each dialog negotiates its own interval: a B2BUA leg
is one dialog, so each leg of a call has its own `SessionTimer`.

- Negotiation is a pure function of the messages: `answer_request` for the side that
  answers an INVITE or UPDATE (the UAS of that transaction, §9), `read_answer` for the
  side that sent it (§7.2); `request_fields` are what a request that wants a timer
  carries (§7.1), `check_interval` the 422 for an interval below our minimum (§9).
  "uac" and "uas" in `refresher` name the roles in the transaction that negotiated,
  never in the dialog's first INVITE (§7.4).
- `SessionTimer` then keeps time: refreshed at `now`, it wants a refresh sent at half
  the interval when the refresher is us (§10), and gives up on a session not refreshed
  by the interval less the smaller of 32 s and a third of it, when the BYE is due
  (§10). `next_deadline()` and `expire(now)` return what is due, in the manner of
  sip/invite.py; nothing here reads the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

from ipbx.sip.errors import SipError
from ipbx.sip.message import Request, Response
from ipbx.sip.uri import split_quoted

TIMER = "timer"
# RFC 4028 §4: Min-SE is never below 90 s; 1800 s is the interval §4 recommends.
MIN_SE = 90
DEFAULT_INTERVAL = 1800


class IntervalTooSmall(SipError):
    """422 Session Interval Too Small (RFC 4028 §6): the answer must carry Min-SE."""

    def __init__(self, min_se: int) -> None:
        super().__init__(422, f"Session-Expires below {min_se} s")
        self.min_se = min_se


@dataclass(frozen=True, slots=True)
class SessionExpires:
    interval: int
    refresher: str | None = None  # "uac", "uas", or left to the other side

    def __str__(self) -> str:
        if self.refresher is None:
            return str(self.interval)
        return f"{self.interval};refresher={self.refresher}"


def option_tags(msg: Request | Response, name: str) -> set[str]:
    """The option tags of a Supported, Require or Unsupported header, lowercased."""
    return {
        tag.strip().lower()
        for value in msg.headers.get_all(name)
        for tag in split_quoted(value, ",")
        if tag.strip()
    }


def _delta(text: str, name: str) -> int:
    text = text.strip(" \t")
    if not text.isdigit() or len(text) > 10:
        raise SipError(400, f"bad {name} {text!r}")
    return int(text)


def session_expires(msg: Request | Response) -> SessionExpires | None:
    """The Session-Expires of a message (§4), None without one."""
    value = msg.headers.get("Session-Expires")
    if value is None:
        return None
    delta, *params = value.split(";")
    refresher = None
    for param in params:
        key, _, found = param.partition("=")
        if key.strip().lower() == "refresher":
            refresher = found.strip().lower()
            if refresher not in ("uac", "uas"):
                raise SipError(400, f"bad refresher {found.strip()!r}")
    interval = _delta(delta, "Session-Expires")
    if interval < 1:
        raise SipError(400, "Session-Expires of 0")
    return SessionExpires(interval, refresher)


def min_se(msg: Request | Response, floor: int = MIN_SE) -> int:
    """The Min-SE of a message (§5), never below `floor`: the 90 s an absent one means,
    or a smaller minimum of our own (tests)."""
    value = msg.headers.get("Min-SE")
    if value is None:
        return floor
    return max(floor, _delta(value.split(";")[0], "Min-SE"))


def check_interval(request: Request, minimum: int) -> None:
    """Raise 422 for an INVITE or UPDATE asking for an interval below `minimum` (§9)."""
    asked = session_expires(request)
    if asked is not None and asked.interval < minimum:
        raise IntervalTooSmall(min_se(request, minimum))


def request_fields(
    interval: int, minimum: int, refresher: str | None = None
) -> list[tuple[str, str]]:
    """What a request that wants a session timer carries (§7.1, §7.4), besides `timer`
    in its Supported field."""
    expires = SessionExpires(interval, refresher)
    return [("Session-Expires", str(expires)), ("Min-SE", str(minimum))]


def retry_with_interval(request: Request, response: Response) -> Request | None:
    """`request` again after its 422 (§7.1): Session-Expires and Min-SE raised to the
    Min-SE the 422 asks for. A new transaction, like a retry with credentials: no Via,
    the next CSeq, the same Call-ID and tags. None when the 422 asks for nothing more."""
    asked = session_expires(request)
    if response.status != 422 or asked is None or "Min-SE" not in response.headers:
        return None
    wanted = min_se(response, 1)
    if wanted <= asked.interval:
        return None
    retry = Request(request.headers.copy(), request.body, request.method, request.uri)
    retry.headers.remove("Via")
    retry.headers.set("CSeq", f"{request.cseq.number + 1} {request.method}")
    retry.headers.set("Session-Expires", str(SessionExpires(wanted, asked.refresher)))
    retry.headers.set("Min-SE", str(wanted))
    return retry


@dataclass(frozen=True, slots=True)
class Negotiated:
    """A session timer both sides agreed on: its interval, and whether we refresh."""

    interval: int
    we_refresh: bool


def answer_request(
    request: Request, minimum: int, interval: int = DEFAULT_INTERVAL
) -> tuple[Negotiated, list[tuple[str, str]]]:
    """As the UAS of an INVITE or UPDATE we accept (after `check_interval`): the timer and
    the fields of our 2xx (§9). The interval asked for is kept; without one, we ask for
    `interval` (never below the request's Min-SE). The refresher asked for is honoured;
    left to us, it is the UAC when it supports timers (it refreshes, we watch), else us.
    A UAC that does not support timers never gets `Require: timer`."""
    asked = session_expires(request)
    supported = TIMER in option_tags(request, "Supported") | option_tags(request, "Require")
    chosen = max(interval, min_se(request, minimum)) if asked is None else asked.interval
    if not supported:
        refresher = "uas"
    elif asked is not None and asked.refresher is not None:
        refresher = asked.refresher
    else:
        refresher = "uac"
    fields = [("Session-Expires", str(SessionExpires(chosen, refresher)))]
    if refresher == "uac":
        fields.append(("Require", TIMER))
    return Negotiated(chosen, refresher == "uas"), fields


def read_answer(response: Response) -> Negotiated | None:
    """As the UAC of an INVITE or UPDATE, from its 2xx (§7.2): the timer, or None when the
    2xx has no Session-Expires (the session then has no timer). A 2xx that names no
    refresher leaves it to us."""
    answered = session_expires(response)
    if answered is None:
        return None
    return Negotiated(answered.interval, answered.refresher != "uas")


# --- keeping time -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefreshDue:
    """Send a refresh now (a re-INVITE, or an UPDATE where the peer allows it)."""


@dataclass(frozen=True, slots=True)
class SessionExpired:
    """The session was not refreshed in time: end it with a BYE (§10)."""


class SessionTimer:
    """One dialog's session timer (§10), refreshed by `refreshed(negotiated, now)`."""

    def __init__(self, negotiated: Negotiated, now: float) -> None:
        self.negotiated = negotiated
        # Whether the peer listed UPDATE in Allow: a refresh is then an UPDATE (no SDP),
        # else a re-INVITE (RFC 4028 §7.4 prefers UPDATE).
        self.peer_allows_update = False
        self._refresh_at: float | None = None
        self._expires_at = now
        self.refreshed(negotiated, now)

    @property
    def we_refresh(self) -> bool:
        return self.negotiated.we_refresh

    def refreshed(self, negotiated: Negotiated, now: float) -> None:
        """A refresh succeeded at `now` (a 2xx to a re-INVITE or UPDATE, either way)."""
        self.negotiated = negotiated
        interval = negotiated.interval
        self._refresh_at = now + interval / 2 if negotiated.we_refresh else None
        self._expires_at = now + interval - min(32, interval / 3)

    def refresh_again(self, at: float) -> None:
        """Our refresh met a re-INVITE of the other side's (491, RFC 3261 §14.1): send
        another at `at`, if that is before the session's end."""
        if at < self._expires_at:
            self._refresh_at = at

    def next_deadline(self) -> float:
        return self._refresh_at if self._refresh_at is not None else self._expires_at

    def expire(self, now: float) -> list[RefreshDue | SessionExpired]:
        if self._refresh_at is not None and now >= self._refresh_at:
            self._refresh_at = None  # one refresh; its 2xx calls refreshed() again
            return [RefreshDue()]
        if now >= self._expires_at:
            return [SessionExpired()]
        return []
